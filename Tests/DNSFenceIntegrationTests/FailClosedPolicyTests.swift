import Foundation
import Testing

/// One sandbox's namespace missing fails that sandbox closed alone; it recovers by itself.
@Suite("a policy fails closed alone", .enabled(if: isRoot, "needs root: network namespaces and nftables"))
struct FailClosedPolicyTests {
    @Test(
        "missing namespace at start: that policy SERVFAILs with an EDE, the other serves; it recovers, and fails again")
    func missingNamespace() throws {
        let nsd = try NSDServer()
        let netns = "dfm-\(String(UInt32.random(in: 0..<UInt32.max), radix: 16))"
        defer { _ = try? sh("ip netns del \(netns)") }
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort(), otherPort = Harness.freePort(), metricsPort = Harness.freePort()
        let config = """
            listen:
              - { address: 127.0.0.1:\(port), policy: sandbox }
              - { address: 127.0.0.1:\(otherPort), policy: other }
            upstreams: [127.0.0.1:\(nsd.port)]
            metrics: { listen: 127.0.0.1:\(metricsPort) }
            policies:
              sandbox:
                allow: ["*.example.test"]
                firewall: { netns: /run/netns/\(netns), table: inet fence, ipv4-set: allow4, create: true }
              other:
                allow: ["*.example.test"]
            cache: { max-entries: 0 }
            """
        try config.write(to: directory.appendingPathComponent("f.yaml"), atomically: true, encoding: .utf8)
        // It starts although the sandbox's namespace does not exist.
        let fence = try Harness.serve(
            ["--config", directory.appendingPathComponent("f.yaml").path], port: otherPort,
            log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let dig = try #require(Harness.tool("dig"))
        func ask(_ port: UInt16, _ name: String) throws -> String {
            try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=3", name, "A"]).output
        }
        func until(_ condition: () throws -> Bool) throws -> Bool {
            for _ in 0..<100 {
                if try condition() { return true }
                usleep(100_000)
            }
            return false
        }

        var out = try ask(port, "www.example.test")
        #expect(out.contains("status: SERVFAIL") && !out.contains("192.0.2.10"), "\(out)")
        #expect(out.contains("firewall unavailable"), "the EDE says why: \(out)")
        #expect(try ask(otherPort, "www.example.test").contains("192.0.2.10"))
        let ready = try httpGet(metricsPort, "/readyz")
        #expect(ready.status == 503 && ready.body.contains("policy sandbox: fails closed"), "\(ready.body)")

        // The namespace appears: the policy serves again by itself, publishing into its new set.
        try sh("ip netns add \(netns)")
        #expect(try until { try ask(port, "www.example.test").contains("192.0.2.10") }, "\(fence.output)")
        #expect(try sh("ip netns exec \(netns) nft list set inet fence allow4").contains("192.0.2.10"))
        #expect(try httpGet(metricsPort, "/readyz").status == 200)

        // It goes away again: that policy alone fails closed again.
        try sh("ip netns del \(netns)")
        #expect(try until { try ask(port, "short.example.test").contains("status: SERVFAIL") })
        out = try ask(port, "short.example.test")
        #expect(!out.contains("192.0.2.20"))
        #expect(try ask(otherPort, "short.example.test").contains("192.0.2.20"))
    }
}
