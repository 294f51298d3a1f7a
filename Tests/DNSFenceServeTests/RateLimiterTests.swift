import DNSFenceCore
import DNSFencePolicy
import DNSFenceResolve
import DNSFenceWire
import Logging
import NIOPosix
import Testing

@testable import DNSFenceServe

/// Per-client rate limits, on a clock the test moves.
@Suite("rate limits")
struct RateLimiterTests {
    static func limits(queries: UInt32 = 100, burst: UInt32 = 10, slip: UInt32 = 0, exempt: [IPPrefix] = [])
        -> RateLimits
    {
        RateLimits(queries: queries, burst: burst, ipv4Prefix: 24, ipv6Prefix: 56, slip: slip, exempt: exempt)
    }

    /// How many of `count` queries from `client` at this instant are admitted.
    static func admitted(_ limiter: RateLimiter, _ client: String, count: Int) -> Int {
        (0..<count).filter { _ in limiter.check(IPAddress(client)!) == .admit }.count
    }

    @Test("a burst, then the rate; each address on its own")
    func perAddress() {
        let clock = NanoClock()
        let limiter = RateLimiter(Self.limits(), clock: clock.read)
        #expect(Self.admitted(limiter, "10.0.0.1", count: 50) == 10)
        #expect(Self.admitted(limiter, "10.0.0.2", count: 50) == 10, "a neighbour has its own budget")
        clock.advance(seconds: 0.1)  // 10 more at 100/s
        #expect(Self.admitted(limiter, "10.0.0.1", count: 50) == 10)
        clock.advance(seconds: 10)  // never more than the burst
        #expect(Self.admitted(limiter, "10.0.0.1", count: 50) == 10)
        // 100 queries a second, evenly: all of them.
        var steady = 0
        for _ in 0..<300 {
            clock.advance(seconds: 0.01)
            steady += Self.admitted(limiter, "10.0.0.3", count: 1)
        }
        #expect(steady == 300)
    }

    @Test("a /24 together gets sixteen times one address; another /24 is not touched")
    func perPrefix() {
        let limiter = RateLimiter(Self.limits(), clock: NanoClock().read)
        var total = 0
        for host in 1...40 { total += Self.admitted(limiter, "10.0.1.\(host)", count: 20) }
        #expect(total >= 160 && total <= 170, "\(total)")
        #expect(Self.admitted(limiter, "10.0.2.1", count: 20) == 10)
        // IPv6: addresses of one /64 are one client.
        #expect(
            Self.admitted(limiter, "2001:db8::1", count: 5) + Self.admitted(limiter, "2001:db8::2", count: 20) == 10)
    }

    @Test("exempt prefixes are never limited; slip decides between TC and silence")
    func exemptAndSlip() {
        let exempt = RateLimiter(Self.limits(exempt: [IPPrefix("127.0.0.0/8")!]), clock: NanoClock().read)
        #expect(Self.admitted(exempt, "127.0.0.1", count: 1000) == 1000)
        let drops = RateLimiter(Self.limits(slip: 0), clock: NanoClock().read)
        _ = Self.admitted(drops, "10.0.0.1", count: 10)
        #expect((0..<100).allSatisfy { _ in drops.check(IPAddress("10.0.0.1")!) == .drop })
        let slips = RateLimiter(Self.limits(slip: 1), clock: NanoClock().read)
        _ = Self.admitted(slips, "10.0.0.1", count: 10)
        #expect((0..<100).allSatisfy { _ in slips.check(IPAddress("10.0.0.1")!) == .slip })
    }

    @Test("with a kernel filter, a refusal is reported once per time the key holds; admitting re-arms it")
    func reportsOnce() {
        let table = RateTable(now: 0)
        // 100 a second (10,000 µs apart), no burst.
        func take(_ now: UInt64, report: Bool = true) -> UInt64 {
            table.take(7, kind: 0, now: now, interval: 10_000, tolerance: 0, report: report)
        }
        #expect(take(1_000) == 0)
        #expect(take(1_000) == 10_000, "refused: the wait until the next conforming query")
        #expect(take(2_000) == RateTable.reported, "the kernel drops it already")
        #expect(take(2_000, report: false) == 9_000, "without a filter: the wait every time")
        #expect(take(11_000) == 0, "on time: admitted")
        #expect(take(11_000) == 10_000, "and the next refusal is reported again")
        // Another key of the same value is another slot's business.
        #expect(table.take(7, kind: 1, now: 11_000, interval: 10_000, tolerance: 0, report: true) == 0)
    }

    @Test("a reload keeps the table: a limited client stays limited")
    func reload() {
        let clock = NanoClock()
        let first = RateLimiter(Self.limits(), clock: clock.read)
        _ = Self.admitted(first, "10.0.0.1", count: 10)
        let second = RateLimiter(Self.limits(), previous: first, clock: clock.read)
        #expect(Self.admitted(second, "10.0.0.1", count: 10) == 0)
    }

    @Test("TC answers: the byte renderer writes what the message renderer does; TCP is never limited")
    func slipRendering() throws {
        let compiled = try PolicyCompiler().compile(
            name: "p", sources: [PolicySource(file: "p.allow", text: "ok.test\n")])
        let logger = Logger(label: "test")
        let limiter = RateLimiter(Self.limits(queries: 1, burst: 1, slip: 1), clock: { 7_000_000_000 })
        let pipeline = QueryPipeline(
            snapshot: Snapshot(
                selector: ClientPolicySelector([.init(policy: compiled.policy, clients: [])]),
                cache: AnswerCache(limits: .init(maxEntries: 10, minTTL: 0, maxTTL: 60), clock: { 0 }),
                forwarder: UpstreamForwarder(
                    settings: .init(upstreams: []), group: MultiThreadedEventLoopGroup.singleton, logger: logger),
                rateLimiter: limiter),
            logger: logger)
        let udp = QueryContext(client: IPAddress("10.9.9.9")!, listenerPolicy: "p", transport: .udp)
        #expect(limiter.check(udp.client) == .admit)
        var compared = 0
        for (label, bytes) in try ByteRendererTests.queries() {
            guard let quick = pipeline.byteAnswer(bytes, context: udp) else { continue }
            guard case .respond(let full) = pipeline.messagesOnly.process(bytes, context: udp) else {
                Issue.record("\(label): no full answer")
                continue
            }
            #expect(quick == full, "\(label)")
            #expect(quick[2] & 0x02 != 0 && quick[3] & 0x0F == 0, "TC, NOERROR: \(label)")
            #expect(quick[6] == 0 && quick[7] == 0, "no answers: \(label)")
            compared += 1
        }
        #expect(compared > 300)
        let query = DNSMessage.query(id: 9, DNSQuestion(name: try DNSName("ok.test"), type: .a)).encoded()
        let tcp = QueryContext(client: udp.client, listenerPolicy: "p", transport: .tcp)
        if case .respond(let answer) = pipeline.process(query, context: tcp) {
            #expect(answer[2] & 0x02 == 0, "TCP is not limited")
        }
    }
}
