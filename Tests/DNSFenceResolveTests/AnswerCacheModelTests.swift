import DNSFenceCore
import DNSFenceResolve
import DNSFenceWire
import Testing

/// The cache against a plain reference model (an array, newest first) over thousands of seeded
/// random operations: its hash index, LRU list and expiry must agree with the model's on every
/// lookup, through growth, eviction, replacement and expiry.
@Suite("Answer cache against a reference model")
struct AnswerCacheModelTests {
    typealias Generator = SplitMix64

    struct Entry {
        var key: CacheKey
        var expires: UInt64
        var marker: UInt32
    }

    @Test("index, LRU order and expiry agree with the model", arguments: [1, 7, 64, 500])
    func model(capacity: Int) throws {
        var random = Generator(seed: UInt64(capacity) * 7919)
        let clock = ManualClock()
        let cache = AnswerCache(limits: .init(maxEntries: capacity, minTTL: 0, maxTTL: 600), clock: clock.clock)
        var model: [Entry] = []  // newest first
        let keys = try (0..<(capacity * 3 + 5)).map { try key("k\($0).test", policy: $0 % 3 == 0 ? "a" : "b") }
        for step in 0..<20_000 {
            let now = clock.seconds.withLock { $0 }
            let k = keys[Int.random(in: 0..<keys.count, using: &random)]
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<4:
                let ttl = UInt32.random(in: 1...20, using: &random)
                let marker = UInt32(step)
                cache.store(
                    CachedAnswer(
                        rcode: .noError, authenticData: false,
                        answers: [DNSRecord(name: k.name, ttl: ttl, address: .v4(marker))], authorities: [],
                        additionals: []), for: k)
                model.removeAll { $0.key == k }
                if model.count >= capacity { model.removeLast() }
                model.insert(Entry(key: k, expires: now + UInt64(ttl), marker: marker), at: 0)
            case 4..<9:
                let got = cache.lookup(k)
                if let at = model.firstIndex(where: { $0.key == k }) {
                    let entry = model.remove(at: at)
                    if entry.expires > now {
                        model.insert(entry, at: 0)
                        #expect(got?.answers.first?.address == .v4(entry.marker), "step \(step)")
                    } else {
                        #expect(got == nil, "step \(step): expired")
                    }
                } else {
                    #expect(got == nil, "step \(step): absent")
                }
            default:
                clock.advance(1)
            }
            #expect(cache.statistics.entries == model.count, "step \(step)")
            if cache.statistics.entries != model.count { return }
        }
    }
}
