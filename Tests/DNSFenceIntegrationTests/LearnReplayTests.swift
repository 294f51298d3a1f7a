import Foundation
import Testing

/// `dnsfence learn` and `dnsfence check --replay` on hand-made logs.
@Suite("learn and replay")
struct LearnReplayTests {
    static func line(_ name: String, action: String, rcode: String = "NOERROR", time: String = "2026-12-05T10:00:00Z")
        -> String
    {
        #"{"time":"\#(time)","client":"10.0.0.2","transport":"udp","listener_policy":"p","policy":"p","qname":"\#(name).","qtype":"A","action":"\#(action)","rule":null,"rcode":"\#(rcode)","ede":null,"ede_text":null,"latency_us":90,"upstream":true,"published":[]}"#
    }

    @Test(
        "learn: the names really resolved, wildcards for many siblings but not on a public suffix; replaying gives no denials"
    )
    func learn() throws {
        let directory = try Harness.temporaryDirectory()
        var lines: [String] = []
        for i in 0..<3 { lines.append(Self.line("api.github.com", action: "pass", time: "2026-12-05T10:00:0\(i)Z")) }
        for i in 0..<12 { lines.append(Self.line("b\(i).cdn.example.test", action: "audit")) }
        for i in 0..<12 { lines.append(Self.line("user\(i).github.io", action: "audit")) }
        lines.append(Self.line("typo.example.test", action: "audit", rcode: "NXDOMAIN"))
        lines.append(Self.line("blocked.example.test", action: "deny", rcode: "NXDOMAIN"))
        lines.append("Dec  5 10:00:00 dnsmasq[812]: query[AAAA] PyPI.org from 10.0.0.2")
        lines.append("Dec  5 10:00:00 dnsmasq[812]: reply pypi.org is 151.101.0.223")
        let log = directory.appendingPathComponent("queries.log")
        try (lines.joined(separator: "\n") + "\n").write(to: log, atomically: true, encoding: .utf8)

        let learned = try Harness.run(Harness.dnsfence, ["learn", log.path])
        #expect(learned.status == 0, "\(learned.output)")
        let output = learned.output
        #expect(output.contains("api.github.com  # 3 queries, first 2026-12-05T10:00:00Z, last 2026-12-05T10:00:02Z"))
        #expect(output.contains("*.cdn.example.test  # 12 queries for 12 names"), "\(output)")
        #expect(!output.contains("b3.cdn.example.test"))
        #expect(
            !output.contains("*.github.io") && output.contains("user7.github.io  #"), "github.io is a public suffix")
        #expect(output.contains("12 names under github.io, a public suffix: listed one by one"))
        #expect(output.contains("\npypi.org  # 1 query"), "from dnsmasq's log")
        #expect(!output.contains("typo.example.test") && !output.contains("blocked.example.test"))

        // The learned policy, replayed against the same log: nothing answered would be denied.
        let policy = directory.appendingPathComponent("learned.allow")
        try output.write(to: policy, atomically: true, encoding: .utf8)
        let replay = try Harness.run(
            Harness.dnsfence, ["check", "--no-system", "--policy", policy.path, "--replay", log.path])
        #expect(replay.status == 0, "\(replay.output)")
        #expect(replay.output.contains("0 names would be denied that were answered"), "\(replay.output)")

        // RPZ, and --merge: only what the existing policy does not allow yet.
        let existing = directory.appendingPathComponent("existing.allow")
        try "api.github.com\n*.github.io\n".write(to: existing, atomically: true, encoding: .utf8)
        let merged = try Harness.run(Harness.dnsfence, ["learn", "--merge", existing.path, log.path]).output
        #expect(merged.hasPrefix("api.github.com\n*.github.io\n# learned by dnsfence learn:"), "\(merged)")
        #expect(!merged.contains("user7.github.io") && merged.contains("*.cdn.example.test"))
        let rpz = try Harness.run(Harness.dnsfence, ["learn", "--format", "rpz", "--min-count", "2", log.path]).output
        #expect(rpz.contains("api.github.com CNAME rpz-passthru. ; 3 queries"), "\(rpz)")
        #expect(!rpz.contains("pypi.org"), "--min-count 2 leaves out names asked once")
    }

    @Test("check --replay lists exactly the names whose verdict flips, and fails on answered names now denied")
    func replay() throws {
        let directory = try Harness.temporaryDirectory()
        let log = directory.appendingPathComponent("old.log")
        try [
            Self.line("www.a.test", action: "pass"), Self.line("www.a.test", action: "pass"),
            Self.line("old.test", action: "pass"), Self.line("evil.test", action: "deny", rcode: "NXDOMAIN"),
            Self.line("still.denied.test", action: "deny", rcode: "NXDOMAIN"),
        ].joined(separator: "\n").write(to: log, atomically: true, encoding: .utf8)
        let result = try Harness.run(
            Harness.dnsfence,
            ["check", "--no-system", "--allow", "www.a.test", "--allow", "evil.test", "--replay", log.path])
        #expect(result.status == 1, "an answered name would now be denied")
        let flips = result.output.split(separator: "\n").filter { $0.contains(" → ") }
        #expect(
            flips == ["allowed → denied: old.test A (1 queries)", "denied → allowed: evil.test A (1 queries)"],
            "\(result.output)")
        #expect(
            result.output.contains("1 names would be denied that were answered, 1 would be answered that were denied"))
    }
}
