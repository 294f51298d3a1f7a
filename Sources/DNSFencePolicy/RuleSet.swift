public import DNSFenceWire

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
    private let exact: [ArraySlice<UInt8>: Int32]
    private let wildcard: [ArraySlice<UInt8>: Int32]

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
        var exact: [ArraySlice<UInt8>: Int32] = [:]
        var wildcard: [ArraySlice<UInt8>: Int32] = [:]
        exact.reserveCapacity(rules.count)
        var conflicts: [Conflict] = []
        for rule in rules {
            let key = rule.name.wire[...]
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
        if let i = exact[lower[...]] { return rules[Int(i)] }
        guard !wildcard.isEmpty else { return nil }
        var offset = 0
        while lower[offset] != 0 {
            offset += 1 + Int(lower[offset])
            if let i = wildcard[lower[offset...]] { return rules[Int(i)] }
        }
        return nil
    }
}
