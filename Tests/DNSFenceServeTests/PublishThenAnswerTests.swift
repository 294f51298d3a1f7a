import DNSFenceCore
import DNSFenceFirewall
import DNSFencePolicy
import DNSFenceRelease
import DNSFenceResolve
import DNSFenceServe
import DNSFenceWire
import Logging
import NIOPosix
import Testing

/// The firewall half of the pipeline with the in-memory publisher: publish, then answer.
struct FirewallFixture {
    let pipeline: QueryPipeline
    let cache: AnswerCache
    let publisher: InMemorySetPublisher
    let binding: FirewallBinding
    static let v4 = SetTarget(netns: nil, family: "inet", table: "t", set: "a4", isIPv6: false)

    init(withIPv6: Bool = false, admitPrivate: Bool = true) throws {
        let policy = try PolicyCompiler().compile(
            name: "p", sources: [PolicySource(file: "t.allow", text: "*.test\n")], allowedTypes: [.a, .aaaa, .https]
        ).policy
        publisher = InMemorySetPublisher(clock: { 1000 })
        cache = AnswerCache(limits: .init(maxEntries: 10, minTTL: 0, maxTTL: 86400), clock: { 1000 })
        binding = FirewallBinding(
            publisher: publisher, ipv4: Self.v4,
            ipv6: withIPv6 ? SetTarget(netns: nil, family: "inet", table: "t", set: "a6", isIPv6: true) : nil,
            minTTL: 60, maxTTL: 3600, grace: 30, admitPrivate: admitPrivate)
        pipeline = QueryPipeline(
            selector: ClientPolicySelector([.init(policy: policy, clients: [])]), cache: cache,
            forwarder: UpstreamForwarder(
                settings: .init(upstreams: []), group: MultiThreadedEventLoopGroup.singleton,
                logger: Logger(label: "t")),
            logger: Logger(label: "t"), firewalls: ["p": binding])
    }

    func prime(_ name: String, _ type: DNSType = .a, answers: [DNSRecord], additionals: [DNSRecord] = []) throws {
        let key = CacheKey(policy: "p", name: try DNSName(name), type: type, dnssecOK: false, checkingDisabled: false)
        cache.store(
            CachedAnswer(
                rcode: .noError, authenticData: false, answers: answers, authorities: [],
                additionals: additionals), for: key)
    }

    /// Stores the answer the way a forwarded one is stored: guarded wire form only.
    func primeWire(_ name: String, answers: [DNSRecord]) throws {
        let question = DNSQuestion(name: try DNSName(name), type: .a)
        let key = CacheKey(policy: "p", name: question.name, type: .a, dnssecOK: false, checkingDisabled: false)
        cache.store(
            CachedAnswer(rcode: .noError, authenticData: false, answers: answers, authorities: [], additionals: []),
            for: key, keepRecords: false
        ) { WireAnswerBuilder.wire(for: $0, question: question, dnssecOK: false, binding: binding) }
    }

    func ask(_ name: String, _ type: DNSType = .a) async throws -> DNSMessage? {
        let query = DNSMessage.query(id: 9, DNSQuestion(name: try DNSName(name), type: type))
        let bytes = await pipeline.answer(
            query.encoded(),
            context: QueryContext(
                client: .v4(1), listenerPolicy: "p",
                transport: .udp))
        return try bytes.map { try DNSMessage(decoding: $0) }
    }
}

func a(_ name: String, _ address: String, ttl: UInt32 = 300) throws -> DNSRecord {
    DNSRecord(name: try DNSName(name), ttl: ttl, address: IPAddress(address)!)
}

@Suite("Publish, then answer")
struct PublishThenAnswerTests {
    @Test("addresses are in the set, with clamp(TTL)+grace, before the answer is released")
    func publishes() async throws {
        let f = try FirewallFixture()
        try f.prime(
            "www.test", answers: [try a("www.test", "192.0.2.1", ttl: 10), try a("www.test", "192.0.2.2", ttl: 7200)])
        let answer = try #require(try await f.ask("www.test"))
        #expect(answer.rcode == .noError)
        // The cache keeps the smallest TTL for the whole answer; the client never gets more than max-ttl.
        #expect(answer.answers.map(\.ttl) == [10, 10])
        #expect(f.publisher.remaining(IPAddress("192.0.2.1")!, in: FirewallFixture.v4) == 90)  // max(10, 60) + 30
        #expect(f.publisher.remaining(IPAddress("192.0.2.2")!, in: FirewallFixture.v4) == 90)
    }

    @Test("a wire-level hit under a firewall publishes the same elements and answers the same")
    func wireLevelHit() async throws {
        let f = try FirewallFixture()
        try f.primeWire(
            "www.test", answers: [try a("www.test", "192.0.2.1", ttl: 10), try a("www.test", "192.0.2.2", ttl: 7200)])
        let key = CacheKey(
            policy: "p", name: try DNSName("www.test"), type: .a, dnssecOK: false, checkingDisabled: false)
        #expect(f.cache.lookup(key)?.answers.isEmpty == true)  // only the wire form is kept
        let answer = try #require(try await f.ask("www.test"))
        #expect(answer.answers.map(\.ttl) == [10, 10])
        #expect(answer.answers.compactMap(\.address) == [IPAddress("192.0.2.1")!, IPAddress("192.0.2.2")!])
        #expect(f.publisher.remaining(IPAddress("192.0.2.1")!, in: FirewallFixture.v4) == 90)
        #expect(f.publisher.remaining(IPAddress("192.0.2.2")!, in: FirewallFixture.v4) == 90)

        // The guard withholds loopback: no template, the records stay and the message path answers.
        try f.primeWire("lo.test", answers: [try a("lo.test", "127.0.0.1"), try a("lo.test", "192.0.2.9")])
        let lo = try #require(try await f.ask("lo.test"))
        #expect(lo.answers.compactMap(\.address) == [IPAddress("192.0.2.9")!])

        // Fail closed on the wire-level path too.
        try f.primeWire("fail.test", answers: [try a("fail.test", "192.0.2.77")])
        f.publisher.state.withLock { $0.failure = .rejected("set full") }
        let failed = try #require(try await f.ask("fail.test"))
        #expect(failed.rcode == .servFail && failed.answers.isEmpty)
    }

    @Test("a failing publisher gives SERVFAIL and no address")
    func failClosed() async throws {
        let f = try FirewallFixture()
        f.publisher.state.withLock { $0.failure = .rejected("set full") }
        try f.prime("www.test", answers: [try a("www.test", "192.0.2.1")])
        let answer = try #require(try await f.ask("www.test"))
        #expect(answer.rcode == .servFail)
        #expect(answer.answers.isEmpty)
        #expect(answer.edns?.extendedErrors.first?.extraText.contains("firewall update failed") == true)
    }

    @Test("only the CNAME chain from the question is released; glue and strays are dropped")
    func chainOnly() async throws {
        let f = try FirewallFixture()
        let cname = DNSRecord(name: try DNSName("www.test"), ttl: 300, cname: try DNSName("cdn.test"))
        try f.prime(
            "www.test", answers: [cname, try a("cdn.test", "192.0.2.7"), try a("evil.test", "203.0.113.9")],
            additionals: [try a("ns.test", "198.51.100.1")])
        let answer = try #require(try await f.ask("www.test"))
        #expect(answer.answers.compactMap(\.address).map(\.description) == ["192.0.2.7"])
        #expect(answer.additionals.isEmpty)
        #expect(f.publisher.remaining(IPAddress("203.0.113.9")!, in: FirewallFixture.v4) == nil)
        #expect(f.publisher.remaining(IPAddress("192.0.2.7")!, in: FirewallFixture.v4) != nil)
    }

    @Test("loopback, metadata and (optionally) private addresses are withheld, never published")
    func admission() async throws {
        let f = try FirewallFixture(admitPrivate: false)
        try f.prime(
            "www.test",
            answers: [
                try a("www.test", "127.0.0.1"), try a("www.test", "169.254.169.254"),
                try a("www.test", "10.0.0.1"), try a("www.test", "192.0.2.3"),
            ])
        let answer = try #require(try await f.ask("www.test"))
        #expect(answer.answers.compactMap(\.address).map(\.description) == ["192.0.2.3"])
        let onlyBad = try FirewallFixture()
        try onlyBad.prime("x.test", answers: [try a("x.test", "127.0.0.1")])
        let empty = try #require(try await onlyBad.ask("x.test"))
        #expect(empty.answers.isEmpty)
        #expect(empty.edns?.extendedErrors.first?.infoCode == 17)
    }

    @Test("AAAA without an IPv6 set is NODATA with EDE 17, never forwarded")
    func familyCoherence() async throws {
        let f = try FirewallFixture(withIPv6: false)
        let answer = try #require(try await f.ask("www.test", .aaaa))
        #expect(answer.rcode == .noError)
        #expect(answer.answers.isEmpty)
        #expect(answer.edns?.extendedErrors.first?.infoCode == 17)
    }

    @Test("HTTPS answers lose their ipv4hint/ipv6hint, keep the rest")
    func httpsHints() async throws {
        let f = try FirewallFixture()
        // priority 1, target ".", alpn=h2 (key 1), ipv4hint (key 4) 192.0.2.9, ipv6hint (key 6).
        let rdata: [UInt8] =
            [0, 1, 0] + [0, 1, 0, 3, 2, 0x68, 0x32] + [0, 4, 0, 4, 192, 0, 2, 9]
            + [0, 6, 0, 16] + IPAddress("2001:db8::9")!.bytes
        try f.prime(
            "www.test", .https,
            answers: [DNSRecord(name: try DNSName("www.test"), type: .https, ttl: 300, rdata: rdata)])
        let answer = try #require(try await f.ask("www.test", .https))
        #expect(answer.answers.first?.rdata == [0, 1, 0, 0, 1, 0, 3, 2, 0x68, 0x32])
    }

    @Test("a second cache hit for published addresses needs no commit")
    func skipUnchanged() async throws {
        let f = try FirewallFixture()
        try f.prime("www.test", answers: [try a("www.test", "192.0.2.1")])
        _ = try await f.ask("www.test")
        _ = try await f.ask("www.test")
        #expect(f.publisher.state.withLock { $0.commits } == 1)
    }
}
