import DNSFenceCore
import DNSFenceFirewall
import DNSFenceFuzzing
import DNSFencePolicy
import DNSFenceRelease
import DNSFenceResolve
import DNSFenceWire
import Logging
import NIOPosix
import Testing

@testable import DNSFenceServe

extension QueryPipeline {
    /// The byte renderer's answer to `bytes` (nil: it declines the decision, or the answer waits
    /// for an upstream or a commit).
    func byteAnswer(_ bytes: [UInt8], context: QueryContext) -> [UInt8]? {
        bytes.withUnsafeBytes { raw in
            guard let view = try? QueryView(raw) else { return nil }
            let decision = snapshots.load().decide(view, context: context)
            if decision.waits { return nil }
            var out: [UInt8]? = nil
            _ = ByteRenderer.render(decision, view: view) { out = Self.array($0, $1) }
            return out
        }
    }

    /// The same pipeline (same snapshot: policies, cache, firewall) with the byte renderer off,
    /// so every decision is rendered by the message renderer.
    var messagesOnly: QueryPipeline {
        QueryPipeline(snapshot: snapshots.load(), logger: logger, renderBytes: false)
    }

    var cache: AnswerCache { snapshots.load().cache }
}

/// The byte renderer against the message renderer on the same decisions: for every query the
/// byte renderer answers (denials, cache hits), the bytes must be exactly what the message
/// renderer sends; what it declines must be a decision only the message renderer can render
/// (forwarded, local data, dropped, refused, BADVERS, …). The generated cases are in
/// `DecisionDifferentialTests`.
@Suite("Byte renderer")
struct ByteRendererTests {
    static let zone = """
        $TTL 60
        @ SOA a. b. 1 2 3 4 5
        ok.test CNAME rpz-passthru.
        *.wild.test CNAME rpz-passthru.
        proxy.test A 10.0.0.2
        gone.test CNAME .
        empty.test CNAME *.
        quiet.test CNAME rpz-drop.
        """

    /// A pipeline whose cache holds answers for `ok.test` and `a.wild.test` (A and AAAA, every
    /// DO/CD combination; the AAAA answers are big, the A ones carry AD), stored 7 s ago.
    static func pipeline(deny: DenyResponse) throws -> QueryPipeline {
        let compiled = try PolicyCompiler().compile(
            name: "p", sources: [PolicySource(file: "t.rpz", text: zone)], allowedTypes: [.a, .aaaa],
            denyResponse: deny)
        let logger = Logger(label: "test")
        let clock = Clock()
        let cache = AnswerCache(limits: .init(maxEntries: 100, minTTL: 0, maxTTL: 600), clock: { clock.now })
        try FuzzOracle.storeHits(in: cache)
        clock.now = 1_007
        return QueryPipeline(
            selector: ClientPolicySelector([.init(policy: compiled.policy, clients: [])]), cache: cache,
            forwarder: UpstreamForwarder(
                settings: .init(upstreams: []), group: MultiThreadedEventLoopGroup.singleton, logger: logger),
            logger: logger)
    }

    final class Clock: @unchecked Sendable {
        // @unchecked Sendable: set before the pipeline is used, read after.
        var now: UInt64 = 1_000
    }

    /// Query shapes: names (allowed, wildcard, denied by rule, unknown, mixed case), types,
    /// EDNS variants and header bits.
    static func queries() throws -> [(label: String, bytes: [UInt8])] {
        let names = [
            "ok.test", "OK.Test", "a.wild.test", "b.wild.test", "wild.test", "gone.test", "Empty.test", "quiet.test",
            "nowhere.example", "x.y.z.NOWHERE.example", "proxy.test",
        ]
        let types: [DNSType] = [.a, .aaaa, .txt, .mx, .any, .axfr, DNSType(rawValue: 65280)]
        let ednsVariants: [(String, EDNS?)] = [
            ("no-edns", nil), ("edns", EDNS()), ("do", EDNS(dnssecOK: true)),
            ("cookie", EDNS(options: [EDNSOption(code: 10, data: [1, 2, 3, 4, 5, 6, 7, 8])])),
        ]
        var out: [(String, [UInt8])] = []
        for name in names {
            for type in types {
                for (ednsLabel, edns) in ednsVariants {
                    let base = DNSMessage.query(
                        id: 0xBEEF, DNSQuestion(name: try DNSName(name), type: type), edns: edns
                    ).encoded()
                    // Header variants: as built (RD), RD off with CD and AD on.
                    var flipped = base
                    flipped[2] &= ~0x01
                    flipped[3] |= 0x30
                    out.append(("\(name) \(type) \(ednsLabel)", base))
                    out.append(("\(name) \(type) \(ednsLabel) cd+ad", flipped))
                }
            }
        }
        // Unusual shapes the fast path must leave alone.
        var chaos = DNSMessage.query(id: 1, DNSQuestion(name: try DNSName("nowhere.example"), type: .a)).encoded()
        chaos[chaos.count - 11 - 1] = 3  // class CH (the OPT record is the last 11 bytes)
        out.append(("class CH", chaos))
        var version1 = DNSMessage.query(id: 2, DNSQuestion(name: try DNSName("nowhere.example"), type: .a)).encoded()
        version1[version1.count - 11 + 6] = 1  // EDNS version 1
        out.append(("EDNS version 1", version1))
        var notify = DNSMessage.query(id: 3, DNSQuestion(name: try DNSName("nowhere.example"), type: .a)).encoded()
        notify[2] |= 0x20  // opcode NOTIFY
        out.append(("opcode NOTIFY", notify))
        return out
    }

    @Test("every answer it gives is byte for byte the message renderer's", arguments: DenyResponse.allCases)
    func sameBytes(deny: DenyResponse) throws {
        let pipeline = try Self.pipeline(deny: deny)
        let messages = pipeline.messagesOnly
        let context = QueryContext(client: .v4(0x7F00_0001), listenerPolicy: "p", transport: .udp)
        var fast = 0
        var declined: Set<String> = []
        for (label, bytes) in try Self.queries() {
            let quick = pipeline.byteAnswer(bytes, context: context)
            guard let quick else {
                declined.insert(label)
                continue
            }
            fast += 1
            guard case .respond(let full) = messages.process(bytes, context: context) else {
                Issue.record("\(label): the fast path answered what the full path does not")
                continue
            }
            #expect(quick == full, "\(label)")
        }
        // Not vacuous: denials and hits go fast; misses, local data and unusual shapes do not.
        #expect(fast > (deny == .drop ? 100 : 250))
        for label in ["ok.test A edns", "a.wild.test AAAA do", "OK.Test A cookie cd+ad", "ok.test AAAA edns"] {
            #expect(!declined.contains(label), "\(label) is a cache hit")
        }
        for label in [
            "b.wild.test A edns",  // allowed, not cached: forwarded
            "proxy.test A no-edns", "class CH", "EDNS version 1", "opcode NOTIFY",
            "nowhere.example AXFR edns", "quiet.test A edns",
            "ok.test AAAA no-edns",  // too big for 512 bytes: the full path truncates
        ] {
            #expect(declined.contains(label), "\(label)")
        }
        // A type the policy does not allow, for an allowed name, is a fast NODATA; ANY for a
        // denied name is its denial.
        #expect(!declined.contains("ok.test TXT edns"))
        if deny != .drop { #expect(!declined.contains("nowhere.example ANY edns")) }
        if deny == .drop { #expect(declined.contains("nowhere.example A edns")) }
    }

    @Test("under a firewall a hit goes fast once its addresses are in the sets, with the full path's bytes")
    func firewallHits() async throws {
        let compiled = try PolicyCompiler().compile(
            name: "p", sources: [PolicySource(file: "t.rpz", text: Self.zone)], allowedTypes: [.a, .aaaa],
            denyResponse: .nxdomain)
        let publisher = InMemorySetPublisher(clock: { 1_000 })
        let binding = FirewallBinding(
            publisher: publisher, ipv4: SetTarget(netns: nil, family: "inet", table: "t", set: "a4", isIPv6: false),
            ipv6: nil, minTTL: 60, maxTTL: 3600, grace: 30, admitPrivate: true)
        let cache = AnswerCache(limits: .init(maxEntries: 10, minTTL: 0, maxTTL: 600), clock: { 1_000 })
        let owner = try DNSName("ok.test")
        let key = CacheKey(policy: "p", name: owner, type: .a, dnssecOK: false, checkingDisabled: false)
        let stored = CachedAnswer(
            rcode: .noError, authenticData: false,
            answers: [DNSRecord(name: owner, ttl: 300, address: IPAddress("192.0.2.1")!)], authorities: [],
            additionals: [])
        cache.store(stored, for: key, keepRecords: false) {
            WireAnswerBuilder.wire(
                for: $0, question: DNSQuestion(name: owner, type: .a), dnssecOK: false, binding: binding)
        }
        let logger = Logger(label: "test")
        let pipeline = QueryPipeline(
            selector: ClientPolicySelector([.init(policy: compiled.policy, clients: [])]), cache: cache,
            forwarder: UpstreamForwarder(
                settings: .init(upstreams: []), group: MultiThreadedEventLoopGroup.singleton, logger: logger),
            logger: logger, firewalls: ["p": binding])
        let context = QueryContext(client: .v4(0x7F00_0001), listenerPolicy: "p", transport: .udp)
        let query = DNSMessage.query(id: 9, DNSQuestion(name: try DNSName("OK.test"), type: .a)).encoded()

        // Not in the set yet: the answer waits for the commit.
        #expect(pipeline.byteAnswer(query, context: context) == nil)
        guard case .publish(let pending) = pipeline.process(query, context: context) else {
            Issue.record("a hit with an unpublished address was not published first")
            return
        }
        try await publisher.publish(pending.elements)

        // In the set: answered at once, as the message renderer answers.
        let quick = try #require(pipeline.byteAnswer(query, context: context))
        guard case .respond(let full) = pipeline.messagesOnly.process(query, context: context) else {
            Issue.record("a hit with published addresses was not answered at once")
            return
        }
        #expect(quick == full)

        // No IPv6 set: AAAA gets NODATA with EDE 17, the same from both renderers.
        let aaaa = DNSMessage.query(id: 10, DNSQuestion(name: owner, type: .aaaa)).encoded()
        let nodata = try #require(pipeline.byteAnswer(aaaa, context: context))
        guard case .respond(let nodataFull) = pipeline.messagesOnly.process(aaaa, context: context) else {
            Issue.record("AAAA without an IPv6 set was not answered at once")
            return
        }
        #expect(nodata == nodataFull)
        #expect(try DNSMessage(decoding: nodata).edns?.options.first?.code == EDNSOption.extendedErrorCode)

        // Two addresses, only the first in the set: not fast until the second is there too.
        let two = try DNSName("two.wild.test")
        let twoKey = CacheKey(policy: "p", name: two, type: .a, dnssecOK: false, checkingDisabled: false)
        let addresses = [IPAddress("192.0.2.7")!, IPAddress("192.0.2.8")!]
        cache.store(
            CachedAnswer(
                rcode: .noError, authenticData: false,
                answers: addresses.map { DNSRecord(name: two, ttl: 300, address: $0) }, authorities: [],
                additionals: []), for: twoKey, keepRecords: false
        ) {
            WireAnswerBuilder.wire(
                for: $0, question: DNSQuestion(name: two, type: .a), dnssecOK: false, binding: binding)
        }
        let twoQuery = DNSMessage.query(id: 11, DNSQuestion(name: two, type: .a)).encoded()
        let elements = addresses.map { SetElement(target: binding.ipv4!, address: $0, timeout: 3600) }
        try await publisher.publish([elements[0]])
        #expect(pipeline.byteAnswer(twoQuery, context: context) == nil)
        try await publisher.publish([elements[1]])
        #expect(pipeline.byteAnswer(twoQuery, context: context) != nil)
    }

    @Test("a miss goes upstream with the key, bytes and record the decision made, whichever renderer is on")
    func missesForwarded() throws {
        let pipeline = try Self.pipeline(deny: .nxdomain)
        let messages = pipeline.messagesOnly
        var forwarded = 0
        for transport in [Transport.udp, .tcp] {
            let context = QueryContext(client: .v4(0x7F00_0001), listenerPolicy: "p", transport: transport)
            for (label, bytes) in try Self.queries() {
                guard case .forward(let fast) = pipeline.process(bytes, context: context) else { continue }
                forwarded += 1
                guard case .forward(let full) = messages.process(bytes, context: context) else {
                    Issue.record("\(label): forwarded with the byte renderer only")
                    continue
                }
                #expect(fast.bytes == bytes && full.bytes == bytes)
                #expect(fast.key == full.key && fast.transport == full.transport)
                #expect(fast.key.name == fast.record.question?.name.lowercased())
                #expect(
                    fast.record.jsonLine(rcode: 0, now: 0, wallClock: "t")
                        == full.record.jsonLine(rcode: 0, now: 0, wallClock: "t"), "\(label)")
            }
        }
        // b.wild.test A and AAAA (and the mixed-case ones) in every EDNS and header variant.
        #expect(forwarded >= 2 * 2 * 4 * 2)
        // Each miss counted once.
        let before = pipeline.cache.statistics.misses
        let miss = DNSMessage.query(id: 2, DNSQuestion(name: try DNSName("c.wild.test"), type: .a)).encoded()
        let context = QueryContext(client: .v4(0x7F00_0001), listenerPolicy: "p", transport: .udp)
        guard case .forward = pipeline.process(miss, context: context) else {
            Issue.record("an uncached allowed name was not forwarded")
            return
        }
        #expect(pipeline.cache.statistics.misses == before + 1)
    }

    @Test("a hit counts once, a miss counts once")
    func cacheCounters() throws {
        let pipeline = try Self.pipeline(deny: .nxdomain)
        let context = QueryContext(client: .v4(0x7F00_0001), listenerPolicy: "p", transport: .udp)
        let hit = DNSMessage.query(id: 1, DNSQuestion(name: try DNSName("ok.test"), type: .a)).encoded()
        let miss = DNSMessage.query(id: 2, DNSQuestion(name: try DNSName("b.wild.test"), type: .a)).encoded()
        let before = pipeline.cache.statistics
        guard case .respond = pipeline.process(hit, context: context) else {
            Issue.record("a cached name was not answered")
            return
        }
        guard case .forward = pipeline.process(miss, context: context) else {
            Issue.record("an uncached allowed name was not forwarded")
            return
        }
        let after = pipeline.cache.statistics
        #expect(after.hits == before.hits + 1)
        #expect(after.misses == before.misses + 1)
    }

    /// Keeps each logged record as its JSON line (latency 0: `now` before `started`).
    final class CapturingLog: QueryLogSink, @unchecked Sendable {
        // @unchecked Sendable: used from one test thread.
        let logsAnswers: Bool
        var lines: [String] = []
        init(logsAnswers: Bool) { self.logsAnswers = logsAnswers }
        func record(_ record: QueryRecord, rcode: UInt8?) {
            lines.append(record.jsonLine(rcode: rcode, now: 0, wallClock: "t"))
        }
    }

    @Test("with a query log, both renderers log the same line; hits are logged only if answers are")
    func queryLog() throws {
        let context = QueryContext(client: .v4(0x7F00_0001), listenerPolicy: "p", transport: .udp)
        let denied = DNSMessage.query(id: 1, DNSQuestion(name: try DNSName("Nowhere.example"), type: .a)).encoded()
        let filtered = DNSMessage.query(id: 2, DNSQuestion(name: try DNSName("ok.test"), type: .mx)).encoded()
        let hit = DNSMessage.query(id: 3, DNSQuestion(name: try DNSName("ok.test"), type: .a)).encoded()
        for logsAnswers in [false, true] {
            let base = try Self.pipeline(deny: .nxdomain)
            let log = CapturingLog(logsAnswers: logsAnswers)
            let snapshot = Snapshot(
                selector: base.snapshots.load().selector, cache: base.cache,
                forwarder: base.snapshots.load().forwarder, queryLog: log)
            let pipeline = QueryPipeline(snapshot: snapshot, logger: base.logger)
            for query in [denied, filtered, hit] {
                guard case .respond(let quick) = pipeline.process(query, context: context),
                    case .respond(let full) = pipeline.messagesOnly.process(query, context: context)
                else {
                    Issue.record("not answered")
                    continue
                }
                #expect(quick == full)
                let logged = query == hit && !logsAnswers ? 0 : 2
                #expect(log.lines.count == logged)
                #expect(log.lines.first == log.lines.last, "the renderers' log lines differ")
                if query != hit { #expect(log.lines.first?.contains(#""action":"deny""#) == true) }
                log.lines = []
            }
        }
    }
}
