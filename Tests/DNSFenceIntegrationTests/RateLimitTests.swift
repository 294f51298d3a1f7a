import Foundation
import Testing

/// Per-client rate limits end to end: a real dnsfence and nsd, a flooding client and dig.
@Suite("rate limits")
struct RateLimitTests {
    @Test(
        "a flooding client is held to its rate (the rest dropped or TC); another client and TCP are unaffected",
        arguments: [(true, false), (false, false), (true, true)])
    func flood(kernel: Bool, ipv6: Bool) throws {
        // IPv6: the flood comes from ::1, keyed by its /64 in dnsfence and in the filter alike.
        // The kernel filter needs CAP_BPF: without it (not root) dnsfence limits alone.
        let filtered = kernel && isRoot
        let nsd = try NSDServer()
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort(), metricsPort = Harness.freePort()
        try """
        listen: [{ address: 127.0.0.1:\(port), policy: p }, { address: "[::1]:\(port)", policy: p }]
        upstreams: [127.0.0.1:\(nsd.port)]
        metrics: { listen: 127.0.0.1:\(metricsPort) }
        rate-limit: { queries: 100, burst: 100, slip: 2, exempt: [], kernel: \(kernel) }
        policies: { p: { allow: [www.example.test] } }
        """.write(to: directory.appendingPathComponent("r.yaml"), atomically: true, encoding: .utf8)
        let fence = try Harness.serve(
            ["--config", directory.appendingPathComponent("r.yaml").path], port: port,
            log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        // The flood: 5,000 queries from 127.0.0.1 as fast as the socket takes them, then every
        // reply that comes within a second, sorted into answers and TC.
        let result = try Background.script(
            """
            python3 - <<'PY'
            import socket, struct, time
            host = "\(ipv6 ? "::1" : "127.0.0.1")"
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            s.bind((host, 0))
            q = b"\\3www\\7example\\4test\\0" + struct.pack(">HH", 1, 1)
            start = time.time()
            for i in range(5000):
                s.sendto(struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0) + q, (host, \(port)))
            took = time.time() - start
            s.settimeout(1)
            answers = truncated = 0
            try:
                while True:
                    reply, _ = s.recvfrom(4096)
                    if reply[2] & 0x02:
                        truncated += 1
                    elif struct.unpack(">H", reply[6:8])[0] > 0:
                        answers += 1
            except socket.timeout:
                pass
            print(answers, truncated, round(took, 3))
            PY
            """, seconds: 60)
        let numbers = result.output.split(whereSeparator: { $0.isWhitespace }).compactMap { Double($0) }
        try #require(numbers.count == 3, "\(result.output)")
        let (answers, truncated, took) = (Int(numbers[0]), Int(numbers[1]), numbers[2])
        print(
            "rate limit (kernel: \(filtered), \(ipv6 ? "IPv6" : "IPv4")): 5000 sent in \(took) s: \(answers) answered, \(truncated) TC, "
                + "the rest dropped")
        #expect(answers >= 100 && Double(answers) <= 100 + 100 * (took + 0.5) + 5, "\(answers)")
        // In dnsfence every second limited query is TC; with the filter, one in 16 of those
        // the kernel drops reaches dnsfence, where the same rule applies.
        #expect(truncated > (filtered ? 40 : 500), "TC answers: \(truncated)")
        #expect(answers + truncated < 4500, "the rest is dropped")

        let dig = try #require(Harness.tool("dig"))
        // Another /24: every query answered. The flooder over TCP: answered.
        for _ in 0..<20 {
            let answer = try Harness.run(
                dig, ["@127.0.0.1", "-p", "\(port)", "-b", "127.0.1.1", "+tries=1", "+time=2", "www.example.test"]
            ).output
            #expect(answer.contains("192.0.2.10"), "\(answer)")
        }
        let tcp = try Harness.run(
            dig, ["@127.0.0.1", "-p", "\(port)", "+tcp", "+tries=1", "+time=2", "www.example.test"]
        ).output
        #expect(tcp.contains("192.0.2.10"), "\(tcp)")
        let scrape = try httpGet(metricsPort, "/metrics").body
        #expect(
            scrape.contains(#"dnsfence_queries_total{transport="udp",qtype="A",policy="(none)",action="limited"}"#),
            "\(scrape)")
        let shed = scrape.split(separator: "\n").first { $0.hasPrefix("dnsfence_rate_limit_shed_total ") }
            .flatMap { Int($0.split(separator: " ")[1]) }
        if filtered {
            // Most of the flood: what was queued before the first refusal reached dnsfence.
            #expect((shed ?? 0) > 2000, "dropped in the kernel: \(shed ?? -1)")
        } else {
            #expect((shed ?? 0) == 0, "the filter drops nothing with kernel: false: \(shed ?? -1)")
        }
    }
}
