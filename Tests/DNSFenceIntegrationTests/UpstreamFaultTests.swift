import DNSFenceWire
import Foundation
import Testing

/// dnsfence against Debian's ldns-testns scripted to misbehave (Fixtures/faults.data).
@Suite("upstream faults (ldns-testns)", .serialized)
final class UpstreamFaultTests {
    let testns: Background
    let testnsPort: UInt16
    let fence: Background
    let port: UInt16

    init() throws {
        let directory = try Harness.temporaryDirectory()
        let data = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "Fixtures/faults.data")
        testnsPort = Harness.freePort()
        let tool = try #require(Harness.tool("ldns-testns"), "ldns-testns (ldnsutils) is not installed")
        testns = try Background(
            tool, ["-p", "\(testnsPort)", data.path], log: directory.appendingPathComponent("testns.log"))
        try Harness.waitForDNS(port: testnsPort, name: "ok.fault.test")
        port = Harness.freePort()
        fence = try Harness.serve(
            [
                "--listen", "127.0.0.1:\(port)", "--upstream", "127.0.0.1:\(testnsPort)", "--allow",
                "*.fault.test",
            ],
            port: port, log: directory.appendingPathComponent("dnsfence.log"))
    }

    deinit {
        fence.stop()
        testns.stop()
    }

    func dig(_ args: [String]) throws -> String {
        let dig = try #require(Harness.tool("dig"))
        return try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=6"] + args).output
    }

    @Test("a TC answer over UDP is retried over TCP")
    func truncatedRetriedOverTCP() throws {
        #expect(try dig(["+short", "tc.fault.test", "A"]).contains("192.0.2.77"))
    }

    @Test("a reply with the wrong ID is ignored: SERVFAIL with EDE 23, never the forged address")
    func wrongID() throws {
        let out = try dig(["wrongid.fault.test", "A"])
        #expect(out.contains("status: SERVFAIL"))
        #expect(out.contains("EDE: 23"))
        #expect(!out.contains("6.6.6.6"))
    }

    @Test("a reply for another question is ignored")
    func wrongQuestion() throws {
        let out = try dig(["wrongq.fault.test", "AAAA"])
        #expect(out.contains("status: SERVFAIL"))
        #expect(!out.contains("2001:db8::666"))
    }

    @Test("garbage is ignored")
    func garbage() throws {
        #expect(try dig(["garbage.fault.test", "A"]).contains("status: SERVFAIL"))
    }

    @Test("an upstream SERVFAIL becomes SERVFAIL with EDE 22")
    func servfail() throws {
        let out = try dig(["servfail.fault.test", "A"])
        #expect(out.contains("status: SERVFAIL"))
        #expect(out.contains("EDE: 22"))
    }

    @Test("SIGTERM while a query waits upstream: the answer is still delivered, then the process exits")
    func gracefulShutdown() throws {
        let dig = try #require(Harness.tool("dig"))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: dig)
        process.arguments = ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=5", "+short", "slow.fault.test", "A"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        usleep(300_000)
        kill(fence.pid, SIGTERM)
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(output.contains("192.0.2.99"))
        var status: Int32 = 0
        var exited = false
        for _ in 0..<50 where !exited {
            exited = waitpid(fence.pid, &status, WNOHANG) == fence.pid
            if !exited { usleep(100_000) }
        }
        #expect(exited)
        #expect(status == 0)
    }

    @Test("a silent upstream times out into SERVFAIL, and the server keeps answering")
    func timeout() throws {
        #expect(try dig(["silent.fault.test", "A"]).contains("status: SERVFAIL"))
        #expect(try dig(["+short", "ok.fault.test", "A"]).contains("192.0.2.88"))
    }
}

@Suite("failover and TCP limits")
struct FailoverAndTCPTests {
    @Test("a dead first upstream fails over to the second")
    func failover() throws {
        let nsd = try NSDServer()
        let dead = Harness.freePort()
        let port = Harness.freePort()
        let directory = try Harness.temporaryDirectory()
        let fence = try Harness.serve(
            [
                "--listen", "127.0.0.1:\(port)", "--upstream", "127.0.0.1:\(dead)", "--upstream",
                "127.0.0.1:\(nsd.port)",
                "--allow", "*.example.test",
            ],
            port: port, log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let dig = try #require(Harness.tool("dig"))
        let out = try Harness.run(
            dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=6", "+short", "www.example.test"])
        #expect(out.output.contains("192.0.2.10"))
    }

    @Test("1,000 idle TCP connections do not stop a new TCP query; UDP keeps working")
    func idleFlood() throws {
        let nsd = try NSDServer()
        let port = Harness.freePort()
        let directory = try Harness.temporaryDirectory()
        let yaml = """
            listen: [127.0.0.1:\(port)]
            upstreams: [127.0.0.1:\(nsd.port)]
            policies:
              p:
                allow: ["*.example.test"]
                clients: [127.0.0.0/8]
            tcp: { max-connections: 200, max-per-client: 150, idle-timeout: 60s }
            """
        let config = directory.appendingPathComponent("flood.yaml")
        try yaml.write(to: config, atomically: true, encoding: .utf8)
        let fence = try Harness.serve(
            ["--config", config.path],
            port: port, log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }

        var sockets: [Int32] = []
        defer { sockets.forEach { close($0) } }
        for _ in 0..<1000 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = port.bigEndian
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            #expect(rc == 0)
            sockets.append(fd)
        }
        usleep(500_000)
        let kdig = try #require(Harness.tool("kdig"))
        let tcp = try Harness.run(
            kdig,
            [
                "@127.0.0.1", "-p", "\(port)", "+tcp", "+retry=0", "+timeout=5", "+short",
                "www.example.test", "A",
            ])
        #expect(tcp.output.contains("192.0.2.10"))
        let dig = try #require(Harness.tool("dig"))
        let udp = try Harness.run(
            dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+short", "www.example.test", "AAAA"])
        #expect(udp.output.contains("2001:db8::10"))
        // The server kept at most its limit open: the rest were closed as the idlest.
        let ss = try Harness.run("/bin/sh", ["-c", "ss -Htn state established '( sport = :\(port) )' | wc -l"])
        #expect((Int(ss.output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 9999) <= 200)
    }
}

/// RFC 9520: a question every upstream failed on is not asked again for a while.
@Suite("resolution failures cached")
struct FailureCacheTests {
    @Test("a failure is answered from the cache for failure-ttl, then asked upstream again")
    func failureCached() throws {
        let nsd = try NSDServer()
        let relay = CountingRelay(relayingTo: nsd.port)
        defer { relay.stop() }
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort()
        try """
        listen: [{ address: 127.0.0.1:\(port), policy: p }]
        upstreams: [127.0.0.1:\(relay.port)]
        cache: { failure-ttl: 2s }
        policies: { p: { allow: ["*.other.test"] } }
        """.write(to: directory.appendingPathComponent("f.yaml"), atomically: true, encoding: .utf8)
        let fence = try Harness.serve(
            ["--config", directory.appendingPathComponent("f.yaml").path], port: port,
            log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let dig = try #require(Harness.tool("dig"))
        func ask() throws -> String {
            try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=3", "x.other.test", "A"]).output
        }
        func asked() -> Int { relay.received.filter { $0.contains("x.other.test") }.count }
        // nsd serves no other.test: it refuses, so every upstream failed.
        #expect(try ask().contains("status: SERVFAIL"))
        let first = asked()
        #expect(first >= 1)
        #expect(try ask().contains("status: SERVFAIL"))
        #expect(try ask().contains("status: SERVFAIL"))
        #expect(asked() == first, "retries within failure-ttl are answered from the cache")
        usleep(2_300_000)
        #expect(try ask().contains("status: SERVFAIL"))
        #expect(asked() > first, "after failure-ttl the upstream is asked again")
    }
}

/// An upstream slower than the first timeout (1.5 s) is waited for longer once it timed out,
/// and its answers then set the timeout (RFC 6298, as Unbound does per server); an answer that
/// comes after its attempt timed out is still taken.
@Suite("upstream timeouts learned")
struct AdaptiveTimeoutTests {
    /// dnsfence allowing *.example.test, forwarding to `upstreams` (ports on 127.0.0.1) in order;
    /// `ask` asks it for NAME A over UDP, waiting up to 8 s.
    struct Fence {
        let server: Background
        let ask: (String) throws -> String
    }

    static func serve(upstreams: [UInt16]) throws -> Fence {
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort()
        let server = try Harness.serve(
            ["--listen", "127.0.0.1:\(port)", "--allow", "*.example.test", "--no-firewall"]
                + upstreams.flatMap { ["--upstream", "127.0.0.1:\($0)"] },
            port: port, log: directory.appendingPathComponent("dnsfence.log"))
        let dig = try #require(Harness.tool("dig"))
        return Fence(server: server) { name in
            try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=8", name, "A"]).output
        }
    }

    @Test("an upstream that always answers in 2 s is used once its timeout has grown")
    func slowUpstream() throws {
        let nsd = try NSDServer()
        let relay = CountingRelay(relayingTo: nsd.port, delay: 2_000_000)
        defer { relay.stop() }
        let fence = try Self.serve(upstreams: [relay.port])
        defer { fence.server.stop() }
        // The first attempt waits 1.5 s: too short.
        #expect(try fence.ask("www.example.test").contains("status: SERVFAIL"))
        // Then 3 s, long enough; after that the answers keep the timeout above 2 s.
        for name in ["short.example.test", "alias.example.test", "ns1.example.test"] {
            let answer = try fence.ask(name)
            #expect(answer.contains("status: NOERROR"), "\(name): \(answer)")
        }
    }

    @Test("a late answer to an attempt that timed out is taken while the next upstream is asked")
    func lateAnswer() throws {
        let nsd = try NSDServer()
        let slow = CountingRelay(relayingTo: nsd.port, delay: 2_000_000)
        defer { slow.stop() }
        // A second upstream that never answers: a bound socket nobody reads.
        let silent = Harness.boundUDPSocket()
        defer { close(silent.fd) }
        let fence = try Self.serve(upstreams: [slow.port, silent.port])
        defer { fence.server.stop() }
        // The slow upstream's 1.5 s pass; the silent one is asked; the slow answer comes at 2 s.
        let answer = try fence.ask("www.example.test")
        #expect(answer.contains("status: NOERROR") && answer.contains("192.0.2.10"), "\(answer)")
    }
}

/// RFC 8945: dnsfence has no TSIG keys; a signed query is refused as such, never answered unsigned.
@Suite("TSIG")
struct TSIGTests {
    @Test("a TSIG-signed query gets NOTAUTH with an unsigned BADKEY TSIG, and is never forwarded")
    func badKey() throws {
        let nsd = try NSDServer()
        let relay = CountingRelay(relayingTo: nsd.port)
        defer { relay.stop() }
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort()
        let fence = try Harness.serve(
            ["--listen", "127.0.0.1:\(port)", "--upstream", "127.0.0.1:\(relay.port)", "--allow", "*.example.test"],
            port: port, log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let dig = try #require(Harness.tool("dig"))
        let signed = try Harness.run(
            dig,
            [
                "@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=3", "-y", "hmac-sha256:sandbox-key:c2VjcmV0c2VjcmV0",
                "www.example.test", "A",
            ]
        ).output
        #expect(signed.contains("status: NOTAUTH"), "\(signed)")
        #expect(signed.contains("BADKEY"), "the TSIG in the answer says BADKEY: \(signed)")
        #expect(!signed.contains("192.0.2.10"))
        #expect(!relay.received.contains { $0.contains("www.example.test") }, "never forwarded unsigned")
        // Unsigned, the same question is answered.
        let plain = try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+short", "www.example.test", "A"]).output
        #expect(plain.contains("192.0.2.10"))
    }
}
