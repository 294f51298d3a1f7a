// DNSFenceFuzzing: what one fuzz input must not break, as a library: the libFuzzer target
// (DNSFenceFuzz) and the seed-corpus test run the same checks.

import DNSFenceCore
import DNSFenceFirewall
import DNSFencePolicy
import DNSFenceRelease
public import DNSFenceResolve
import DNSFenceServe
import DNSFenceWire
import Logging
import NIOPosix

/// Runs one input through everything a datagram from the network reaches, and reports the
/// first broken promise. A crash, a sanitizer report or a returned failure is a finding.
///
/// - As a query: one decision, rendered twice (the byte renderer where it answers, the message
///   renderer always): the bytes must be identical (the architecture's differential oracle),
///   for every deny response, over UDP and TCP, for a client under its rate limit and one over.
/// - As an upstream reply: ldns must decode whatever the byte-level reader (`PlainReply`)
///   accepts, with the same answer records; a decoded message must encode and decode again.
public final class FuzzOracle: Sendable {
    private let pipelines: [(bytes: QueryPipeline, messages: QueryPipeline)]

    /// The policy every input is decided against: exact, wildcard, local data, denials of each
    /// kind, and cache hits for a few names (A and AAAA, every DO/CD combination).
    static let zone = """
        $TTL 60
        @ SOA a. b. 1 2 3 4 5
        ok.test CNAME rpz-passthru.
        *.wild.test CNAME rpz-passthru.
        proxy.test A 10.0.0.2
        proxy.test AAAA fd00::2
        alias.test CNAME proxy.test.
        gone.test CNAME .
        empty.test CNAME *.
        quiet.test CNAME rpz-drop.
        """

    public init() throws {
        let logger = Logger(label: "fuzz")
        var pipelines: [(QueryPipeline, QueryPipeline)] = []
        for deny in DenyResponse.allCases {
            let policy = try PolicyCompiler().compile(
                name: "p", sources: [PolicySource(file: "fuzz.rpz", text: Self.zone)], allowedTypes: [.a, .aaaa, .txt],
                denyResponse: deny
            ).policy
            let cache = AnswerCache(limits: .init(maxEntries: 100, minTTL: 0, maxTTL: 600), clock: { 1000 })
            try Self.storeHits(in: cache)
            // Clients of 10.0.0.0/8 are under a limit they never reach; 192.0.2.1 is over its own.
            let limiter = RateLimiter(
                RateLimits(
                    queries: 1, burst: 1, ipv4Prefix: 24, ipv6Prefix: 56, slip: 1, exempt: [IPPrefix("10.0.0.0/8")!]),
                clock: { 1_000_000_000_000 })  // stopped: the two renderings of an input see the same verdict
            _ = limiter.check(Self.limited.client)
            let snapshot = Snapshot(
                selector: ClientPolicySelector([.init(policy: policy, clients: [])]), cache: cache,
                forwarder: UpstreamForwarder(
                    settings: .init(upstreams: []), group: MultiThreadedEventLoopGroup.singleton, logger: logger),
                // Stopped too: on the real clock a token could come back between the two
                // renderings, and one forward a name the other refused (*.wild.test has the
                // default budget; 10.0.0.1 spends it within the first inputs, then is refused).
                ledger: TunnelLedger(clock: { 1_000_000_000_000 }),
                rateLimiter: limiter)
            pipelines.append(
                (
                    QueryPipeline(snapshot: snapshot, logger: logger),
                    QueryPipeline(snapshot: snapshot, logger: logger, renderBytes: false)
                ))
        }
        self.pipelines = pipelines
    }

    /// Fills `cache` (policy `p`) with answers for `ok.test` and `a.wild.test`: A (one record,
    /// with AD) and AAAA (40 records, ~1.1 KB: over 512 bytes, so clients without EDNS get
    /// TC), for every DO/CD combination, in wire form only. The byte-renderer tests use it too.
    public static func storeHits(in cache: AnswerCache) throws {
        for name in ["ok.test", "a.wild.test"] {
            let owner = try DNSName(name)
            for type in [DNSType.a, .aaaa] {
                for dnssecOK in [false, true] {
                    for checkingDisabled in [false, true] {
                        let answers =
                            type == .a
                            ? [DNSRecord(name: owner, ttl: 300, address: .v4(0xC000_0201))]
                            : (0..<40).map {
                                DNSRecord(name: owner, ttl: 300, address: IPAddress("2001:db8::\($0 + 1)")!)
                            }
                        let key = CacheKey(
                            policy: "p", name: owner, type: type, dnssecOK: dnssecOK, checkingDisabled: checkingDisabled
                        )
                        cache.store(
                            CachedAnswer(
                                rcode: .noError, authenticData: type == .a, answers: answers, authorities: [],
                                additionals: []), for: key, keepRecords: false
                        ) {
                            WireAnswerBuilder.wire(
                                for: $0, question: DNSQuestion(name: owner, type: type), dnssecOK: dnssecOK)
                        }
                    }
                }
            }
        }
    }

    static let contexts = [
        QueryContext(client: .v4(0x0A00_0001), listenerPolicy: "p", transport: .udp),
        QueryContext(client: .v4(0x0A00_0001), listenerPolicy: "p", transport: .tcp),
        limited,
    ]
    static let limited = QueryContext(client: .v4(0xC000_0201), listenerPolicy: "p", transport: .udp)

    /// The first promise `input` breaks, or nil.
    public func check(_ input: [UInt8]) -> String? {
        for (fast, full) in pipelines {
            for context in Self.contexts {
                let a = fast.process(input, context: context)
                let b = full.process(input, context: context)
                switch (a, b) {
                case (.respond(let x), .respond(let y)):
                    if x != y { return "renderers disagree (\(context.transport), \(context.client)): \(x) vs \(y)" }
                    if x.count < 12 { return "an answer shorter than a header: \(x)" }
                case (.drop, .drop), (.forward, .forward), (.publish, .publish):
                    break
                default:
                    return "the pipelines took different paths (\(context.transport), \(context.client))"
                }
            }
        }
        return reply(input)
    }

    /// `input` as an upstream's reply.
    private func reply(_ input: [UInt8]) -> String? {
        if let plain = PlainReply(input) {
            guard let decoded = try? DNSMessage(decoding: input) else {
                return "the byte-level reader accepted a reply ldns rejects"
            }
            if decoded.answers.count != plain.answers.count {
                return "answer counts differ: plain \(plain.answers.count), ldns \(decoded.answers.count)"
            }
        }
        if let message = try? DNSMessage(decoding: input) {
            let encoded = message.encoded()
            guard let again = try? DNSMessage(decoding: encoded) else { return "an encoded message does not decode" }
            if again.encoded() != encoded { return "encoding is not stable across a round trip" }
        }
        return nil
    }
}
