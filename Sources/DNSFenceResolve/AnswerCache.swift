// DNSFenceResolve: forwarding to upstream resolvers and caching their answers. Knows nothing
// of policy or firewalls; callers key the cache by policy so sandboxes never share answers.

import CoreMetrics
import DNSFenceCore
import DNSFenceWire
import Synchronization

/// A bounded answer cache with LRU eviction, positive and negative (RFC 2308) entries, and an
/// injected clock so TTL arithmetic is testable.
public final class AnswerCache: Sendable {
    /// Seconds on a monotonic clock.
    public typealias Clock = @Sendable () -> UInt64

    public struct Limits: Sendable {
        public var maxEntries: Int
        public var minTTL: UInt32
        public var maxTTL: UInt32
        /// Negative answers without an SOA are kept this long (RFC 2308 section 5 suggests not
        /// caching them at all; a few seconds damps repeated misses).
        public var negativeWithoutSOA: UInt32
        /// A question every upstream failed on is answered SERVFAIL from the cache this long
        /// (RFC 9520: at least 1 s), so client retries do not all go upstream again. 0: never.
        public var failure: UInt32
        /// Serve-stale (RFC 8767): how long past its expiry an answer is kept, to answer with
        /// when every upstream fails (``stale(_:)``). 0: off, expired answers are dropped.
        public var staleMax: UInt32 = 0

        public init(
            maxEntries: Int, minTTL: UInt32, maxTTL: UInt32, negativeWithoutSOA: UInt32 = 5, failure: UInt32 = 5,
            staleMax: UInt32 = 0
        ) {
            self.staleMax = staleMax
            self.maxEntries = maxEntries
            self.minTTL = minTTL
            self.maxTTL = maxTTL
            self.negativeWithoutSOA = negativeWithoutSOA
            self.failure = failure
        }
    }

    /// One cached answer, a node of the LRU list (indices into `State.nodes`; -1 is none).
    struct Node {
        var key: CacheKey
        var entry: CacheEntry
        var hash: Int
        var stored: UInt64
        var expires: UInt64
        var previous: Int32
        var next: Int32
    }

    /// An open-addressing index (linear probing, 4-byte slots holding node indices, at most
    /// half full) over an array-backed doubly linked list, newest first: one probe sequence per
    /// query, and about 10 bytes of index per entry where a `Dictionary` of keys costs ~100.
    struct State {
        var slots: [Int32] = Array(repeating: -1, count: 16)
        var nodes: [Node] = []
        var free: [Int] = []
        var newest = -1
        var oldest = -1
        var count = 0
        var hits = 0
        var misses = 0
        var evictions = 0

        init(reserving capacity: Int) {
            // Untouched capacity is not resident: reserving avoids the copies (and the double
            // footprint while copying) of growing a large node array.
            nodes.reserveCapacity(min(capacity, 1 << 20))
        }

        var mask: Int { slots.count - 1 }

        func find(_ key: CacheKey, hash: Int) -> Int? {
            var slot = hash & mask
            while slots[slot] >= 0 {
                let i = Int(slots[slot])
                if nodes[i].hash == hash && nodes[i].key == key { return i }
                slot = (slot + 1) & mask
            }
            return nil
        }

        mutating func place(_ i: Int) {
            var slot = nodes[i].hash & mask
            while slots[slot] >= 0 { slot = (slot + 1) & mask }
            slots[slot] = Int32(i)
        }

        /// Removes node `i` from the index, shifting later members of its probe run back so
        /// no lookup ever stops early (no tombstones).
        mutating func unindex(_ i: Int) {
            var hole = nodes[i].hash & mask
            while Int(slots[hole]) != i { hole = (hole + 1) & mask }
            var next = (hole + 1) & mask
            while slots[next] >= 0 {
                let home = nodes[Int(slots[next])].hash & mask
                // Move the entry into the hole unless its home lies cyclically in (hole, next].
                let stays = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next)
                if !stays {
                    slots[hole] = slots[next]
                    hole = next
                }
                next = (next + 1) & mask
            }
            slots[hole] = -1
        }

        mutating func growIfNeeded() {
            guard (count + 1) * 2 > slots.count else { return }
            slots = Array(repeating: -1, count: slots.count * 2)
            var i = newest
            while i >= 0 {
                place(i)
                i = Int(nodes[i].next)
            }
        }

        mutating func unlink(_ i: Int) {
            let (p, n) = (Int(nodes[i].previous), Int(nodes[i].next))
            if p >= 0 { nodes[p].next = Int32(n) } else { newest = n }
            if n >= 0 { nodes[n].previous = Int32(p) } else { oldest = p }
            nodes[i].previous = -1
            nodes[i].next = -1
        }

        mutating func pushFront(_ i: Int) {
            nodes[i].next = Int32(newest)
            nodes[i].previous = -1
            if newest >= 0 { nodes[newest].previous = Int32(i) }
            newest = i
            if oldest < 0 { oldest = i }
        }

        mutating func remove(_ i: Int) {
            unindex(i)
            unlink(i)
            count -= 1
            nodes[i].entry = CacheEntry.empty
            free.append(i)
        }

        mutating func insert(_ node: Node) -> Int {
            growIfNeeded()
            let i: Int
            if let reused = free.popLast() {
                nodes[reused] = node
                i = reused
            } else {
                nodes.append(node)
                i = nodes.count - 1
            }
            place(i)
            count += 1
            pushFront(i)
            return i
        }
    }

    private let state: Mutex<State>
    public let limits: Limits
    private let now: Clock
    private let hitCounter = Counter(label: "dnsfence_cache_hits_total")
    private let missCounter = Counter(label: "dnsfence_cache_misses_total")
    private let evictionCounter = Counter(label: "dnsfence_cache_evictions_total")
    private let entriesGauge = Gauge(label: "dnsfence_cache_entries")

    public init(limits: Limits, clock: @escaping Clock) {
        self.limits = limits
        self.now = clock
        self.state = Mutex(State(reserving: limits.maxEntries))
    }

    /// The answer for `key` with TTLs counted down, or nil (expired entries are dropped).
    public func lookup(_ key: CacheKey) -> CachedAnswer? {
        guard let (entry, elapsed) = lookupEntry(key) else { return nil }
        return elapsed == 0 ? entry.answer : entry.answer.aged(by: elapsed)
    }

    /// The answer for `key` as stored and the seconds since it was stored (the caller ages it,
    /// or uses its template), or nil (expired entries are dropped).
    public func lookupEntry(_ key: CacheKey) -> (entry: CacheEntry, elapsed: UInt32)? {
        let time = now()
        let hash = key.hashValue
        // Filled inside the lock; the closure returns nothing (a concrete copy, not a generic one).
        var found: CacheEntry? = nil
        var elapsed: UInt32 = 0
        state.withLock { state in
            guard let i = state.find(key, hash: hash) else {
                state.misses += 1
                missCounter.increment()
                return
            }
            guard state.nodes[i].expires > time else {
                // Kept for serve-stale while it may still be used; a miss all the same.
                if state.nodes[i].expires + UInt64(limits.staleMax) <= time {
                    state.remove(i)
                    entriesGauge.record(state.count)
                }
                state.misses += 1
                missCounter.increment()
                return
            }
            if state.newest != i {
                state.unlink(i)
                state.pushFront(i)
            }
            state.hits += 1
            hitCounter.increment()
            found = state.nodes[i].entry
            elapsed = UInt32(clamping: time - state.nodes[i].stored)
        }
        guard let found else { return nil }
        return (found, elapsed)
    }

    /// How long `answer` may be cached: the smallest answer TTL for a positive answer, the SOA
    /// rule of RFC 2308 for a negative one, clamped to the limits. Nil: do not cache.
    public func lifetime(of answer: CachedAnswer) -> UInt32? {
        let raw: UInt32
        switch answer.rcode {
        case .noError where !answer.answers.isEmpty:
            raw = answer.answers.map(\.ttl).min() ?? 0
        case .noError, .nxDomain:
            if let soa = answer.authorities.first(where: { $0.type == .soa }) {
                raw = min(soa.ttl, soa.soaMinimum ?? soa.ttl)
            } else {
                raw = limits.negativeWithoutSOA
            }
        default:
            return nil
        }
        let clamped = min(max(raw, limits.minTTL), limits.maxTTL)
        return clamped == 0 ? nil : clamped
    }

    /// Stores `answer` (if cacheable), evicting the least recently used entry when full.
    /// `template` makes the wire form of the answer as stored (TTLs clamped); with
    /// `keepRecords: false` an answer that has one is kept in that form only (its record arrays
    /// are dropped: about half the memory of an entry). Returns that template (nil: not
    /// cached, or no wire form).
    @discardableResult
    public func store(
        _ answer: CachedAnswer, for key: CacheKey, keepRecords: Bool = true,
        template: ((CachedAnswer) -> WireAnswer?)? = nil
    ) -> WireAnswer? {
        guard limits.maxEntries > 0, let ttl = lifetime(of: answer) else { return nil }
        var stored = answer
        // Clamp record TTLs so what we hand out never exceeds the cache lifetime.
        func clamp(_ records: [DNSRecord]) -> [DNSRecord] {
            records.map {
                var r = $0; r.ttl = min(r.ttl, ttl); return r
            }
        }
        if ttl < (answer.answers.map(\.ttl).max() ?? 0) || limits.minTTL > 0 {
            stored.answers = clamp(answer.answers).map {
                var r = $0; r.ttl = max(r.ttl, min(limits.minTTL, ttl)); return r
            }
        }
        stored.authorities = clamp(stored.authorities)
        let wire = template?(stored)
        stored.template = wire?.template
        stored.addresses = wire?.addresses ?? []
        if !keepRecords, wire != nil {
            stored.answers = []
            stored.authorities = []
            stored.additionals = []
        }
        insert(stored, for: key, lifetime: ttl)
        return wire
    }

    /// Stores an answer kept in wire form only (a positive answer made from an upstream's
    /// bytes), for `lifetime` seconds, evicting the least recently used entry when full.
    /// Returns the entry as stored (nil: not cached).
    @discardableResult
    public func store(_ wire: WireAnswer, lifetime: UInt32, for key: CacheKey, reason: UInt64 = 0) -> CacheEntry? {
        guard limits.maxEntries > 0, lifetime > 0 else { return nil }
        return insert(CachedAnswer(wire: wire, reason: reason), for: key, lifetime: lifetime)
    }

    /// Serve-stale (RFC 8767): the answer for `key` that expired at most ``Limits/staleMax``
    /// seconds ago, for when every upstream fails; nil when there is none (or one still live:
    /// that is a hit, not stale). Only positive answers are served stale.
    public func stale(_ key: CacheKey) -> CachedAnswer? {
        guard limits.staleMax > 0 else { return nil }
        let time = now()
        let hash = key.hashValue
        var found: CacheEntry? = nil
        state.withLock { state in
            guard let i = state.find(key, hash: hash), state.nodes[i].expires <= time,
                state.nodes[i].expires + UInt64(limits.staleMax) > time
            else { return }
            found = state.nodes[i].entry
        }
        guard let answer = found?.answer, answer.rcode == .noError,
            answer.template.map({ $0.answerCount > 0 }) ?? !answer.answers.isEmpty
        else {
            return nil
        }
        return answer
    }

    /// Remembers that every upstream failed on `key` (RFC 9520), for ``Limits/failure`` seconds.
    /// (Not over a stale answer: the caller serves that instead.)
    public func storeFailure(for key: CacheKey) {
        guard limits.maxEntries > 0, limits.failure > 0 else { return }
        insert(
            CachedAnswer(rcode: .servFail, authenticData: false, answers: [], authorities: [], additionals: []),
            for: key, lifetime: limits.failure)
    }

    @discardableResult
    private func insert(_ stored: CachedAnswer, for key: CacheKey, lifetime ttl: UInt32) -> CacheEntry {
        let time = now()
        let hash = key.hashValue
        let entry = CacheEntry(stored)
        state.withLock { state in
            if let existing = state.find(key, hash: hash) {
                state.remove(existing)
            } else if state.count >= limits.maxEntries, state.oldest >= 0 {
                state.remove(state.oldest)
                state.evictions += 1
                evictionCounter.increment()
            }
            _ = state.insert(
                Node(
                    key: key, entry: entry, hash: hash, stored: time, expires: time + UInt64(ttl),
                    previous: -1,
                    next: -1))
            entriesGauge.record(state.count)
        }
        return entry
    }

    /// Drops every entry cached for one of `policies` (a reload changed how their answers are
    /// shaped or released, or removed them); returns how many were dropped.
    @discardableResult
    public func removeAll(policies: Set<String>) -> Int {
        guard !policies.isEmpty else { return 0 }
        return state.withLock { state in
            var removed = 0
            var i = state.newest
            while i >= 0 {
                let next = Int(state.nodes[i].next)
                if policies.contains(state.nodes[i].key.policy) {
                    state.remove(i)
                    removed += 1
                }
                i = next
            }
            entriesGauge.record(state.count)
            return removed
        }
    }

    /// Entry count, hits, misses and evictions so far.
    public var statistics: (entries: Int, hits: Int, misses: Int, evictions: Int) {
        state.withLock { ($0.count, $0.hits, $0.misses, $0.evictions) }
    }
}
