import DNSFenceResolve
import DNSFenceWire
import Synchronization
import Testing

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    let seconds = Mutex<UInt64>(1000)
    func advance(_ by: UInt64) { seconds.withLock { $0 += by } }
    var clock: AnswerCache.Clock { { self.seconds.withLock { $0 } } }
}

func key(_ name: String, policy: String = "p", type: DNSType = .a) throws -> CacheKey {
    CacheKey(policy: policy, name: try DNSName(name), type: type, dnssecOK: false, checkingDisabled: false)
}

func positive(_ name: String, ttls: [UInt32]) throws -> CachedAnswer {
    let owner = try DNSName(name)
    return CachedAnswer(
        rcode: .noError, authenticData: false,
        answers: ttls.enumerated().map { DNSRecord(name: owner, ttl: $1, address: .v4(0xC000_0200 + UInt32($0))) },
        authorities: [], additionals: [])
}

func soa(ttl: UInt32, minimum: UInt32) throws -> DNSRecord {
    let m = try DNSName("ns.test").wire, r = try DNSName("host.test").wire
    let fields: [UInt32] = [1, 3600, 600, 86400, minimum]
    return DNSRecord(
        name: try DNSName("test"), type: .soa, ttl: ttl,
        rdata: m + r
            + fields.flatMap { [UInt8($0 >> 24), UInt8($0 >> 16 & 0xFF), UInt8($0 >> 8 & 0xFF), UInt8($0 & 0xFF)] })
}

@Suite("Answer cache")
struct AnswerCacheTests {
    @Test("TTLs count down; the entry lives as long as its smallest TTL and no record claims longer")
    func countdown() throws {
        let clock = ManualClock()
        let cache = AnswerCache(limits: .init(maxEntries: 10, minTTL: 0, maxTTL: 86400), clock: clock.clock)
        cache.store(try positive("a.test", ttls: [300, 100]), for: try key("a.test"))
        clock.advance(40)
        #expect(try cache.lookup(key("A.TEST"))?.answers.map(\.ttl) == [60, 60])
        clock.advance(59)
        #expect(try cache.lookup(key("a.test"))?.answers.map(\.ttl) == [1, 1])
        clock.advance(1)
        #expect(try cache.lookup(key("a.test")) == nil)
    }

    @Test("serve-stale: an expired positive answer is kept stale-max longer, a miss all the while")
    func stale() throws {
        let clock = ManualClock()
        let cache = AnswerCache(
            limits: .init(maxEntries: 10, minTTL: 0, maxTTL: 86400, staleMax: 100), clock: clock.clock)
        cache.store(try positive("a.test", ttls: [60]), for: try key("a.test"))
        cache.store(
            CachedAnswer(
                rcode: .nxDomain, authenticData: false, answers: [], authorities: [try soa(ttl: 60, minimum: 60)],
                additionals: []), for: try key("gone.test"))
        #expect(try cache.stale(key("a.test")) == nil, "live: a hit, not stale")
        clock.advance(60)
        #expect(try cache.lookup(key("a.test")) == nil, "expired: a miss")
        #expect(try cache.stale(key("a.test"))?.answers.map(\.ttl) == [60], "kept, as stored")
        #expect(try cache.stale(key("gone.test")) == nil, "only positive answers are served stale")
        clock.advance(99)
        #expect(try cache.stale(key("a.test")) != nil)
        clock.advance(1)
        #expect(try cache.lookup(key("a.test")) == nil)
        #expect(try cache.stale(key("a.test")) == nil, "stale-max past expiry: gone")
        #expect(cache.statistics.entries == 1, "dropped on that lookup (gone.test stays until looked up)")
        let off = AnswerCache(limits: .init(maxEntries: 10, minTTL: 0, maxTTL: 86400), clock: clock.clock)
        off.store(try positive("a.test", ttls: [60]), for: try key("a.test"))
        clock.advance(61)
        #expect(try off.lookup(key("a.test")) == nil)
        #expect(try off.stale(key("a.test")) == nil && off.statistics.entries == 0, "off: dropped at once")
    }

    @Test("negative answers are cached for min(SOA TTL, SOA MINIMUM) (RFC 2308)")
    func negative() throws {
        let clock = ManualClock()
        let cache = AnswerCache(limits: .init(maxEntries: 10, minTTL: 0, maxTTL: 86400), clock: clock.clock)
        let nx = CachedAnswer(
            rcode: .nxDomain, authenticData: false, answers: [],
            authorities: [try soa(ttl: 3600, minimum: 30)], additionals: [])
        #expect(cache.lifetime(of: nx) == 30)
        cache.store(nx, for: try key("nope.test"))
        clock.advance(29)
        #expect(try cache.lookup(key("nope.test"))?.rcode == .nxDomain)
        clock.advance(1)
        #expect(try cache.lookup(key("nope.test")) == nil)
    }

    @Test("clamps: max-ttl shortens, SERVFAIL is never cached")
    func clamps() throws {
        let cache = AnswerCache(limits: .init(maxEntries: 10, minTTL: 0, maxTTL: 60), clock: ManualClock().clock)
        cache.store(try positive("a.test", ttls: [3600]), for: try key("a.test"))
        #expect(try cache.lookup(key("a.test"))?.answers.first?.ttl == 60)
        let fail = CachedAnswer(rcode: .servFail, authenticData: false, answers: [], authorities: [], additionals: [])
        #expect(cache.lifetime(of: fail) == nil)
    }

    @Test("policies never share entries")
    func isolation() throws {
        let cache = AnswerCache(limits: .init(maxEntries: 10, minTTL: 0, maxTTL: 600), clock: ManualClock().clock)
        cache.store(try positive("a.test", ttls: [60]), for: try key("a.test", policy: "one"))
        #expect(try cache.lookup(key("a.test", policy: "two")) == nil)
        #expect(try cache.lookup(key("a.test", policy: "one")) != nil)
    }

    @Test("the least recently used entry is evicted when full")
    func lru() throws {
        let cache = AnswerCache(limits: .init(maxEntries: 3, minTTL: 0, maxTTL: 600), clock: ManualClock().clock)
        for name in ["a", "b", "c"] {
            cache.store(try positive("\(name).test", ttls: [60]), for: try key("\(name).test"))
        }
        _ = try cache.lookup(key("a.test"))  // a is now the most recent; b the least
        cache.store(try positive("d.test", ttls: [60]), for: try key("d.test"))
        #expect(try cache.lookup(key("b.test")) == nil)
        #expect(try cache.lookup(key("a.test")) != nil)
        #expect(try cache.lookup(key("c.test")) != nil)
        #expect(try cache.lookup(key("d.test")) != nil)
        #expect(cache.statistics.entries == 3)
        #expect(cache.statistics.evictions == 1)
    }
}
