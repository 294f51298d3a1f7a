public import DNSFenceCore
import Synchronization

/// Carries out ``RateLimits``: one table of 2^16 slots of 8 bytes, each the theoretical arrival
/// time of the key's next conforming query (GCRA: the same as a token bucket, in one word) and
/// a tag of the key; a key that finds another's tag starts afresh. Updated with one
/// compare-and-swap, no lock. The table is kept across reloads.
public final class RateLimiter: Sendable {
    public let limits: RateLimits
    private let table: RateTable
    /// Microseconds between conforming queries of one address, and the burst tolerance.
    private let interval: UInt64
    private let tolerance: UInt64
    /// The same for the prefix: sixteen times the rate and the burst.
    private let prefixInterval: UInt64
    private let prefixTolerance: UInt64
    private let clock: @Sendable () -> UInt64

    /// `clock`: monotonic nanoseconds. `previous`: the limiter this one replaces (its table is kept).
    public init(
        _ limits: RateLimits, previous: RateLimiter? = nil,
        clock: @escaping @Sendable () -> UInt64 = QueryRecord.monotonicNow
    ) {
        self.limits = limits
        self.table = previous?.table ?? RateTable()
        self.clock = clock
        interval = max(1, 1_000_000 / UInt64(max(limits.queries, 1)))
        tolerance = interval * UInt64(max(limits.burst, 1) - 1)
        prefixInterval = max(1, interval / 16)
        prefixTolerance = prefixInterval * (UInt64(max(limits.burst, 1)) * 16 - 1)
    }

    /// What to do with a query from `client`.
    public enum Verdict: Sendable {
        case admit
        case drop
        /// Answer TC=1, no records.
        case slip
    }

    @inline(__always)
    public func check(_ client: IPAddress) -> Verdict {
        for prefix in limits.exempt where prefix.contains(client) { return .admit }
        let now = clock() / 1000
        let (host, net): (UInt64, UInt64)
        switch client {
        case .v4(let address):
            host = UInt64(address)
            net = UInt64(address) >> UInt64(32 - limits.ipv4Prefix)
        case .v6(let high, _):
            host = high
            net = limits.ipv6Prefix >= 64 ? high : high >> UInt64(64 - limits.ipv6Prefix)
        }
        // Kinds keep an address, a prefix and the other family's keys apart in the table.
        let kind: UInt64 = client.isIPv4 ? 0 : 2
        if table.conforms(host, kind: kind, now: now, interval: interval, tolerance: tolerance),
            table.conforms(net, kind: kind + 1, now: now, interval: prefixInterval, tolerance: prefixTolerance)
        {
            return .admit
        }
        return limits.slip > 0 && (now / 7) % UInt64(limits.slip) == 0 ? .slip : .drop
    }
}

/// 2^16 words: a 16-bit tag of the key and 48 bits of microseconds.
final class RateTable: @unchecked Sendable {
    // @unchecked Sendable: the slots are atomics, allocated once and freed in deinit.
    private static let bits = 16
    private let slots: UnsafeMutablePointer<Atomic<UInt64>>
    private let seed = UInt64.random(in: 1...UInt64.max)

    init() {
        slots = .allocate(capacity: 1 << Self.bits)
        for index in 0..<(1 << Self.bits) { (slots + index).initialize(to: Atomic(0)) }
    }

    deinit {
        slots.deinitialize(count: 1 << Self.bits)
        slots.deallocate()
    }

    /// GCRA: a query at `now` conforms if the key's theoretical arrival time is at most
    /// `tolerance` ahead; it then moves the time on by `interval`.
    @inline(__always)
    func conforms(_ key: UInt64, kind: UInt64, now: UInt64, interval: UInt64, tolerance: UInt64) -> Bool {
        let hash = ((key ^ seed) &* 0x9E37_79B9_7F4A_7C15 ^ kind) &* 0xBF58_476D_1CE4_E5B9
        let slot = slots + Int(truncatingIfNeeded: hash >> UInt64(64 - Self.bits))
        let tag = (hash >> 16) & 0xFFFF
        let mask: UInt64 = (1 << 48) - 1
        var old = slot.pointee.load(ordering: .relaxed)
        for _ in 0..<4 {
            let arrival = old >> 48 == tag ? old & mask : 0
            let start = max(arrival, now)
            if start - now > tolerance { return false }
            let new = tag << 48 | ((start + interval) & mask)
            let (exchanged, current) = slot.pointee.compareExchange(
                expected: old, desired: new, ordering: .relaxed)
            if exchanged { return true }
            old = current
        }
        return true  // contended: let it through rather than spin
    }
}
