// swift-tools-version:6.1
import PackageDescription

// Swift 6 language mode (strict concurrency) everywhere, and our own code must build without
// warnings (dependencies are not held to that).
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .unsafeFlags(["-warnings-as-errors"]),
]

let package = Package(
    name: "dnsfence",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "dnsfence", targets: ["dnsfence"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CLDNS",
            pkgConfig: "ldns",
            providers: [.apt(["libldns-dev"])]
        ),
        .systemLibrary(
            name: "CNftables",
            pkgConfig: "libnftables",
            providers: [.apt(["libnftables-dev"])]
        ),
        .target(
            name: "CNftBatch",
            linkerSettings: [.linkedLibrary("nftnl"), .linkedLibrary("mnl"), .linkedLibrary("nftables")]
        ),
        .target(name: "CDatagram"),
        .target(name: "CCore"),
        .target(name: "DNSFenceCore", dependencies: ["CCore"], swiftSettings: strict),
        .target(
            name: "DNSFenceIO",
            dependencies: [
                "CDatagram", "DNSFenceCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "DNSFenceFirewall",
            dependencies: [
                "CDatagram", "CNftables", "CNftBatch", "DNSFenceCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "DNSFenceWire",
            dependencies: ["CLDNS", "DNSFenceCore"],
            swiftSettings: strict
        ),
        .target(
            name: "DNSFencePolicy",
            dependencies: ["DNSFenceWire"],
            swiftSettings: strict
        ),
        .target(
            name: "DNSFenceTransfer",
            dependencies: [
                "CLDNS", "DNSFenceCore", .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "DNSFenceConfig",
            dependencies: [
                "DNSFenceWire", "DNSFencePolicy", "DNSFenceTransfer",
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "DNSFenceResolve",
            dependencies: [
                "DNSFenceCore", "DNSFenceWire", "DNSFenceIO",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "DNSFenceRelease",
            dependencies: ["DNSFenceCore", "DNSFenceWire", "DNSFenceResolve", "DNSFenceFirewall"],
            swiftSettings: strict
        ),
        .target(
            name: "DNSFenceServe",
            dependencies: [
                "DNSFenceCore", "DNSFenceWire", "DNSFencePolicy", "DNSFenceResolve", "DNSFenceFirewall",
                "DNSFenceRelease", "DNSFenceIO",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "DNSFenceObserve",
            dependencies: [
                "DNSFenceCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "dnsfence",
            dependencies: [
                "CCore", "DNSFenceWire", "DNSFencePolicy", "DNSFenceConfig", "DNSFenceResolve", "DNSFenceServe",
                "DNSFenceFirewall", "DNSFenceObserve", "DNSFenceIO", "DNSFenceTransfer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict,
            plugins: ["BuildInfo"]
        ),
        .plugin(name: "BuildInfo", capability: .buildTool()),
        .executableTarget(
            name: "QueryReplay",
            dependencies: [
                "DNSFenceCore", "DNSFenceRelease", "DNSFenceWire", "DNSFencePolicy", "DNSFenceResolve", "DNSFenceServe",
                "DNSFenceIO",
                "DNSFenceFirewall",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        .target(name: "CFuzzDriver"),
        .target(
            name: "DNSFenceFuzzing",
            dependencies: [
                "DNSFenceCore", "DNSFenceWire", "DNSFencePolicy", "DNSFenceResolve", "DNSFenceServe",
                "DNSFenceFirewall", "DNSFenceRelease",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "DNSFenceFuzz",
            dependencies: ["CFuzzDriver", "DNSFenceFuzzing"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "PolicyBenchmark",
            dependencies: ["DNSFenceWire", "DNSFencePolicy"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "DNSFenceWireTests",
            dependencies: ["DNSFenceCore", "DNSFenceWire"],
            resources: [.copy("Fixtures")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "DNSFencePolicyTests",
            dependencies: ["DNSFenceCore", "DNSFenceWire", "DNSFencePolicy"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "DNSFenceTransferTests",
            dependencies: ["DNSFenceTransfer"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "DNSFenceConfigTests",
            dependencies: ["DNSFenceCore", "DNSFenceWire", "DNSFencePolicy", "DNSFenceConfig"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "DNSFenceFirewallTests",
            dependencies: ["DNSFenceCore", "DNSFenceFirewall", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "DNSFenceIOTests",
            dependencies: ["DNSFenceCore", "DNSFenceIO", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "DNSFenceResolveTests",
            dependencies: ["DNSFenceCore", "DNSFenceWire", "DNSFenceResolve", "DNSFenceIO"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "DNSFenceServeTests",
            dependencies: [
                "DNSFenceCore", .product(name: "CoreMetrics", package: "swift-metrics"),
                "DNSFenceWire", "DNSFencePolicy", "DNSFenceResolve", "DNSFenceServe", "DNSFenceFirewall",
                "DNSFenceFuzzing",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "DNSFenceIntegrationTests",
            dependencies: ["DNSFenceCore", "DNSFenceWire", "dnsfence"],
            exclude: ["Fixtures"],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
