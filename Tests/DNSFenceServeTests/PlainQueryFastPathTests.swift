import DNSFenceCore
import DNSFenceFirewall
import DNSFencePolicy
import DNSFenceResolve
import DNSFenceWire
import Logging
import NIOPosix
import Testing

@testable import DNSFenceServe

/// The byte-level path against the full pipeline: for every query it answers (denials, cache
/// hits), the bytes must be exactly what `process` would have sent; what it declines must be a
/// query the full path treats differently (forwarded, local data, dropped, refused, BADVERS, …).
@Suite("Plain query fast path")
struct PlainQueryFastPathTests {
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
        for name in ["ok.test", "a.wild.test"] {
            let owner = try DNSName(name)
            for type in [DNSType.a, .aaaa] {
                for dnssecOK in [false, true] {
                    for checkingDisabled in [false, true] {
                        // 40 AAAA records (~1.1 KB): over 512 bytes, so clients without EDNS get TC.
                        let answers =
                            type == .a
                            ? [DNSRecord(name: owner, ttl: 300, address: .v4(0xC000_0201))]
                            : (0..<40).map {
                                DNSRecord(name: owner, ttl: 300, address: IPAddress("2001:db8::\($0 + 1)")!)
                            }
                        let stored = CachedAnswer(
                            rcode: .noError, authenticData: type == .a, answers: answers, authorities: [],
                            additionals: [])
                        let key = CacheKey(
                            policy: "p", name: owner, type: type, dnssecOK: dnssecOK, checkingDisabled: checkingDisabled
                        )
                        cache.store(stored, for: key, keepRecords: false) {
                            QueryPipeline.template(
                                for: $0, question: DNSQuestion(name: owner, type: type), dnssecOK: dnssecOK)
                        }
                    }
                }
            }
        }
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

    @Test("every answer it gives is byte for byte the full pipeline's", arguments: DenyResponse.allCases)
    func sameBytes(deny: DenyResponse) throws {
        let pipeline = try Self.pipeline(deny: deny)
        let context = QueryContext(client: .v4(0x7F00_0001), listenerPolicy: "p", transport: .udp)
        var fast = 0
        var declined: Set<String> = []
        for (label, bytes) in try Self.queries() {
            let quick = bytes.withUnsafeBytes { pipeline.fastPath($0, context: context) }
            guard let quick else {
                declined.insert(label)
                continue
            }
            fast += 1
            guard case .respond(let full) = pipeline.process(bytes, context: context) else {
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
            "nowhere.example ANY edns", "nowhere.example AXFR edns", "quiet.test A edns",
            "ok.test AAAA no-edns",  // too big for 512 bytes: the full path truncates
        ] {
            #expect(declined.contains(label), "\(label)")
        }
        // A type the policy does not allow, for an allowed name, is a fast NODATA.
        #expect(!declined.contains("ok.test TXT edns"))
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
            QueryPipeline.template(
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

        // Not in the set yet: the full path commits first.
        #expect(query.withUnsafeBytes { pipeline.fastPath($0, context: context) } == nil)
        guard case .publish(let pending) = pipeline.process(query, context: context) else {
            Issue.record("a hit with an unpublished address was not published first")
            return
        }
        try await publisher.publish(pending.elements)

        // In the set: answered fast, as the full path answers.
        let quick = try #require(query.withUnsafeBytes { pipeline.fastPath($0, context: context) })
        guard case .respond(let full) = pipeline.process(query, context: context) else {
            Issue.record("a hit with published addresses was not answered at once")
            return
        }
        #expect(quick == full)

        // No IPv6 set: AAAA gets the full path's NODATA with its EDE.
        let aaaa = DNSMessage.query(id: 10, DNSQuestion(name: owner, type: .aaaa)).encoded()
        #expect(aaaa.withUnsafeBytes { pipeline.fastPath($0, context: context) } == nil)

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
            QueryPipeline.template(
                for: $0, question: DNSQuestion(name: two, type: .a), dnssecOK: false, binding: binding)
        }
        let twoQuery = DNSMessage.query(id: 11, DNSQuestion(name: two, type: .a)).encoded()
        let elements = addresses.map { SetElement(target: binding.ipv4!, address: $0, timeout: 3600) }
        try await publisher.publish([elements[0]])
        #expect(twoQuery.withUnsafeBytes { pipeline.fastPath($0, context: context) } == nil)
        try await publisher.publish([elements[1]])
        #expect(twoQuery.withUnsafeBytes { pipeline.fastPath($0, context: context) } != nil)
    }

    @Test("a miss goes upstream as the full path would send it, looked up once")
    func missesForwarded() throws {
        let pipeline = try Self.pipeline(deny: .nxdomain)
        var forwarded = 0
        for transport in [Transport.udp, .tcp] {
            let context = QueryContext(client: .v4(0x7F00_0001), listenerPolicy: "p", transport: transport)
            for (label, bytes) in try Self.queries() {
                var forward: PendingForward? = nil
                let outcome = bytes.withUnsafeBytes { raw in
                    pipeline.fastPath(raw, context: context, emit: { _, _ in }, forward: { forward = $0 })
                }
                guard case .forwarded = outcome else {
                    #expect(forward == nil)
                    continue
                }
                let fast = try #require(forward)
                forwarded += 1
                guard case .forward(let full) = pipeline.process(bytes, context: context) else {
                    Issue.record("\(label): forwarded by the byte-level path only")
                    continue
                }
                #expect(fast.query == full.query && fast.bytes == full.bytes && fast.question == full.question)
                #expect(fast.key == full.key && fast.maxUDPSize == full.maxUDPSize && fast.transport == full.transport)
                #expect(
                    fast.record.jsonLine(rcode: 0, now: 0, wallClock: "t")
                        == full.record.jsonLine(rcode: 0, now: 0, wallClock: "t"), "\(label)")
            }
        }
        // b.wild.test A and AAAA (and the mixed-case ones) in every EDNS and header variant.
        #expect(forwarded >= 2 * 2 * 4 * 2)
        // Each miss counted once: by the byte-level path, or by the full path after it declined.
        let before = pipeline.cache.statistics.misses
        let miss = DNSMessage.query(id: 2, DNSQuestion(name: try DNSName("c.wild.test"), type: .a)).encoded()
        let context = QueryContext(client: .v4(0x7F00_0001), listenerPolicy: "p", transport: .udp)
        guard case .forward = miss.withUnsafeBytes({ pipeline.process(bytes: $0, context: context) }) else {
            Issue.record("an uncached allowed name was not forwarded")
            return
        }
        #expect(pipeline.cache.statistics.misses == before + 1)
    }

    @Test("a hit it serves counts once; a miss it declines is counted by the full path, once")
    func cacheCounters() throws {
        let pipeline = try Self.pipeline(deny: .nxdomain)
        let context = QueryContext(client: .v4(0x7F00_0001), listenerPolicy: "p", transport: .udp)
        let hit = DNSMessage.query(id: 1, DNSQuestion(name: try DNSName("ok.test"), type: .a)).encoded()
        let miss = DNSMessage.query(id: 2, DNSQuestion(name: try DNSName("b.wild.test"), type: .a)).encoded()
        let before = pipeline.cache.statistics
        guard case .respond = hit.withUnsafeBytes({ pipeline.process(bytes: $0, context: context) }) else {
            Issue.record("a cached name was not answered")
            return
        }
        guard case .forward = miss.withUnsafeBytes({ pipeline.process(bytes: $0, context: context) }) else {
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

    @Test("with a query log, denials log the full path's line; hits go fast only if answers are not logged")
    func queryLog() throws {
        let context = QueryContext(client: .v4(0x7F00_0001), listenerPolicy: "p", transport: .udp)
        let denied = DNSMessage.query(id: 1, DNSQuestion(name: try DNSName("Nowhere.example"), type: .a)).encoded()
        let filtered = DNSMessage.query(id: 2, DNSQuestion(name: try DNSName("ok.test"), type: .mx)).encoded()
        let hit = DNSMessage.query(id: 3, DNSQuestion(name: try DNSName("ok.test"), type: .a)).encoded()
        for logsAnswers in [false, true] {
            let base = try Self.pipeline(deny: .nxdomain)
            let log = CapturingLog(logsAnswers: logsAnswers)
            let pipeline = QueryPipeline(
                selector: base.selector, cache: base.cache, forwarder: base.forwarder, logger: base.logger,
                queryLog: log)
            for query in [denied, filtered] {
                let quick = query.withUnsafeBytes { pipeline.fastPath($0, context: context) }
                guard case .respond(let full) = pipeline.process(query, context: context) else {
                    Issue.record("not answered")
                    continue
                }
                #expect(quick == full)
                #expect(log.lines.count == 2)
                #expect(log.lines.first == log.lines.last, "the fast path's log line differs")
                #expect(log.lines.first?.contains(#""action":"deny""#) == true)
                log.lines = []
            }
            let quickHit = hit.withUnsafeBytes { pipeline.fastPath($0, context: context) }
            #expect((quickHit == nil) == logsAnswers)
        }
    }
}
