import Foundation
import Testing

/// The image from ./Containerfile and the topology of scripts/compose/compose.yaml, run for
/// real with podman (runc): app → dnsfence (in the app's network namespace) → proxy →
/// service, with the app's egress limited by scripts/sandbox.nft as shipped.
///
/// scripts/test.sh stages the statically linked binary before the tests run
/// (`scripts/container-build.sh --stage-only`); the base image is made from Debian's archive
/// when no registry has it (scripts/compose/base-image.sh).
@Suite(
    "containers",
    .enabled(
        if: isRoot && ["podman", "runc", "debootstrap", "docker-compose"].allSatisfy { Harness.tool($0) != nil },
        "needs root, podman, runc, debootstrap and docker-compose (scripts/install-deps.sh installs them)"),
    .enabled(
        if: FileManager.default.isExecutableFile(
            atPath: repositoryRoot.appendingPathComponent(".build/container/dnsfence").path),
        "needs the staged binary: scripts/container-build.sh --stage-only (scripts/test.sh runs it)"))
struct ContainerTests {
    static let compose = repositoryRoot.appendingPathComponent("scripts/compose").path
    /// Every podman command runs with the repository's containers.conf (runc, no ulimits).
    static let environment = "CONTAINERS_CONF=\(compose)/containers.conf"

    /// A script with CONTAINERS_CONF set; it must succeed.
    static func podman(_ script: String) throws -> String {
        let result = try Background.script("export \(environment)\n" + script)
        guard result.status == 0 else {
            throw HarnessError.notReady("script failed (\(result.status)):\n\(script)\n\(result.output)")
        }
        return result.output
    }

    @Test("the compose topology: the app reaches the service through the proxy and nothing else")
    func composeTopology() throws {
        let root = repositoryRoot.path
        let project = "dfc\(String(UInt32.random(in: 0..<UInt32.max), radix: 16))"
        // docs/sandbox.md's container block, as written but for the project's name and the
        // binary, which scripts/test.sh staged (a debug build; the release build is the same
        // script).
        let blocks = try DocsTests.blocks("docs/sandbox.md")
        try #require(blocks.count == 2 && blocks[1].contains("podman-compose.py up demo"))
        let lines = blocks[1].split(separator: "\n").map {
            $0.replacingOccurrences(of: "scripts/container-build.sh ", with: "scripts/container-build.sh --image-only ")
                .replacingOccurrences(of: "demo", with: project)
        }
        let upTo = try #require(lines.firstIndex { $0.contains("podman-compose.py up") })
        let fetch = try #require(lines.firstIndex { $0.contains("curl") })
        let down = try #require(lines.firstIndex { $0.contains("podman-compose.py down") })
        let environment = lines[0]
        try #require(environment.hasPrefix("export CONTAINERS_CONF=") && upTo < fetch && fetch < down)
        defer {
            _ = try? Self.podman("cd \(root)\npodman rm -f -t 1 \(project)_other_1\n\(lines[down])")
        }
        _ = try Self.podman("set -e\ncd \(root)\n" + lines[...upTo].joined(separator: "\n"))
        // Another container on the app's network, which nothing allows: the proxy reaches it,
        // so only the app's ruleset can keep the app out.
        _ = try Self.podman(
            """
            podman run -d --name \(project)_other_1 --network \(project)_sandbox:ip=172.29.70.30 \\
                -v \(Self.compose)/service:/srv:ro localhost/dnsfence-compose-tools:latest busybox httpd -f -p 80 -h /srv
            """)
        func curl(_ service: String, _ url: String) throws -> Harness.Result {
            try Background.script(
                "export \(Self.environment)\npodman exec \(project)_\(service)_1 curl -sS --max-time 2 \(url)")
        }
        // Before any name is resolved, the proxy's address is not allowed either.
        let early = try curl("app", "http://172.29.70.10/")
        #expect(early.status == 28, "the proxy's address before it was handed out: \(early.output)")
        // The documented request, through dnsfence and the proxy.
        let answer = try Self.podman("cd \(root)\n\(environment)\n\(lines[fetch])")
        #expect(answer.contains("hello from the service"), "\(answer)")
        let set = try Self.podman("podman exec \(project)_dnsfence_1 nft list set inet sandbox allow4")
        #expect(set.contains("172.29.70.10 timeout"), "the proxy's address is published: \(set)")

        #expect(try curl("app", "http://example.org/").status == 6, "a name outside proxy.rpz does not resolve")
        #expect(try curl("app", "http://172.29.71.10/").status != 0, "the service directly")
        #expect(try curl("proxy", "http://172.29.70.30/").status == 0, "the other container is up and reachable")
        #expect(try curl("app", "http://172.29.70.30/").status == 28, "but not from the app")
        let log = try Self.podman("podman logs \(project)_dnsfence_1")
        #expect(
            log.contains(#""qname":"api.example.com.","qtype":"A","action":"local""#)
                && log.contains(#""published":["172.29.70.10"]"#), "the query log: \(log)")
    }
}
