import Foundation
import Testing

/// Revocation on reload, with real nftables sets in a network namespace the test makes.
@Suite("revocation on reload", .enabled(if: isRoot, "needs root: network namespaces and nftables"))
struct RevocationIntegrationTests {
    @Test("a removed name's addresses leave the set before `dnsfence reload` returns; shared ones stay")
    func revokeOnReload() throws {
        let nsd = try NSDServer()
        let netns = "dfr-\(String(UInt32.random(in: 0..<UInt32.max), radix: 16))"
        try sh("ip netns add \(netns)")
        defer { _ = try? sh("ip netns del \(netns)") }
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort()
        let control = directory.appendingPathComponent("control.sock").path
        func write(_ names: [String]) throws {
            try (names.joined(separator: "\n") + "\n").write(
                to: directory.appendingPathComponent("p.allow"), atomically: true, encoding: .utf8)
        }
        try write(["www.example.test", "alias.example.test", "short.example.test"])
        let config = """
            listen: [{ address: 127.0.0.1:\(port), policy: p }]
            upstreams: [127.0.0.1:\(nsd.port)]
            control: \(control)
            policies:
              p:
                zones: [p.allow]
                firewall: { netns: /run/netns/\(netns), table: inet fence, ipv4-set: allow4, create: true }
            """
        try config.write(to: directory.appendingPathComponent("f.yaml"), atomically: true, encoding: .utf8)
        let fence = try Harness.serve(
            ["--config", directory.appendingPathComponent("f.yaml").path],
            port: port, log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let dig = try #require(Harness.tool("dig"))
        func ask(_ name: String) throws -> String {
            try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=3", name, "A"]).output
        }
        func elements() throws -> String { try sh("ip netns exec \(netns) nft list set inet fence allow4") }
        func reload() throws -> Harness.Result { try Harness.run(Harness.dnsfence, ["reload", "--control", control]) }

        // www and alias (a CNAME to www) hand out 192.0.2.10/.11; short hands out 192.0.2.20.
        #expect(try ask("www.example.test").contains("192.0.2.10"))
        #expect(try ask("alias.example.test").contains("192.0.2.11"))
        #expect(try ask("short.example.test").contains("192.0.2.20"))
        var set = try elements()
        #expect(set.contains("192.0.2.10") && set.contains("192.0.2.11") && set.contains("192.0.2.20"))

        // www and short removed: short's address goes; www's stays, alias still justifies it.
        try write(["alias.example.test"])
        let first = try reload()
        #expect(first.status == 0, "\(first.output)")
        #expect(first.output.contains("revoked 1 set element(s)"), "\(first.output)")
        set = try elements()
        #expect(!set.contains("192.0.2.20"), "\(set)")
        #expect(set.contains("192.0.2.10") && set.contains("192.0.2.11"), "\(set)")
        #expect(try ask("www.example.test").contains("status: NXDOMAIN"))

        // alias removed too: nothing justifies 192.0.2.10/.11 any more.
        try write(["short.example.test"])
        let second = try reload()
        #expect(second.status == 0, "\(second.output)")
        #expect(second.output.contains("revoked 2 set element(s)"), "\(second.output)")
        set = try elements()
        #expect(!set.contains("192.0.2.10") && !set.contains("192.0.2.11"), "\(set)")

        // short is allowed again: answered, and published again (the shadow forgot it).
        #expect(try ask("short.example.test").contains("192.0.2.20"))
        #expect(try elements().contains("192.0.2.20"))
    }

    @Test("a flow established to a revoked address is cut with `revoke: connections` and keeps working without")
    func revokeConnections() throws {
        let net = try SandboxTopology()
        let hostTable = "ip netns exec \(net.sandbox) nft list set inet sandbox allow4"

        // revoke: elements (the default): the address leaves the set, the open flow goes on.
        let kept = try net.hold("10.77.2.3", seconds: 3)
        usleep(700_000)
        try net.writeConfiguration(allow: ["short.example.test"])
        let first = try net.reload()
        #expect(first.contains("revoked 1 set element(s)") && !first.contains("cut"), "\(first)")
        #expect(try !sh(hostTable).contains("10.77.2.3"))
        #expect(try !net.connects("10.77.2.3"))  // a new flow is refused
        #expect(kept.exitStatus(within: 8) == 0, "the established flow was cut: \(kept.output)")

        // revoke: connections: the open flow's conntrack entry goes with the element.
        try net.writeConfiguration(revoke: "connections")
        try net.reload()
        #expect(try net.dig("www.example.test") == "10.77.2.3")
        let cut = try net.hold("10.77.2.3", seconds: 3)
        usleep(700_000)
        try net.writeConfiguration(allow: ["short.example.test"], revoke: "connections")
        let second = try net.reload()
        #expect(second.contains("revoked 1 set element(s)"), "\(second)")
        // At least the open flow (the first phase's closed one may still be in TIME_WAIT).
        #expect(second.contains(" connection(s) to revoked addresses"), "\(second)")
        #expect(cut.exitStatus(within: 8) == 1, "the established flow survived: \(cut.output)")
    }

    @Test(
        "local data is published like an upstream's answer; a changed rewrite revokes the old address; publish-local: false opts out"
    )
    func localData() throws {
        let netns = "dfl-\(String(UInt32.random(in: 0..<UInt32.max), radix: 16))"
        try sh("ip netns add \(netns)")
        defer { _ = try? sh("ip netns del \(netns)") }
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort()
        let control = directory.appendingPathComponent("control.sock").path
        func write(rewrite address: String, publish: Bool = true) throws {
            try "$TTL 60\n@ SOA localhost. root.localhost. 1 3600 600 86400 60\napi.internal A \(address)\n".write(
                to: directory.appendingPathComponent("p.rpz"), atomically: true, encoding: .utf8)
            try """
            listen: [{ address: 127.0.0.1:\(port), policy: p }]
            upstreams: [127.0.0.1:9]
            control: \(control)
            policies:
              p:
                zones: [p.rpz]
                firewall: { netns: /run/netns/\(netns), table: inet fence, ipv4-set: allow4, publish-local: \(publish) }
            """.write(to: directory.appendingPathComponent("f.yaml"), atomically: true, encoding: .utf8)
        }
        try write(rewrite: "10.200.0.2")
        let fence = try Harness.serve(
            ["--config", directory.appendingPathComponent("f.yaml").path, "--query-log", "all"], port: port,
            log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let dig = try #require(Harness.tool("dig"))
        func ask() throws -> String {
            try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+short", "+tries=1", "+time=3", "api.internal", "A"])
                .output.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func elements() throws -> String { try sh("ip netns exec \(netns) nft list set inet fence allow4") }
        func reload() throws -> String {
            let result = try Harness.run(Harness.dnsfence, ["reload", "--control", control])
            #expect(result.status == 0, "\(result.output)")
            return result.output
        }

        #expect(try ask() == "10.200.0.2")
        #expect(try elements().contains("10.200.0.2"), "the rewrite's address is in the set before the answer")
        // The query log is written by its own thread: give it a moment under load.
        for _ in 0..<40 where !fence.output.contains(#""published":["10.200.0.2"]"#) { usleep(50_000) }
        #expect(fence.output.contains(#""published":["10.200.0.2"]"#), "\(fence.output)")

        // The rewrite changes: the old address is revoked at once, the new one published on use.
        try write(rewrite: "10.200.0.3")
        #expect(try reload().contains("revoked 1 set element(s)"))
        #expect(try !elements().contains("10.200.0.2"))
        #expect(try ask() == "10.200.0.3")
        #expect(try elements().contains("10.200.0.3"))

        // Opted out: answered, not published (the operator allows the proxy statically).
        try sh("ip netns exec \(netns) nft flush set inet fence allow4")
        try write(rewrite: "10.200.0.3", publish: false)
        _ = try reload()
        #expect(try ask() == "10.200.0.3")
        #expect(try !elements().contains("10.200.0.3"))
    }
}
