public import DNSFenceWire

#if canImport(Glibc)
    import Glibc
#endif

/// An immutable index of rules with lookup cost independent of the number of rules.
///
/// Instead of a pointer-linked label trie, every rule is keyed by its lower-cased wire name in
/// one of two hash tables (exact names, wildcard parents). A lookup probes the exact table
/// once and then each proper suffix of the query name, longest first: at most one probe per
/// label (≤ 128), no allocation beyond one lower-cased copy of the name. That gives the trie's
/// semantics (exact beats wildcard, longer suffix beats shorter) at a fraction of its memory.
public struct RuleSet: Sendable {
    /// All rules in file order; the tables point into it.
    public let rules: [PolicyRule]
    private let exact: [WireKey: Int32]
    private let wildcard: [WireKey: Int32]

    /// Problems found while indexing (duplicates and conflicts; the first rule wins).
    public struct Conflict: Hashable, Sendable {
        public var kept: PolicyRule
        public var ignored: PolicyRule
    }

    /// Indexes `rules`; when two rules have the same pattern, the first one (file order) wins
    /// and the pair is reported in `conflicts`.
    public init(_ rules: [PolicyRule]) {
        var kept: [PolicyRule] = []
        kept.reserveCapacity(rules.count)
        var exact: [WireKey: Int32] = [:]
        var wildcard: [WireKey: Int32] = [:]
        exact.reserveCapacity(rules.count)
        var conflicts: [Conflict] = []
        for rule in rules {
            let key = WireKey(rule.name.wire[...])
            if let existing = rule.isWildcard ? wildcard[key] : exact[key] {
                conflicts.append(Conflict(kept: kept[Int(existing)], ignored: rule))
                continue
            }
            let index = Int32(kept.count)
            kept.append(rule)
            if rule.isWildcard { wildcard[key] = index } else { exact[key] = index }
        }
        self.rules = kept
        self.exact = exact
        self.wildcard = wildcard
        self.conflicts = conflicts
    }

    /// Duplicate or conflicting patterns dropped at indexing time.
    public let conflicts: [Conflict]

    public var count: Int { rules.count }

    /// The best rule for `name`: an exact rule, else the wildcard on the longest proper suffix.
    public func match(_ name: DNSName) -> PolicyRule? {
        var lower = name.wire
        DNSName.foldCase(&lower)
        if let i = exact[WireKey(lower[...])] { return rules[Int(i)] }
        guard !wildcard.isEmpty else { return nil }
        var offset = 0
        while lower[offset] != 0 {
            offset += 1 + Int(lower[offset])
            if let i = wildcard[WireKey(lower[offset...])] { return rules[Int(i)] }
        }
        return nil
    }
}

/// A lower-cased wire name (or a suffix of one) as a hash key, hashed in bulk: Swift's
/// `ArraySlice` hashes element by element, which dominated lookups with a million rules.
struct WireKey: Hashable, @unchecked Sendable {
    // @unchecked Sendable: an immutable slice of an immutable array.
    let bytes: ArraySlice<UInt8>

    init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

    func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    static func == (a: WireKey, b: WireKey) -> Bool {
        guard a.bytes.count == b.bytes.count else { return false }
        return a.bytes.withUnsafeBytes { x in
            b.bytes.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 }
        }
    }
}
