import DNSFencePolicy
import Testing

/// The encoded-label check of tunnel budgets (`deny-encoded`), on labels whose verdict is known.
@Suite("encoded labels")
struct EncodedLabelTests {
    static func judge(_ label: String) -> EncodedLabel.Kind? {
        Array(label.utf8).withUnsafeBytes { EncodedLabel.judge($0) }
    }

    @Test(
        "hostnames people and CDNs write pass",
        arguments: [
            "www", "documentation-server", "ec2-52-10-22-33", "s3-website-us-east-1", "xn--bcher-kva-kaufen-online",
            "wellingtonwealthstrategies", "affectionatefurniturehypothesis", "production-eu-west-1-api",
            "_acme-challenge", "k8s-cluster-worker-node-12",
        ])
    func real(_ label: String) {
        #expect(Self.judge(label) == nil, "\(label)")
    }

    @Test("what tunnels write is caught: hex, base32, base64, raw bytes")
    func tunnels() {
        // dnscat2-style hex.
        #expect(Self.judge("6f8a2c10e94b7d3355aa01fe9c4d2b78") == .hex)
        // iodine-style base32 (a-z, 0-5) and lower-cased base64 of random bytes.
        #expect(Self.judge("mzxw6ytboi4dkmrq0gx3ya1qvrcf5jtl") == .mixed)
        #expect(Self.judge("t3bz8qkx0wv2lp5nj7hy4rd9gm1cs6fa") == .mixed)
        // Letters only, but no vowels for long stretches.
        #expect(Self.judge("qwrtzpkdfghjxcvbnmlsqwrtzpkdfghj") == .consonants)
        // iodine's base128: bytes no hostname has, at any length.
        #expect(Array([0x61, 0xC3, 0xBC]).withUnsafeBytes { EncodedLabel.judge($0) } == .bytes)
        // Shorter than 16: judged by its bytes only.
        #expect(Self.judge("6f8a2c10e94b7d3") == nil)
    }

    @Test("a name is judged label by label, up to the wildcard's suffix")
    func wire() {
        // "6f8a2c10e94b7d3355aa01fe9c4d2b78.ok.tunnel.test" in wire form; the suffix starts at "tunnel".
        var wire: [UInt8] = []
        for label in ["ok", "6f8a2c10e94b7d3355aa01fe9c4d2b78", "tunnel", "test"] {
            wire.append(UInt8(label.utf8.count))
            wire += Array(label.utf8)
        }
        wire.append(0)
        let below = 1 + 2 + 1 + 32
        #expect(wire.withUnsafeBytes { EncodedLabel.judge(wire: $0, below: below) } == .hex)
        #expect(wire.withUnsafeBytes { EncodedLabel.judge(wire: $0, below: 3) } == nil, "only the labels below")
    }

    static func wire(_ labels: [String]) -> [UInt8] {
        labels.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) } + [0]
    }

    @Test("labels too short to judge alone are judged joined; words and short names stay clean")
    func joined() {
        // base32 data cut into labels of 12, below "tunnel.test".
        let cut = Self.wire(["mzxw6ytboi4d", "kmrq0gx3ya1q", "vrcf5jtl", "tunnel", "test"])
        #expect(cut.withUnsafeBytes { EncodedLabel.judge(wire: $0, below: 13 + 13 + 9) } == .mixed)
        // The joins break runs: hex cut short is caught as mixed, not as a hex run it is not.
        let hex = Self.wire(["6f8a2c10e94b7d3", "355aa01fe9c4d2b", "x"])
        #expect(hex.withUnsafeBytes { EncodedLabel.judge(wire: $0, below: 32) } == .mixed)
        // Real names with several labels below a wildcard.
        for labels in [
            ["static", "assets", "eu-west-1", "cdn"], ["www", "ssl", "images", "cdn"], ["api", "v2", "staging", "cdn"],
            ["ec2-52-10-22-33", "compute-1", "cdn"], ["a", "b", "c", "d", "e", "f", "g", "h", "i", "cdn"],
        ] {
            let name = Self.wire(labels)
            let below = name.count - 5  // all but "cdn."
            #expect(name.withUnsafeBytes { EncodedLabel.judge(wire: $0, below: below) } == nil, "\(labels)")
        }
    }
}
