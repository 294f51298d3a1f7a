import Foundation
import Testing

/// Every name of a forwarded answer's CNAME chain is checked against the policy.
@Suite("CNAME chains under policy")
struct CNAMEChainTests {
    @Test(
        "a target an explicit deny rule covers ends the chain with that denial; unlisted targets are followed; loops fail"
    )
    func chains() throws {
        let nsd = try NSDServer()
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort()
        func serve(_ rpz: String) throws -> Background {
            try ("$TTL 60\n@ SOA a. b. 1 2 3 4 5\n" + rpz).write(
                to: directory.appendingPathComponent("p.rpz"), atomically: true, encoding: .utf8)
            return try Harness.serve(
                [
                    "--listen", "127.0.0.1:\(port)", "--upstream", "127.0.0.1:\(nsd.port)", "--policy",
                    directory.appendingPathComponent("p.rpz").path, "--query-log", "all",
                ], port: port, log: directory.appendingPathComponent("dnsfence-\(UUID().uuidString).log"))
        }
        let dig = try #require(Harness.tool("dig"))
        func ask(_ name: String) throws -> String {
            try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=3", name, "A"]).output
        }

        // alias.example.test is allowed; its target www.example.test is denied by a rule.
        var fence = try serve(
            "alias.example.test CNAME rpz-passthru.\nloop1.example.test CNAME rpz-passthru.\nwww.example.test CNAME .\n"
        )
        let denied = try ask("alias.example.test")
        #expect(denied.contains("status: NXDOMAIN") && !denied.contains("192.0.2.10"), "\(denied)")
        #expect(denied.contains("CNAME target www.example.test. denied by"), "the EDE names the rule: \(denied)")
        #expect(try ask("alias.example.test").contains("status: NXDOMAIN"), "not cached as an answer either")
        let loop = try ask("loop1.example.test")
        #expect(loop.contains("status: SERVFAIL") && loop.contains("a CNAME loop"), "\(loop)")
        var logged = false
        for _ in 0..<20 where !logged {
            logged = fence.output.contains(#""qname":"alias.example.test.","qtype":"A","action":"deny","rule":""#)
            if !logged { usleep(100_000) }
        }
        #expect(logged, "logged as a denial under the target's rule: \(fence.output)")
        fence.stop()

        // The target is not listed at all: followed (CDN chains need it).
        fence = try serve("alias.example.test CNAME rpz-passthru.\n")
        let followed = try ask("alias.example.test")
        #expect(followed.contains("status: NOERROR") && followed.contains("192.0.2.10"), "\(followed)")
        fence.stop()

        // cname-targets: strict: every target must be allowed itself.
        try """
        listen: [{ address: 127.0.0.1:\(port), policy: p }]
        upstreams: [127.0.0.1:\(nsd.port)]
        policies: { p: { allow: [alias.example.test], cname-targets: strict } }
        """.write(to: directory.appendingPathComponent("strict.yaml"), atomically: true, encoding: .utf8)
        fence = try Harness.serve(
            ["--config", directory.appendingPathComponent("strict.yaml").path], port: port,
            log: directory.appendingPathComponent("strict.log"))
        defer { fence.stop() }
        let strict = try ask("alias.example.test")
        #expect(strict.contains("status: NXDOMAIN") && !strict.contains("192.0.2.10"), "\(strict)")
        #expect(strict.contains("not allowlisted (cname-targets: strict)"), "\(strict)")
    }
}
