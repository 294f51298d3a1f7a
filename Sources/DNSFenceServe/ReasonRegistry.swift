public import DNSFenceCore
public import DNSFencePolicy
import DNSFenceWire
import Synchronization

/// The firewall's reasons (``SetElement/reason``) and what they stand for: a policy and a
/// name it answered. An answer's addresses carry its reason into the sets; after a reload,
/// ``keeps(_:under:)`` says which reasons the new policies still justify, and the publisher
/// revokes the elements no remaining reason holds.
public final class ReasonRegistry: Sendable {
    struct Entry {
        var policy: String
        /// The name as lower-cased wire bytes.
        var name: [UInt8]
        /// When an answer was last stored under it (seconds, the cache's clock).
        var seen: UInt64
        /// For local data: the addresses the rewrite handed out (nil: an upstream's answer).
        var local: [IPAddress]?
    }

    private let entries = Mutex<[UInt64: Entry]>([:])

    public init() {}

    /// The reason for answers to `name` (lower-cased wire bytes) under `policy`, registered;
    /// for local data, `local` holds the addresses it hands out (a changed rewrite is another
    /// reason, so the old addresses are revoked).
    public func reason(policy: String, name: [UInt8], local: [IPAddress]? = nil, now: UInt64) -> UInt64 {
        var hasher = Hasher()
        hasher.combine(policy)
        hasher.combine(name)
        hasher.combine(local)
        let hash = UInt64(bitPattern: Int64(hasher.finalize()))
        let key = hash == 0 ? 1 : hash
        entries.withLock { table in
            if table[key] == nil {
                table[key] = Entry(policy: policy, name: name, seen: now, local: local)
            } else {
                table[key]!.seen = now
            }
        }
        return key
    }

    /// Whether `reason` still justifies its addresses under `selector`'s policies: its policy
    /// is there and passes its name for A or AAAA, or, for local data, still rewrites it to
    /// every address it did. A reason not registered is kept.
    public func keeps(_ reason: UInt64, under selector: ClientPolicySelector) -> Bool {
        guard let entry = entries.withLock({ $0[reason] }) else { return true }
        guard let policy = selector.entries[entry.policy]?.policy else { return false }
        // Audit mode answers every name as allowed: nothing it handed out is revoked.
        if policy.audit && entry.local == nil { return true }
        return entry.name.withUnsafeBytes { wire in
            var rewritten: Set<IPAddress> = []
            for type in [DNSType.a, .aaaa] {
                switch policy.decide(wire: wire, type: type) {
                case .pass where entry.local == nil: return true
                case .localData(let records, _): rewritten.formUnion(records.compactMap(\.address))
                default: break
                }
            }
            guard let local = entry.local else { return false }
            return !local.isEmpty && local.allSatisfy(rewritten.contains)
        }
    }

    /// Forgets reasons not seen for `age` seconds (no element can still hold them).
    public func prune(olderThan age: UInt64, now: UInt64) {
        entries.withLock { table in table = table.filter { now < age || $0.value.seen > now - age } }
    }

    public var count: Int { entries.withLock { $0.count } }
}
