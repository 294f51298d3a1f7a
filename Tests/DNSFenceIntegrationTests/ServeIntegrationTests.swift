import DNSFenceWire
import Foundation
import Testing

/// Real processes on loopback: nsd as the upstream, `dnsfence serve`, dig and kdig as clients.
@Suite("dnsfence serve against nsd", .serialized)
final class ServeIntegrationTests {
    let nsd: NSDServer
    let port: UInt16
    let server: Background
    let directory: URL

    init() throws {
        nsd = try NSDServer()
        directory = try Harness.temporaryDirectory()
        let rpz = """
            $TTL 60
            @ SOA localhost. root.localhost. 1 3600 600 86400 60
            api.internal A 10.200.0.2
            blocked.example.test CNAME .
            """
        try rpz.write(to: directory.appendingPathComponent("sandbox.rpz"), atomically: true, encoding: .utf8)
        port = Harness.freePort()
        server = try Harness.serve(
            [
                "--listen", "127.0.0.1:\(port)", "--upstream", "127.0.0.1:\(nsd.port)",
                "--allow", "*.example.test", "--policy", directory.appendingPathComponent("sandbox.rpz").path,
            ],
            port: port, log: directory.appendingPathComponent("dnsfence.log"))
    }

    deinit { server.stop() }

    func dig(_ args: [String]) throws -> String {
        let dig = try #require(Harness.tool("dig"))
        return try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=2"] + args).output
    }

    @Test func allowedNameResolvesWithUpstreamData() throws {
        let out = try dig(["www.example.test", "A", "+short"])
        #expect(out.split(separator: "\n").sorted() == ["192.0.2.10", "192.0.2.11"])
        let chain = try dig(["alias.example.test", "A", "+noall", "+answer"])
        #expect(chain.contains("CNAME"))
        #expect(chain.contains("192.0.2.10"))
    }

    @Test func deniedNameGetsNXDOMAINWithEDE() throws {
        let out = try dig(["evil.example.com", "A"])
        #expect(out.contains("status: NXDOMAIN"))
        #expect(out.contains("EDE: 15 (Blocked)"))
        let rule = try dig(["blocked.example.test", "A"])
        #expect(rule.contains("status: NXDOMAIN"))
        #expect(rule.contains("sandbox.rpz:4"))
    }

    @Test func rewriteAnswersProxyAndNodataForOtherTypes() throws {
        let out = try dig(["api.internal", "A", "+noall", "+answer", "+comments"])
        #expect(out.contains("10.200.0.2"))
        #expect(out.contains(" aa"))
        let aaaa = try dig(["api.internal", "AAAA"])
        #expect(aaaa.contains("status: NOERROR"))
        #expect(aaaa.contains("ANSWER: 0"))
    }

    @Test func filteredTypeGetsNodataWithEDE17() throws {
        let out = try dig(["www.example.test", "TXT"])
        #expect(out.contains("status: NOERROR"))
        #expect(out.contains("EDE: 17 (Filtered)"))
    }

    @Test func largeAnswerTruncatedOverUDPAndWholeOverTCP() throws {
        // TXT is not an allowed type in this suite's policy, so ask through a policy that allows it.
        let port2 = Harness.freePort()
        let big = try Harness.serve(
            [
                "--listen", "127.0.0.1:\(port2)", "--upstream", "127.0.0.1:\(nsd.port)",
                "--config", try writeConfig(port: port2),
            ],
            port: port2, log: directory.appendingPathComponent("big.log"))
        defer { big.stop() }
        let dig = try #require(Harness.tool("dig"))
        let udp = try Harness.run(
            dig, ["@127.0.0.1", "-p", "\(port2)", "+ignore", "+tries=1", "big.example.test", "TXT"]
        ).output
        #expect(udp.contains(" tc"))
        #expect(udp.contains("ANSWER: 0"))
        let tcp = try Harness.run(dig, ["@127.0.0.1", "-p", "\(port2)", "+tcp", "+tries=1", "big.example.test", "TXT"])
            .output
        #expect(tcp.contains("ANSWER: 60"))
        let kdig = try #require(Harness.tool("kdig"))
        let pipelined = try Harness.run(
            kdig,
            [
                "@127.0.0.1", "-p", "\(port2)", "+tcp", "+keepopen", "+short",
                "www.example.test", "A", "short.example.test", "A",
            ]
        ).output
        #expect(pipelined.contains("192.0.2.10"))
        #expect(pipelined.contains("192.0.2.20"))
    }

    func writeConfig(port: UInt16) throws -> String {
        let yaml = """
            listen:
              - address: 127.0.0.1:\(port)
                policy: wide
            upstreams: [127.0.0.1:\(nsd.port)]
            policies:
              wide:
                allow: ["*.example.test"]
                qtypes: [A, AAAA, TXT]
            """
        let url = directory.appendingPathComponent("wide-\(port).yaml")
        try yaml.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    @Test func protocolErrors() throws {
        let chaos = try dig(["version.bind", "TXT", "CH"])
        #expect(chaos.contains("status: REFUSED"))
        let badvers = try dig(["+edns=1", "+noednsneg", "www.example.test", "A"])
        #expect(badvers.contains("status: BADVERS"))
        // RFC 8482: ANY for a passed name is asked upstream as A and answered with that RRset;
        // a name that does not exist gets NXDOMAIN, not a synthesized answer.
        let any = try dig(["www.example.test", "ANY"])
        #expect(any.contains("status: NOERROR") && any.contains("192.0.2.10") && any.contains("192.0.2.11"), "\(any)")
        #expect(any.contains("www.example.test.\t\tIN\tANY") || any.contains(";www.example.test."), "\(any)")
        let missing = try dig(["nothing-here.example.test", "ANY"])
        #expect(missing.contains("status: NXDOMAIN"), "\(missing)")
        let cached = try dig(["www.example.test", "ANY"])
        #expect(cached.contains("192.0.2.10"), "a second ANY is a cache hit on the A answer: \(cached)")
    }

    @Test("denied names never reach the upstream; cache hits do not either")
    func deniedNeverForwarded() throws {
        let relay = CountingRelay(relayingTo: nsd.port)
        defer { relay.stop() }
        let port3 = Harness.freePort()
        let fence = try Harness.serve(
            [
                "--listen", "127.0.0.1:\(port3)", "--upstream", "127.0.0.1:\(relay.port)", "--allow",
                "*.example.test",
            ],
            port: port3, log: directory.appendingPathComponent("relay.log"))
        defer { fence.stop() }
        let dig = try #require(Harness.tool("dig"))
        for name in ["secret.exfil.test", "a.example.com", "example.test", "x.other"] {
            let out = try Harness.run(dig, ["@127.0.0.1", "-p", "\(port3)", "+tries=1", name, "A"]).output
            #expect(out.contains("status: NXDOMAIN"))
        }
        for _ in 0..<3 {
            let out = try Harness.run(
                dig, ["@127.0.0.1", "-p", "\(port3)", "+tries=1", "+short", "www.example.test", "A"]
            ).output
            #expect(out.contains("192.0.2.10"))
        }
        // Exactly one upstream query: the first allowed lookup; the denied names and the two
        // repeats (cache hits) never left dnsfence.
        #expect(relay.received == ["www.example.test."])

        // Negative answers are cached too (RFC 2308): two NXDOMAINs, one upstream query.
        for _ in 0..<2 {
            let out = try Harness.run(dig, ["@127.0.0.1", "-p", "\(port3)", "+tries=1", "nope.example.test", "A"])
                .output
            #expect(out.contains("status: NXDOMAIN"))
            #expect(!out.contains("EDE"))  // an upstream NXDOMAIN, not a denial
        }
        #expect(relay.received == ["www.example.test.", "nope.example.test."])

        // TTLs count down in cache hits.
        func ttl() throws -> Int {
            let out = try Harness.run(
                dig,
                [
                    "@127.0.0.1", "-p", "\(port3)", "+tries=1", "+noall", "+answer",
                    "www.example.test", "A",
                ]
            ).output
            return Int(out.split(separator: "\n").first?.split(whereSeparator: { $0 == " " || $0 == "\t" })[1] ?? "")
                ?? -1
        }
        let first = try ttl()
        sleep(2)
        let second = try ttl()
        #expect(first > 0 && first <= 300)
        #expect(second <= first - 1)
        #expect(relay.received.count == 2)
    }

    @Test("0.0.0.0 and [::] on one port (IPv6 sockets are IPv6 only), and mdig pipelining over TCP")
    func dualStackAndMdig() throws {
        let port = Harness.freePort()
        let server = try Background(
            Harness.dnsfence,
            [
                "serve", "--listen", "0.0.0.0:\(port)", "--listen", "[::]:\(port)", "--upstream",
                "127.0.0.1:\(nsd.port)", "--allow", "*.example.test",
            ], log: directory.appendingPathComponent("dual.log"))
        defer { server.stop() }
        let dig = try #require(Harness.tool("dig"))
        func ask(_ server: String, _ transport: String, _ type: String = "A") throws -> String {
            try Harness.run(
                dig,
                ["@\(server)", "-p", "\(port)", transport, "+tries=1", "+time=1", "+short", "www.example.test", type]
            ).output
        }
        var answered = ""
        for _ in 0..<50 {
            answered = try ask("::1", "+notcp", "AAAA")
            if answered.contains("2001:db8::10") { break }
            usleep(100_000)
        }
        #expect(answered.contains("2001:db8::10"), "\(server.output)")
        #expect(try ask("127.0.0.1", "+notcp").contains("192.0.2.10"))
        #expect(try ask("127.0.0.1", "+tcp").contains("192.0.2.10"))
        #expect(try ask("::1", "+tcp").contains("192.0.2.10"))
        let mdig = try #require(Harness.tool("mdig"))
        let out = try Harness.run(
            mdig,
            [
                "@::1", "-p", "\(port)", "+tcp", "+short",
                "www.example.test", "alias.example.test", "denied.other",
            ]
        ).output
        #expect(out.contains("192.0.2.10"))
        #expect(out.contains("www.example.test."))
    }

    @Test("the DO bit is echoed and passed upstream")
    func dnssecOK() throws {
        let out = try dig(["+dnssec", "www.example.test", "A"])
        #expect(out.contains("flags: do;"))
        #expect(out.contains("192.0.2.10"))
    }
}

@Suite("dnsfence check")
struct CheckCommandTests {
    @Test("a broken configuration prints file:line errors and exits 1")
    func brokenConfig() throws {
        let dir = try Harness.temporaryDirectory()
        try "$TTL 60\n@ SOA a. b. 1 2 3 4 5\nok.test CNAME rpz-passthru.\nbad.test A 300.1.2.3\n"
            .write(to: dir.appendingPathComponent("bad.rpz"), atomically: true, encoding: .utf8)
        try "*.co.uk\nfine.test\n".write(
            to: dir.appendingPathComponent("wide.allow"), atomically: true, encoding: .utf8)
        let yaml = """
            listen:
              - address: 127.0.0.1:5399
                policy: p
            upstreams: [192.0.2.1]
            policies:
              p:
                zones: [bad.rpz, wide.allow]
                colour: blue
            """
        let config = dir.appendingPathComponent("dnsfence.yaml")
        try yaml.write(to: config, atomically: true, encoding: .utf8)
        let result = try Harness.run(Harness.dnsfence, ["check", "--config", config.path])
        #expect(result.status == 1)
        #expect(result.output.contains("\(config.path):8:5: error: unknown key 'colour' in policy 'p'"))

        // With the unknown key gone, the zone error and the public-suffix warning show.
        try yaml.replacingOccurrences(of: "\n    colour: blue", with: "").appending("\n")
            .write(to: config, atomically: true, encoding: .utf8)
        let second = try Harness.run(Harness.dnsfence, ["check", "--config", config.path])
        #expect(second.status == 1)
        #expect(
            second.output.contains(
                "bad.rpz:4: error: Syntax error, could not parse the RR's rdata: 'bad.test A 300.1.2.3'"))

        try "$TTL 60\n@ SOA a. b. 1 2 3 4 5\nok.test CNAME rpz-passthru.\n"
            .write(to: dir.appendingPathComponent("bad.rpz"), atomically: true, encoding: .utf8)
        let third = try Harness.run(Harness.dnsfence, ["check", "--config", config.path])
        #expect(third.status == 0)
        #expect(third.output.contains("wide.allow:1: warning: '*.co.uk.' is a wildcard on the public suffix 'co.uk.'"))
        #expect(third.output.contains("dnsfence check: 1 policies, 3 rules, 1 warnings, 0 errors"))
    }

    @Test("the embedded default checks clean")
    func defaultConfig() throws {
        let result = try Harness.run(Harness.dnsfence, ["check"])
        #expect(result.status == 0)
        #expect(result.output.contains("1 policies, 4 rules"))
    }
}
