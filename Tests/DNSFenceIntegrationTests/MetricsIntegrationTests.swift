import Foundation
import Testing

/// A scrape, parsed: `name{labels}` → value.
struct Scrape {
    var values: [String: Double] = [:]
    var text: String

    init(_ text: String) {
        self.text = text
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                continue
            }
            values[String(line[..<space])] = value
        }
    }

    subscript(_ series: String) -> Double { values[series] ?? 0 }
}

func httpGet(_ port: UInt16, _ path: String) throws -> (status: Int, body: String) {
    let result = try Harness.run(
        "/usr/bin/curl", ["-s", "-o", "-", "-w", "\n%{http_code}", "http://127.0.0.1:\(port)\(path)"])
    var lines = result.output.split(separator: "\n", omittingEmptySubsequences: false)
    let status = Int(lines.popLast() ?? "") ?? 0
    return (status, lines.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines))
}

@Suite("metrics, health and readiness", .serialized)
struct MetricsIntegrationTests {
    @Test("real queries change exactly the counters they should; promtool accepts the scrape")
    func counters() throws {
        let nsd = try NSDServer()
        let directory = try Harness.temporaryDirectory()
        try "$TTL 60\n@ SOA a. b. 1 2 3 4 5\napi.internal A 10.200.0.2\n"
            .write(to: directory.appendingPathComponent("p.rpz"), atomically: true, encoding: .utf8)
        let port = Harness.freePort(), metricsPort = Harness.freePort()
        let upstream = "127.0.0.1:\(nsd.port)"
        let fence = try Harness.serve(
            [
                "--listen", "127.0.0.1:\(port)", "--upstream", upstream, "--allow", "*.example.test",
                "--allow", "*.fail.invalid", "--policy", directory.appendingPathComponent("p.rpz").path,
                "--metrics", "127.0.0.1:\(metricsPort)",
            ],
            port: port, log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let before = Scrape(try httpGet(metricsPort, "/metrics").body)
        let dig = try #require(Harness.tool("dig"))
        for name in ["www.example.test", "evil.other", "api.internal", "x.fail.invalid"] {
            _ = try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=5", name, "A"])
        }
        let after = Scrape(try httpGet(metricsPort, "/metrics").body)
        func delta(_ series: String) -> Double { after[series] - before[series] }

        #expect(delta(#"dnsfence_queries_total{transport="udp",qtype="A",policy="default",action="pass"}"#) == 2)
        #expect(delta(#"dnsfence_queries_total{transport="udp",qtype="A",policy="default",action="deny"}"#) == 1)
        #expect(delta(#"dnsfence_queries_total{transport="udp",qtype="A",policy="default",action="local"}"#) == 1)
        #expect(delta(#"dnsfence_responses_total{rcode="NOERROR"}"#) == 2)
        #expect(delta(#"dnsfence_responses_total{rcode="NXDOMAIN"}"#) == 1)
        #expect(delta(#"dnsfence_responses_total{rcode="SERVFAIL"}"#) == 1)
        #expect(delta(#"dnsfence_ede_total{code="15"}"#) == 1)
        #expect(delta(#"dnsfence_ede_total{code="22"}"#) == 1)
        #expect(delta(#"dnsfence_upstream_queries_total{verdict="pass"}"#) == 2)
        #expect(after.values[#"dnsfence_upstream_queries_total{verdict="deny"}"#] == 0)
        #expect(delta("dnsfence_upstream_responses_total{upstream=\"\(upstream)\",result=\"noerror\"}") == 1)
        #expect(delta("dnsfence_upstream_responses_total{upstream=\"\(upstream)\",result=\"refused\"}") == 1)
        #expect(delta("dnsfence_cache_misses_total") == 2)
        #expect(delta(#"dnsfence_query_duration_seconds_count{action="pass"}"#) == 2)
        #expect(
            after.values.contains {
                $0.key.hasPrefix(#"dnsfence_build_info{version="0.1.0",commit=""#) && $0.value == 1
            })
        #expect(!after.text.contains("www.example.test"))  // never a query name as a label

        let promtool = try #require(Harness.tool("promtool"), "promtool (Debian's prometheus package) is not installed")
        let file = directory.appendingPathComponent("scrape.txt")
        try (after.text + "\n").write(to: file, atomically: true, encoding: .utf8)
        let check = try Harness.run("/bin/sh", ["-c", "\(promtool) check metrics < \(file.path)"])
        #expect(check.status == 0, "\(check.output)")

        #expect(try httpGet(metricsPort, "/healthz").status == 200)
        #expect(try httpGet(metricsPort, "/nope").status == 404)
    }

    @Test("/readyz flips to 503 when the upstream is down, and back")
    func readiness() throws {
        var nsd: NSDServer? = try NSDServer()
        let nsdPort = try #require(nsd?.port)
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort(), metricsPort = Harness.freePort()
        let fence = try Harness.serve(
            [
                "--listen", "127.0.0.1:\(port)", "--upstream", "127.0.0.1:\(nsdPort)", "--allow",
                "*.example.test",
                "--metrics", "127.0.0.1:\(metricsPort)",
            ],
            port: port, log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        #expect(try httpGet(metricsPort, "/readyz") == (200, #"{"status":"ready"}"#))
        nsd = nil  // stops nsd
        let down = try httpGet(metricsPort, "/readyz")
        #expect(down.status == 503)
        #expect(down.body.contains("no upstream answers"))
        nsd = try NSDServer(fixedPort: nsdPort)
        #expect(try httpGet(metricsPort, "/readyz").status == 200)
    }
}

extension NSDServer {
    /// Stops nsd now (deinit does the same).
    func stop() { daemon.stop() }
}

@Suite("query log file")
struct QueryLogFileTests {
    @Test("log.file is appended to, and SIGUSR1 reopens it after logrotate moved it")
    func reopen() throws {
        let nsd = try NSDServer()
        let directory = try Harness.temporaryDirectory()
        let file = directory.appendingPathComponent("queries.log").path
        let port = Harness.freePort()
        try """
        listen: [{ address: 127.0.0.1:\(port), policy: p }]
        upstreams: [127.0.0.1:\(nsd.port)]
        log: { queries: all, file: \(file) }
        policies: { p: { allow: [www.example.test] } }
        """.write(to: directory.appendingPathComponent("l.yaml"), atomically: true, encoding: .utf8)
        let fence = try Harness.serve(
            ["--config", directory.appendingPathComponent("l.yaml").path], port: port,
            log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let dig = try #require(Harness.tool("dig"))
        func ask(_ name: String) throws { _ = try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", name]) }
        func contents(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        func until(_ condition: () -> Bool) -> Bool {
            for _ in 0..<50 {
                if condition() { return true }
                usleep(100_000)
            }
            return false
        }
        try ask("www.example.test")
        #expect(until { contents(file).contains(#""qname":"www.example.test.""#) })
        #expect(!fence.output.contains(#""qname""#), "nothing on standard output")
        try FileManager.default.moveItem(atPath: file, toPath: file + ".1")
        kill(fence.pid, SIGUSR1)
        usleep(200_000)
        try ask("other.example.test")
        #expect(until { contents(file).contains(#""qname":"other.example.test.""#) }, "written to the new file")
        #expect(!contents(file + ".1").contains("other.example.test"))
    }
}
