import Foundation
import Testing

/// `mode: audit` / `--audit`: names the policy would deny are answered and published, logged
/// and counted as would-be denials, and never counted as denied names sent upstream.
@Suite("audit mode", .enabled(if: isRoot, "needs root: a network namespace with the policy's sets"))
struct AuditTests {
    @Test("a name the policy denies is answered, published and logged as a would-be denial, with no EDE")
    func auditAnswersAndLogs() throws {
        let nsd = try NSDServer()
        let netns = "dfa-\(String(UInt32.random(in: 0..<UInt32.max), radix: 16))"
        try sh("ip netns add \(netns)")
        defer { _ = try? sh("ip netns del \(netns)") }
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort(), metricsPort = Harness.freePort()
        try """
        listen: [{ address: 127.0.0.1:\(port), policy: p }]
        upstreams: [127.0.0.1:\(nsd.port)]
        metrics: { listen: 127.0.0.1:\(metricsPort) }
        log: { queries: denied }
        policies:
          p:
            mode: audit
            allow: [www.example.test]
            firewall: { netns: /run/netns/\(netns), table: inet fence, ipv4-set: allow4 }
        """.write(to: directory.appendingPathComponent("a.yaml"), atomically: true, encoding: .utf8)
        let fence = try Harness.serve(
            ["--config", directory.appendingPathComponent("a.yaml").path], port: port,
            log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let dig = try #require(Harness.tool("dig"))
        func ask(_ name: String) throws -> String {
            try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=3", name, "A"]).output
        }

        let denied = try ask("short.example.test")
        #expect(denied.contains("status: NOERROR") && denied.contains("192.0.2.20"), "\(denied)")
        #expect(!denied.contains("EDE"), "no Extended DNS Error in audit mode: \(denied)")
        #expect(try sh("ip netns exec \(netns) nft list set inet fence allow4").contains("192.0.2.20"))
        #expect(try ask("www.example.test").contains("192.0.2.10"))

        // Logged as a would-be denial (under `queries: denied`), with the default that denies it.
        var line = ""
        for _ in 0..<20 where line.isEmpty {
            line =
                fence.output.split(separator: "\n").first { $0.contains("short.example.test") }.map(String.init) ?? ""
            if line.isEmpty { usleep(100_000) }
        }
        #expect(line.contains(#""action":"audit""#) && line.contains(#""rule":null"#), "\(line)")
        #expect(!fence.output.contains(#""qname":"www.example.test."#), "allowed names are not logged under denied")

        let scrape = Scrape(try httpGet(metricsPort, "/metrics").body)
        #expect(scrape[#"dnsfence_upstream_queries_total{verdict="deny"}"#] == 0)
        // Two would-be denials: short.example.test and the harness's readiness probe (probe.invalid).
        #expect(scrape[#"dnsfence_upstream_queries_total{verdict="audit"}"#] == 2)
        #expect(scrape[#"dnsfence_upstream_queries_total{verdict="pass"}"#] == 1)
        let audited = scrape.values.filter {
            $0.key.hasPrefix("dnsfence_queries_total{") && $0.key.contains(#"action="audit""#)
        }
        #expect(audited.values.reduce(0, +) == 2, "\(audited)")
    }
}

@Suite("audited rules")
struct AuditedRuleTests {
    @Test("audit: [PATTERN] in an enforcing policy answers what that rule denies, and only that rule")
    func auditedRule() throws {
        let nsd = try NSDServer()
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort()
        try
            "$TTL 60\n@ SOA a. b. 1 2 3 4 5\n*.example.test CNAME rpz-passthru.\nshort.example.test CNAME .\nalias.example.test CNAME .\n"
            .write(to: directory.appendingPathComponent("p.rpz"), atomically: true, encoding: .utf8)
        func config(_ audit: String) throws -> String {
            let file = directory.appendingPathComponent("r.yaml")
            try """
            listen: [{ address: 127.0.0.1:\(port), policy: p }]
            upstreams: [127.0.0.1:\(nsd.port)]
            log: { queries: denied }
            policies: { p: { zones: [p.rpz], audit: [\(audit)] } }
            """.write(to: file, atomically: true, encoding: .utf8)
            return file.path
        }
        let unknown = try Harness.run(
            Harness.dnsfence, ["check", "--no-system", "--config", try config("nosuch.test")])
        #expect(
            unknown.status == 1 && unknown.output.contains("audit: 'nosuch.test' is not a deny rule of this policy"))

        let fence = try Harness.serve(
            ["--config", try config("short.example.test")], port: port,
            log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let dig = try #require(Harness.tool("dig"))
        func ask(_ name: String) throws -> String {
            try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=3", name, "A"]).output
        }
        #expect(try ask("short.example.test").contains("192.0.2.20"), "the audited rule only logs")
        #expect(try ask("alias.example.test").contains("status: NXDOMAIN"), "the other deny rule enforces")
        #expect(try ask("nothing.other").contains("status: NXDOMAIN"), "the default still denies")
        var logged = false
        for _ in 0..<20 where !logged {
            logged = fence.output.contains(
                #""qname":"short.example.test.","qtype":"A","action":"audit","rule":"p.rpz:4""#)
            if !logged { usleep(100_000) }
        }
        #expect(logged, "\(fence.output)")
    }
}
