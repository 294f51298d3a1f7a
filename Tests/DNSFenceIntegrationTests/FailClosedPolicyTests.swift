import DNSFenceCore
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

/// `dnsfence check` looks at what a start would, changing nothing.
@Suite(
    "dnsfence check looks at namespaces and sets", .enabled(if: isRoot, "needs root: network namespaces and nftables"))
struct CheckSystemTests {
    @Test("missing namespace or set: warnings; a set of the wrong type: an error; nothing is created")
    func findings() throws {
        let id = String(UInt32.random(in: 0..<UInt32.max), radix: 16)
        let (present, absent) = ("dfc-\(id)", "dfc-gone-\(id)")
        try sh(
            """
            ip netns add \(present)
            ip netns exec \(present) nft 'add table inet fence; add set inet fence good4 { type ipv4_addr; flags timeout; }; add set inet fence wrong4 { type ipv6_addr; flags timeout; }; add set inet fence plain4 { type ipv4_addr; }'
            """)
        defer { _ = try? sh("ip netns del \(present)") }
        let directory = try Harness.temporaryDirectory()
        func policy(_ name: String, netns: String, set: String, create: Bool) -> String {
            """
              \(name):
                allow: [x.test]
                firewall: { netns: /run/netns/\(netns), table: inet fence, ipv4-set: \(set), create: \(create) }
            """
        }
        func check(_ policies: [String]) throws -> Harness.Result {
            let file = directory.appendingPathComponent("c.yaml")
            try
                ("listen: [{ address: 127.0.0.1:5399, policy: good }]\nupstreams: [192.0.2.53]\npolicies:\n"
                + policies.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
            return try Harness.run(Harness.dnsfence, ["check", "--config", file.path])
        }
        let fine = [
            policy("good", netns: present, set: "good4", create: false),
            policy("made", netns: present, set: "new4", create: true),
        ]
        let clean = try check(fine)
        #expect(clean.status == 0 && clean.output.contains("0 warnings, 0 errors"), "\(clean.output)")
        // It looked and created nothing: create: true means a start would.
        #expect(try !sh("ip netns exec \(present) nft list table inet fence").contains("new4"))

        let warned = try check(
            fine + [
                policy("gone", netns: absent, set: "good4", create: true),
                policy("unmade", netns: present, set: "none4", create: false),
            ])
        #expect(warned.status == 0, "\(warned.output)")
        #expect(warned.output.contains("policy 'gone' would fail closed until this is fixed: set /run/netns/\(absent)"))
        #expect(warned.output.contains("network namespace /run/netns/\(absent) does not exist"))
        #expect(
            warned.output.contains("policy 'unmade' would fail closed until this is fixed: set "), "\(warned.output)")
        #expect(warned.output.contains("2 warnings, 0 errors"))

        let failed = try check(
            fine + [
                policy("wrong", netns: present, set: "wrong4", create: true),
                policy("plain", netns: present, set: "plain4", create: false),
            ])
        #expect(failed.status == 1, "\(failed.output)")
        #expect(failed.output.contains("error: policy 'wrong': set "), "\(failed.output)")
        #expect(failed.output.contains("has type ipv6_addr, expected ipv4_addr"))
        #expect(
            failed.output.contains("error: policy 'plain': set ") && failed.output.contains("lacks 'flags timeout'"))
        #expect(failed.output.contains("0 warnings, 2 errors"))

        // Without the privilege to look, it says so instead of guessing.
        let binary = directory.appendingPathComponent("dnsfence").path
        try sh("chmod 755 \(directory.path) && cp \(Harness.dnsfence) \(binary) && chmod 755 \(binary)")
        try sh("chmod 644 \(directory.path)/c.yaml")
        let blind = try Harness.run(
            "/usr/bin/setpriv",
            [
                "--reuid=nobody", "--regid=nogroup", "--clear-groups", binary, "check", "--config",
                "\(directory.path)/c.yaml",
            ])
        #expect(blind.output.contains("cannot look at the nftables sets without CAP_NET_ADMIN"), "\(blind.output)")
    }
}

/// libnftables waits on its socket with select(2): a descriptor ≥ 1024 aborts the process.
@Suite("many descriptors", .enabled(if: isRoot, "needs root: a network namespace and nftables"))
struct ManyDescriptorsTests {
    @Test("with over 1024 descriptors open (TCP clients), a reload still makes and checks the sets")
    func manyDescriptors() throws {
        // Room for 1,100 connections in this process and in dnsfence (which inherits the limit).
        let limit = DescriptorLimit.raise()
        try #require(limit >= 4096, "the descriptor limit is \(limit)")
        let nsd = try NSDServer()
        let netns = "dfm-\(String(UInt32.random(in: 0..<UInt32.max), radix: 16))"
        try sh("ip netns add \(netns)")
        defer { _ = try? sh("ip netns del \(netns)") }
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort()
        try """
        listen: [{ address: 127.0.0.1:\(port), policy: p }]
        upstreams: [127.0.0.1:\(nsd.port)]
        tcp: { max-connections: 4000, max-per-client: 4000, idle-timeout: 60s }
        policies:
          p:
            allow: ["*.example.test"]
            firewall: { netns: /run/netns/\(netns), table: inet fence, ipv4-set: allow4, create: true }
        """.write(to: directory.appendingPathComponent("m.yaml"), atomically: true, encoding: .utf8)
        let fence = try Harness.serve(
            ["--config", directory.appendingPathComponent("m.yaml").path], port: port,
            log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        var clients: [Int32] = []
        defer { for fd in clients { close(fd) } }
        for _ in 0..<1100 {
            if let fd = Harness.connectTCP(port: port) { clients.append(fd) }
        }
        var open = 0
        for _ in 0..<50 where open <= 1024 {
            open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(fence.pid)/fd").count) ?? 0
            if open <= 1024 { usleep(100_000) }
        }
        try #require(open > 1024, "dnsfence needs more than 1024 descriptors open for this test: \(open)")
        // A reload makes and checks the sets again (libnftables), with every low descriptor taken.
        kill(fence.pid, SIGHUP)
        usleep(1_000_000)
        #expect(kill(fence.pid, 0) == 0, "still running: \(fence.output.suffix(2000))")
        #expect(fence.output.contains("reloaded"), "\(fence.output.suffix(2000))")
        let dig = try #require(Harness.tool("dig"))
        let answer = try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+short", "www.example.test", "A"]).output
        #expect(answer.contains("192.0.2.10"), "\(answer)")
        #expect(try sh("ip netns exec \(netns) nft list set inet fence allow4").contains("192.0.2.10"))
    }
}
