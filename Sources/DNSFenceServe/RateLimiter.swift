public import DNSFenceCore
public import DNSFenceIO
import Synchronization

/// Carries out ``RateLimits``: one table of 2^16 slots of 8 bytes, each the theoretical arrival
/// time of the key's next conforming query (GCRA: the same as a token bucket, in one word) and
/// a tag of the key; a key that finds another's tag starts afresh. Updated with one
/// compare-and-swap, no lock. The table is kept across reloads.
///
/// With a ``KernelShedder`` (and `limits.kernel`), the first refusal of a key tells the kernel
/// to drop that key's datagrams until its next query would conform, and then to let one through
/// per interval, for a second: the same verdicts, given before the flood reaches the socket.
/// Refusals while the kernel drops cost nothing more.
public final class RateLimiter: Sendable {
    public let limits: RateLimits
    private let table: RateTable
    private let shedder: KernelShedder?
    /// Microseconds between conforming queries of one address, and the burst tolerance.
    private let interval: UInt64
    private let tolerance: UInt64
    /// The same for the prefix: sixteen times the rate and the burst.
    private let prefixInterval: UInt64
    private let prefixTolerance: UInt64
    private let clock: @Sendable () -> UInt64
    /// How long, in microseconds, the kernel holds a block after a refusal confirmed it.
    static let holding: UInt64 = 1_000_000

    /// `clock`: monotonic nanoseconds (CLOCK_MONOTONIC when there is a `shedder`, whose filter
    /// reads that clock). `previous`: the limiter this one replaces (its table is kept).
    public init(
        _ limits: RateLimits, previous: RateLimiter? = nil, shedder: KernelShedder? = nil,
        clock: @escaping @Sendable () -> UInt64 = QueryRecord.monotonicNow
    ) {
        self.limits = limits
        self.clock = clock
        self.table = previous?.table ?? RateTable(now: clock() / 1000)
        self.shedder = limits.kernel ? shedder : nil
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
        let absolute = clock() / 1000
        let now = absolute &- table.origin
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
        let report = shedder != nil
        var refusal = table.take(host, kind: kind, now: now, interval: interval, tolerance: tolerance, report: report)
        var refused = (key: host, kind: kind, interval: interval)
        if refusal == 0 {
            refusal = table.take(
                net, kind: kind + 1, now: now, interval: prefixInterval, tolerance: prefixTolerance, report: report)
            if refusal == 0 { return .admit }
            refused = (net, kind + 1, prefixInterval)
        }
        if refusal != RateTable.reported, let shedder {
            shedder.block(
                kind: UInt32(refused.kind), key: refused.key, until: (absolute + refusal) * 1000,
                interval: refused.interval * 1000, expires: (absolute + Self.holding) * 1000)
        }
        return limits.slip > 0 && (now / 7) % UInt64(limits.slip) == 0 ? .slip : .drop
    }
}

/// 2^16 words: a 16-bit tag of the key, a bit set once a refusal at the key's current time has
/// been reported, and 47 bits of microseconds since the table was made (4.4 years).
final class RateTable: @unchecked Sendable {
    // @unchecked Sendable: the slots are atomics, allocated once and freed in deinit.
    private static let bits = 16
    private static let reportedBit: UInt64 = 1 << 47
    private static let timeMask: UInt64 = (1 << 47) - 1
    /// ``take(_:kind:now:interval:tolerance:report:)``'s answer for a refusal already reported.
    static let reported = UInt64.max
    private let slots: UnsafeMutablePointer<Atomic<UInt64>>
    private let seed = UInt64.random(in: 1...UInt64.max)
    /// The clock's microseconds when the table was made: times are kept from there.
    let origin: UInt64

    init(now: UInt64) {
        origin = now
        slots = .allocate(capacity: 1 << Self.bits)
        for index in 0..<(1 << Self.bits) { (slots + index).initialize(to: Atomic(0)) }
    }

    deinit {
        slots.deinitialize(count: 1 << Self.bits)
        slots.deallocate()
    }

    /// GCRA: a query at `now` conforms if the key's theoretical arrival time is at most
    /// `tolerance` ahead; it then moves the time on by `interval`, and 0 is returned. Otherwise
    /// the microseconds until a query would conform, or ``reported`` when `report` is set and
    /// an earlier refusal at the same time was returned already (the kernel drops it already).
    @inline(__always)
    func take(_ key: UInt64, kind: UInt64, now: UInt64, interval: UInt64, tolerance: UInt64, report: Bool)
        -> UInt64
    {
        let hash = ((key ^ seed) &* 0x9E37_79B9_7F4A_7C15 ^ kind) &* 0xBF58_476D_1CE4_E5B9
        let slot = slots + Int(truncatingIfNeeded: hash >> UInt64(64 - Self.bits))
        let tag = (hash >> 16) & 0xFFFF
        var old = slot.pointee.load(ordering: .relaxed)
        for _ in 0..<4 {
            let arrival = old >> 48 == tag ? old & Self.timeMask : 0
            let start = max(arrival, now)
            let new: UInt64
            if start - now > tolerance {
                let wait = start - now - tolerance
                // A refusal leaves the time as it is; the first one is marked, for the kernel.
                guard report else { return wait }
                if old & Self.reportedBit != 0 { return Self.reported }
                new = old | Self.reportedBit
            } else {
                new = tag << 48 | ((start + interval) & Self.timeMask)
            }
            let (exchanged, current) = slot.pointee.compareExchange(
                expected: old, desired: new, ordering: .relaxed)
            if exchanged { return new & Self.reportedBit != 0 ? start - now - tolerance : 0 }
            old = current
        }
        return 0  // contended: let it through rather than spin
    }
}
