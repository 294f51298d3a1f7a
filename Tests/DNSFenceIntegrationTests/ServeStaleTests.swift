import Foundation
import Testing

/// Serve-stale (RFC 8767): when every upstream fails, an answer that expired less than
/// `stale-max` ago is given with TTL 30 and EDE 3, its addresses published first.
@Suite("serve-stale", .enabled(if: isRoot, "needs root: a network namespace with the policy's sets"))
struct ServeStaleTests {
    @Test("upstream down: the expired answer (TTL 30, EDE 3), re-published; without stale-max, SERVFAIL")
    func stale() throws {
        let nsd = try NSDServer()
        let netns = "dfst-\(String(UInt32.random(in: 0..<UInt32.max), radix: 16))"
        try sh("ip netns add \(netns)")
        defer { _ = try? sh("ip netns del \(netns)") }
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort(), plainPort = Harness.freePort()
        // Answers live 1 s in the cache (max-ttl), then stay usable stale for an hour.
        func configuration(port: UInt16, stale: String) -> String {
            """
            listen: [{ address: 127.0.0.1:\(port), policy: p }]
            upstreams: [127.0.0.1:\(nsd.port)]
            cache: { max-ttl: 1s\(stale) }
            policies:
              p:
                allow: [www.example.test, short.example.test]
                firewall: { netns: /run/netns/\(netns), table: inet stale, ipv4-set: allow4, min-ttl: 1s, grace: 0s }
            """
        }
        try configuration(port: port, stale: ", stale-max: 1h")
            .write(to: directory.appendingPathComponent("s.yaml"), atomically: true, encoding: .utf8)
        try configuration(port: plainPort, stale: "")
            .write(to: directory.appendingPathComponent("p.yaml"), atomically: true, encoding: .utf8)
        let fence = try Harness.serve(
            ["--config", directory.appendingPathComponent("s.yaml").path], port: port,
            log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let plain = try Harness.serve(
            ["--config", directory.appendingPathComponent("p.yaml").path], port: plainPort,
            log: directory.appendingPathComponent("plain.log"))
        defer { plain.stop() }
        let dig = try #require(Harness.tool("dig"))
        func ask(_ name: String, port: UInt16) throws -> String {
            try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=8", name, "A"]).output
        }
        #expect(try ask("www.example.test", port: port).contains("192.0.2.10"))
        #expect(try ask("www.example.test", port: plainPort).contains("192.0.2.10"))

        // Every upstream down, the answers expired and the set emptied.
        nsd.daemon.stop()
        try sh("ip netns exec \(netns) nft flush set inet stale allow4")
        sleep(2)
        let stale = try ask("www.example.test", port: port)
        #expect(stale.contains("status: NOERROR") && stale.contains("192.0.2.10"), "\(stale)")
        #expect(stale.contains("EDE: 3 (Stale Answer)"), "\(stale)")
        #expect(stale.contains("\t30\tIN\tA\t192.0.2.10"), "TTL 30: \(stale)")
        #expect(
            try sh("ip netns exec \(netns) nft list set inet stale allow4").contains("192.0.2.10"),
            "published again before the answer")
        // Never cached: nothing stale to give. Without stale-max: SERVFAIL.
        #expect(try ask("short.example.test", port: port).contains("status: SERVFAIL"))
        #expect(try ask("www.example.test", port: plainPort).contains("status: SERVFAIL"))
    }
}
