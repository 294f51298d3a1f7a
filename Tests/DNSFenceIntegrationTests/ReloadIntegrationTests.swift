import Foundation
import Testing

/// Live reload of a running `dnsfence serve`: through `dnsfence reload` (the control socket)
/// and through SIGHUP; a broken configuration leaves the old one serving.
@Suite("live reload")
struct ReloadIntegrationTests {
    /// A server with a configuration file, its policy file, a control socket and metrics.
    struct Fixture {
        let nsd: NSDServer
        let directory: URL
        let port: UInt16
        let metricsPort: UInt16
        let control: String
        let fence: Background

        init() throws {
            nsd = try NSDServer()
            directory = try Harness.temporaryDirectory()
            port = Harness.freePort()
            metricsPort = Harness.freePort()
            control = directory.appendingPathComponent("control.sock").path
            try Self.policy(["www.example.test"]).write(
                to: directory.appendingPathComponent("sandbox.allow"), atomically: true, encoding: .utf8)
            try Self.config(port: port, metricsPort: metricsPort, control: control, upstreamPort: nsd.port).write(
                to: directory.appendingPathComponent("dnsfence.yaml"), atomically: true, encoding: .utf8)
            fence = try Harness.serve(
                ["--config", directory.appendingPathComponent("dnsfence.yaml").path], port: port,
                log: directory.appendingPathComponent("dnsfence.log"))
        }

        static func policy(_ names: [String]) -> String { names.joined(separator: "\n") + "\n" }

        func config(upstreamPort: UInt16) -> String {
            Self.config(port: port, metricsPort: metricsPort, control: control, upstreamPort: upstreamPort)
        }

        static func config(port: UInt16, metricsPort: UInt16, control: String, upstreamPort: UInt16) -> String {
            """
            listen:
              - address: 127.0.0.1:\(port)
                policy: sandbox
            upstreams: [127.0.0.1:\(upstreamPort)]
            policies:
              sandbox:
                zones: [sandbox.allow]
            metrics: { listen: 127.0.0.1:\(metricsPort) }
            control: \(control)
            log: { queries: off }
            """
        }

        func write(policy names: [String]) throws {
            try Self.policy(names).write(
                to: directory.appendingPathComponent("sandbox.allow"), atomically: true, encoding: .utf8)
        }

        func status(_ name: String) throws -> String {
            let dig = try #require(Harness.tool("dig"))
            let out = try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=3", name, "A"]).output
            guard let range = out.range(of: "status: ") else { return "no answer: \(out)" }
            return String(out[range.upperBound...].prefix { $0 != "," })
        }

        func reload() throws -> Harness.Result {
            try Harness.run(Harness.dnsfence, ["reload", "--control", control])
        }
    }

    @Test("a name added answers after `dnsfence reload`, a name removed is denied; counted on /metrics")
    func addAndRemove() throws {
        let f = try Fixture()
        defer { f.fence.stop() }
        #expect(try f.status("www.example.test") == "NOERROR")
        #expect(try f.status("alias.example.test") == "NXDOMAIN")

        try f.write(policy: ["alias.example.test"])
        let result = try f.reload()
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("reloaded"))
        #expect(try f.status("alias.example.test") == "NOERROR")
        #expect(try f.status("www.example.test") == "NXDOMAIN")

        let metrics = Scrape(try httpGet(f.metricsPort, "/metrics").body)
        #expect(metrics[#"dnsfence_policy_reloads_total{result="success"}"#] == 1)
        #expect(metrics[#"dnsfence_policy_reloads_total{result="failure"}"#] == 0)
        let ready = try httpGet(f.metricsPort, "/readyz")
        #expect(ready.status == 200)
        #expect(ready.body.contains(#""reload":{"result":"success""#), "\(ready.body)")
    }

    @Test("a broken policy file is refused with file:line; the old policy keeps serving and /readyz says why")
    func brokenReload() throws {
        let f = try Fixture()
        defer { f.fence.stop() }
        try "www.example.test\nbad name with spaces\n".write(
            to: f.directory.appendingPathComponent("sandbox.allow"), atomically: true, encoding: .utf8)
        let result = try f.reload()
        #expect(result.status == 1, "\(result.output)")
        #expect(result.output.contains("sandbox.allow:2"), "\(result.output)")
        // Still the old policy: www answers, nothing else does.
        #expect(try f.status("www.example.test") == "NOERROR")
        let ready = try httpGet(f.metricsPort, "/readyz")
        #expect(ready.status == 200, "the old policy still serves")
        #expect(ready.body.contains(#""result":"failure""#) && ready.body.contains("sandbox.allow:2"), "\(ready.body)")
        let metrics = Scrape(try httpGet(f.metricsPort, "/metrics").body)
        #expect(metrics[#"dnsfence_policy_reloads_total{result="failure"}"#] == 1)

        // Fixed: the next reload applies.
        try f.write(policy: ["www.example.test", "short.example.test"])
        #expect(try f.reload().status == 0)
        #expect(try f.status("short.example.test") == "NOERROR")
    }

    @Test("SIGHUP reloads instead of killing the server; upstreams change with a reload")
    func sighup() throws {
        let f = try Fixture()
        defer { f.fence.stop() }
        // A second upstream that serves the same zone; the first one stops.
        let other = try NSDServer()
        try f.config(upstreamPort: other.port).write(
            to: f.directory.appendingPathComponent("dnsfence.yaml"), atomically: true, encoding: .utf8)
        try f.write(policy: ["www.example.test", "short.example.test"])
        #expect(kill(f.fence.pid, SIGHUP) == 0)
        var answered = "?"
        for _ in 0..<50 {
            answered = try f.status("short.example.test")
            if answered == "NOERROR" { break }
            usleep(100_000)
        }
        #expect(answered == "NOERROR")
        #expect(kill(f.fence.pid, 0) == 0, "SIGHUP must not stop the server")
        f.nsd.daemon.stop()
        // A name not cached yet resolves through the new upstream.
        #expect(try f.status("alias.example.test") == "NXDOMAIN")  // not allowed
        try f.write(policy: ["alias.example.test"])
        #expect(try f.reload().status == 0)
        #expect(try f.status("alias.example.test") == "NOERROR")
        #expect(f.fence.output.contains("SIGHUP: reloading"))
    }

    @Test(
        "dnsperf at a steady rate through 20 reloads: no query lost, no SERVFAIL",
        .enabled(if: Harness.tool("dnsperf") != nil, "needs dnsperf (.ci/run installs it)"))
    func reloadUnderLoad() throws {
        let f = try Fixture()
        defer { f.fence.stop() }
        try f.write(policy: ["www.example.test", "short.example.test"])
        #expect(try f.reload().status == 0)
        let queries = f.directory.appendingPathComponent("queries.txt")
        try (0..<100).map { i in
            i % 4 == 0 ? "denied\(i).example.test A" : (i % 2 == 0 ? "www.example.test A" : "short.example.test A")
        }.joined(separator: "\n").write(to: queries, atomically: true, encoding: .utf8)
        let dnsperf = try #require(Harness.tool("dnsperf"))
        let load = try Background(
            dnsperf, ["-s", "127.0.0.1", "-p", "\(f.port)", "-d", queries.path, "-Q", "2000", "-l", "6", "-t", "2"],
            log: f.directory.appendingPathComponent("dnsperf.log"))
        usleep(500_000)
        var reloads = 0
        for i in 0..<20 {
            // Each reload changes the policy (a name comes and goes), so each builds a new one.
            try f.write(
                policy: ["www.example.test", "short.example.test"] + (i % 2 == 0 ? ["alias.example.test"] : []))
            if try f.reload().status == 0 { reloads += 1 }
            usleep(200_000)
        }
        var status: Int32 = 0
        waitpid(load.pid, &status, 0)
        let report = load.output
        #expect(reloads == 20)
        func count(_ label: String) -> Int? {
            guard let line = report.split(separator: "\n").first(where: { $0.contains(label) }) else { return nil }
            return line.split(separator: " ").compactMap { Int($0) }.first
        }
        #expect(count("Queries sent:") ?? 0 > 5000, "\(report)")
        #expect(count("Queries lost:") == 0, "\(report)")
        #expect(!report.contains("SERVFAIL"), "\(report)")
    }

    @Test("a sandbox drop-in added with a reload gets its listener and policy; removed, both go; others untouched")
    func dropIns() throws {
        let nsd = try NSDServer()
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort(), sandboxPort = Harness.freePort()
        let control = directory.appendingPathComponent("control.sock").path
        try FileManager.default.createDirectory(
            at: directory.appendingPathComponent("policies.d"), withIntermediateDirectories: true)
        try """
        listen: [{ address: 127.0.0.1:\(port), policy: main }]
        upstreams: [127.0.0.1:\(nsd.port)]
        policies: { main: { allow: [www.example.test] } }
        control: \(control)
        drop-ins: policies.d
        log: { queries: off }
        """.write(to: directory.appendingPathComponent("dnsfence.yaml"), atomically: true, encoding: .utf8)
        let fence = try Harness.serve(
            ["--config", directory.appendingPathComponent("dnsfence.yaml").path], port: port,
            log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let dig = try #require(Harness.tool("dig"))
        func status(_ port: UInt16, _ name: String) throws -> String {
            let out = try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=1", name, "A"]).output
            guard let range = out.range(of: "status: ") else { return "no answer" }
            return String(out[range.upperBound...].prefix { $0 != "," })
        }
        func reload() throws -> Harness.Result { try Harness.run(Harness.dnsfence, ["reload", "--control", control]) }
        let dropIn = directory.appendingPathComponent("policies.d/sandbox1.yaml")
        #expect(try status(sandboxPort, "short.example.test") == "no answer")

        try """
        listen: [{ address: 127.0.0.1:\(sandboxPort), policy: sandbox1 }]
        policies: { sandbox1: { allow: [short.example.test] } }
        """.write(to: dropIn, atomically: true, encoding: .utf8)
        let added = try reload()
        #expect(added.status == 0, "\(added.output)")
        #expect(try status(sandboxPort, "short.example.test") == "NOERROR")
        #expect(try status(sandboxPort, "www.example.test") == "NXDOMAIN")  // its own policy
        #expect(try status(port, "www.example.test") == "NOERROR")  // the main listener, untouched

        // A drop-in may not change server-wide settings: refused, with its file and line.
        try """
        listen: [{ address: 127.0.0.1:\(sandboxPort), policy: sandbox1 }]
        policies: { sandbox1: { allow: [short.example.test] } }
        upstreams: [127.0.0.1:9]
        """.write(to: dropIn, atomically: true, encoding: .utf8)
        let refused = try reload()
        #expect(refused.status == 1)
        #expect(refused.output.contains("sandbox1.yaml:3"), "\(refused.output)")
        #expect(try status(sandboxPort, "short.example.test") == "NOERROR")  // still the old one

        try FileManager.default.removeItem(at: dropIn)
        let removed = try reload()
        #expect(removed.status == 0, "\(removed.output)")
        #expect(try status(sandboxPort, "short.example.test") == "no answer")
        #expect(try status(port, "www.example.test") == "NOERROR")
    }

    @Test("without a server, `dnsfence reload` says so and exits 2")
    func noServer() throws {
        let directory = try Harness.temporaryDirectory()
        let result = try Harness.run(
            Harness.dnsfence, ["reload", "--control", directory.appendingPathComponent("none.sock").path])
        #expect(result.status == 2)
        #expect(result.output.contains("cannot reach the server"))
    }
}
