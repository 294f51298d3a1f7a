import CoreMetrics
public import DNSFenceCore
public import DNSFencePolicy
import Synchronization

/// What each client has spent of each tunnel budget (``TunnelBudget``): one ledger handed from
/// snapshot to snapshot, so that a reload neither forgives nor forgets.
///
/// Per (budget, client) a bucket: a token bucket of new names (`burst` at most, refilled at
/// `names / window` per second) and the names seen, in two generations of `window` seconds
/// each (a name asked within the last window is in one of them, and asking it again costs
/// nothing). Clients are source addresses, IPv6 ones by /64 (a host can pick any address in
/// its prefix). A bucket idle long enough to be full again and to have forgotten every name is
/// the same as none, and is dropped when room is needed; when there is no room even then, a
/// new client's new names are denied (fail closed) rather than an old client's budget reset.
public final class TunnelLedger: Sendable {
    /// At most this many (budget, client) buckets are kept.
    public let capacity: Int
    private let shards: [Shard]
    private let clock: @Sendable () -> UInt64
    private let denials = Mutex<[String: Counter]>([:])

    private final class Shard: Sendable {
        let buckets = Mutex<[Key: Bucket]>([:])
    }

    fileprivate struct Key: Hashable {
        var budget: UInt64
        var high: UInt64
        var low: UInt64
    }

    fileprivate struct Bucket {
        var tokens: Double
        /// Nanoseconds, of the clock: the last refill and the last rotation of the generations.
        var refilled: UInt64
        var rotated: UInt64
        /// The last query charged, free or not.
        var used: UInt64
        var current: Set<Int>
        var previous: Set<Int>
    }

    /// `clock`: monotonic nanoseconds.
    public init(capacity: Int = 4096, clock: @escaping @Sendable () -> UInt64 = QueryRecord.monotonicNow) {
        self.capacity = capacity
        self.clock = clock
        shards = (0..<16).map { _ in Shard() }
    }

    /// Charges `client` for forwarding `name` (lower-cased wire) under `budget`: nil when it
    /// may go, else the limit it ran into (also counted in `dnsfence_budget_denials_total`).
    public func charge(_ budget: RuleBudget, policy: String, client: IPAddress, name: [UInt8]) -> BudgetLimit? {
        let excess = name.withUnsafeBytes { budget.shapeExcess($0) }
        let limit: BudgetLimit?
        switch excess {
        case .label?: limit = .label
        case .name?: limit = .name
        case .encoded?: limit = .encoded
        case nil: limit = spend(budget, client: client, name: name)
        }
        if let limit { count(policy: policy, limit: limit) }
        return limit
    }

    private func spend(_ budget: RuleBudget, client: IPAddress, name: [UInt8]) -> BudgetLimit? {
        let key: Key
        switch client {
        case .v4(let address): key = Key(budget: budget.key, high: 0, low: UInt64(address))
        case .v6(let high, _): key = Key(budget: budget.key, high: high, low: 1)
        }
        let hash = name.hashValue
        let now = clock()
        let limits = budget.limits
        let window = UInt64(limits.window) * 1_000_000_000
        let shard = shards[Int(truncatingIfNeeded: UInt(bitPattern: key.hashValue) % UInt(shards.count))]
        return shard.buckets.withLock { buckets -> BudgetLimit? in
            if buckets[key] == nil {
                if buckets.count >= capacity / shards.count {
                    let idle = max(window * 2, UInt64(Double(limits.burst) / Self.rate(limits) * 1e9))
                    buckets = buckets.filter { now &- $0.value.used < idle }
                    if buckets.count >= capacity / shards.count { return .clients }
                }
                buckets[key] = Bucket(
                    tokens: Double(limits.burst), refilled: now, rotated: now, used: now, current: [], previous: [])
            }
            return buckets[key]!.spend(hash, now: now, window: window, limits: limits)
        }
    }

    /// New names per second.
    static func rate(_ limits: TunnelBudget) -> Double {
        Double(limits.names) / Double(max(limits.window, 1))
    }

    private func count(policy: String, limit: BudgetLimit) {
        let counter = denials.withLock { counters in
            let id = policy + "\u{0}" + limit.rawValue
            if let counter = counters[id] { return counter }
            let counter = Counter(
                label: "dnsfence_budget_denials_total", dimensions: [("policy", policy), ("limit", limit.rawValue)])
            counters[id] = counter
            return counter
        }
        counter.increment()
    }
}

extension TunnelLedger.Bucket {
    /// Seen within the last window: free. Else one token, if there is one.
    fileprivate mutating func spend(_ hash: Int, now: UInt64, window: UInt64, limits: TunnelBudget) -> BudgetLimit? {
        used = now
        if now &- rotated >= window {
            // Two windows or more without a rotation: nothing seen is recent any more.
            previous = now &- rotated >= 2 * window ? [] : current
            current = []
            rotated = now
        }
        if current.contains(hash) { return nil }
        if previous.contains(hash) {
            current.insert(hash)
            return nil
        }
        let elapsed = Double(now &- refilled) / 1e9
        tokens = min(Double(limits.burst), tokens + elapsed * TunnelLedger.rate(limits))
        refilled = now
        guard tokens >= 1 else { return .names }
        tokens -= 1
        current.insert(hash)
        return nil
    }
}
