import Foundation
import Testing

/// Tunnel budgets end to end: a real dnsfence, nsd serving a wildcard zone, dig and kdig.
@Suite("tunnel budgets")
struct TunnelBudgetTests {
    /// nsd serving `*.tunnel.test` (every name has an address).
    static func upstream() throws -> (Background, UInt16) {
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort()
        let zone = """
            $ORIGIN tunnel.test.
            $TTL 300
            @ IN SOA ns.tunnel.test. h.tunnel.test. 1 3600 600 86400 60
            @ IN NS ns
            ns IN A 127.0.0.1
            * IN A 192.0.2.30
            """
        let nsd = try NSDServer.start(
            zone: "tunnel.test", records: zone, address: "127.0.0.1", port: port, in: nil, directory: directory)
        try Harness.waitForDNS(port: port, name: "probe.tunnel.test")
        return (nsd, port)
    }

    @Test(
        "past the budget: the policy's denial with EDE 15 naming the budget, a metric and a log line; others unaffected"
    )
    func budget() throws {
        let (nsd, upstream) = try Self.upstream()
        defer { nsd.stop() }
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort(), metricsPort = Harness.freePort()
        try """
        listen: [{ address: 127.0.0.1:\(port), policy: p }]
        upstreams: [127.0.0.1:\(upstream)]
        metrics: { listen: 127.0.0.1:\(metricsPort) }
        log: { queries: all }
        policies:
          p:
            allow: ["*.tunnel.test", "*.free.tunnel.test"]
            budget: { names: 5, per: 1m, max-label: 20 }
            budgets: { "*.free.tunnel.test": off }
        """.write(to: directory.appendingPathComponent("b.yaml"), atomically: true, encoding: .utf8)
        let fence = try Harness.serve(
            ["--config", directory.appendingPathComponent("b.yaml").path], port: port,
            log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let dig = try #require(Harness.tool("dig"))
        func ask(_ name: String, from source: String = "127.0.0.1") throws -> String {
            try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "-b", source, "+tries=1", "+time=3", name, "A"]).output
        }
        // 5 new names go through; the 6th is denied (NXDOMAIN, the policy's response) with the budget named.
        for i in 0..<5 {
            let answer = try ask("n\(i).tunnel.test")
            #expect(answer.contains("status: NOERROR") && answer.contains("192.0.2.30"), "\(answer)")
        }
        let denied = try ask("n5.tunnel.test")
        #expect(denied.contains("status: NXDOMAIN") && !denied.contains("192.0.2.30"), "\(denied)")
        #expect(denied.contains("EDE: 15 (Blocked)"), "\(denied)")
        #expect(
            denied.contains("tunnel budget of *.tunnel.test. (--allow"),
            "the EDE names the rule's budget: \(denied)")
        #expect(denied.contains("more than 5 new names per 1m"), "\(denied)")
        // A name already asked costs nothing (here a cache hit); another client has its own budget.
        #expect(try ask("n1.tunnel.test").contains("192.0.2.30"))
        #expect(try ask("n5.tunnel.test", from: "127.0.0.2").contains("192.0.2.30"))
        // The rule with its budget off is never refused; a long label is, whatever is left.
        for i in 0..<10 { #expect(try ask("f\(i).free.tunnel.test").contains("192.0.2.30")) }
        let long = try ask("\(String(repeating: "a", count: 21)).tunnel.test", from: "127.0.0.3")
        #expect(long.contains("status: NXDOMAIN") && long.contains("a label longer than 20"), "\(long)")

        let scrape = try httpGet(metricsPort, "/metrics").body
        #expect(scrape.contains(#"dnsfence_budget_denials_total{policy="p",limit="names"} 1"#), "\(scrape)")
        #expect(scrape.contains(#"dnsfence_budget_denials_total{policy="p",limit="label"} 1"#), "\(scrape)")
        var logged = false
        for _ in 0..<20 where !logged {
            logged = fence.output.contains(#""qname":"n5.tunnel.test.","qtype":"A","action":"deny","rule":""#)
            if !logged { usleep(100_000) }
        }
        #expect(logged, "the denial is in the query log: \(fence.output)")
    }

    @Test("the default budget: a flood of unique names from one client moves at most 1 KB/s of names")
    func flood() throws {
        let (nsd, upstream) = try Self.upstream()
        defer { nsd.stop() }
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort()
        let fence = try Harness.serve(
            [
                "--listen", "127.0.0.1:\(port)", "--upstream", "127.0.0.1:\(upstream)", "--allow", "*.tunnel.test",
                "--query-log", "off",
            ], port: port, log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        // 99 characters below the wildcard, the most the default allows, each name new.
        let seconds = 20.0
        let result = try Background.script(
            """
            python3 - <<'PY'
            import socket, struct, time, random
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(0.5)
            end = time.time() + \(seconds)
            answered = 0
            n = 0
            qid = random.randrange(65536)
            while time.time() < end:
                data = format(n, "x").rjust(49, "z")
                labels = [data, "b" * 49, "tunnel", "test"]
                wire = b"".join(bytes([len(l)]) + l.encode() for l in labels) + b"\\0"
                qid = (qid + 1) & 0xFFFF
                s.sendto(struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire + struct.pack(">HH", 1, 1), ("127.0.0.1", \(port)))
                n += 1
                try:
                    while True:
                        reply, _ = s.recvfrom(4096)
                        if struct.unpack(">H", reply[:2])[0] == qid:
                            break
                    if reply[3] & 0x0F == 0 and struct.unpack(">H", reply[6:8])[0] > 0:
                        answered += 1
                except socket.timeout:
                    pass
            print(n, answered)
            PY
            """, seconds: 120)
        let numbers = result.output.split(whereSeparator: { $0.isWhitespace }).compactMap { Int($0) }
        try #require(numbers.count == 2, "\(result.output)")
        let (sent, answered) = (numbers[0], numbers[1])
        let rate = Double(answered * 100) / seconds
        print("tunnel flood: \(sent) names sent, \(answered) answered in \(seconds) s: \(rate) bytes/s of names")
        #expect(sent > 2_000, "the flood ran at speed")
        #expect(answered >= 100, "the burst went through")
        #expect(rate <= 1024, "\(rate) bytes/s")
    }
}
