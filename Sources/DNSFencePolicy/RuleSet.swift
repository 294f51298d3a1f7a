public import DNSFenceWire

#if canImport(Glibc)
    import Glibc
#endif

/// An immutable index of rules with lookup cost independent of the number of rules.
///
/// Instead of a pointer-linked label trie, every rule is keyed by its lower-cased wire name in
/// one open-addressing table (``NameIndex``), exact names and wildcard parents apart by a kind
/// bit. A lookup folds the query name into a stack buffer, hashes every suffix in one pass
/// from the root label outwards, and probes the exact entry once and then each proper suffix,
/// longest first: at most one probe per label (≤ 128) and no allocation. That gives the trie's
/// semantics (exact beats wildcard, longer suffix beats shorter) at a fraction of its memory.
public struct RuleSet: Sendable {
    /// All rules in file order; the index points into it.
    public let rules: [PolicyRule]
    private let index: NameIndex

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
        var index = NameIndex(capacity: rules.count)
        var conflicts: [Conflict] = []
        for rule in rules {
            if let existing = index.insert(rule.name.wire, wildcard: rule.isWildcard, value: Int32(kept.count)) {
                conflicts.append(Conflict(kept: kept[Int(existing)], ignored: rule))
                continue
            }
            kept.append(rule)
        }
        self.rules = kept
        self.index = index
        self.conflicts = conflicts
        self.retired = []
        self.carried = 0
    }

    private init(rules: [PolicyRule], index: NameIndex, retired: Set<Int32>, carried: Int) {
        self.rules = rules
        self.index = index
        self.conflicts = []
        self.retired = retired
        self.carried = carried
    }

    /// For a set made by ``applying(setting:removing:)`` without building it again: how many
    /// rules it took over in place from the set it was applied to (their positions unchanged);
    /// 0 for a set built from scratch.
    public let carried: Int

    /// Positions in ``rules`` of rules that ``applying(setting:removing:)`` replaced or
    /// removed: no lookup finds them any more.
    public let retired: Set<Int32>

    /// A copy with `setting` put in (each replaces the rule of its pattern, or is added) and
    /// the patterns of `removing` gone: an IXFR's changes to a big policy without indexing it
    /// again. The rules and the table are copied (memory copies), not rebuilt; a table filled
    /// past 3/4, or a quarter of the rules retired, is built again from the rules in service.
    public func applying(setting: [PolicyRule], removing: [(name: DNSName, wildcard: Bool)]) -> RuleSet {
        var rules = self.rules
        var index = self.index
        var retired = self.retired
        for pattern in removing {
            if let old = index.update(pattern.name.wire, wildcard: pattern.wildcard, value: -1), old >= 0 {
                retired.insert(old)
            }
        }
        for rule in setting {
            if let old = index.update(rule.name.wire, wildcard: rule.isWildcard, value: Int32(rules.count)), old >= 0 {
                retired.insert(old)
            }
            rules.append(rule)
        }
        if index.isCrowded || retired.count * 4 > rules.count {
            return RuleSet(rules.indices.filter { !retired.contains(Int32($0)) }.map { rules[$0] })
        }
        return RuleSet(rules: rules, index: index, retired: retired, carried: self.rules.count)
    }

    /// Duplicate or conflicting patterns dropped at indexing time.
    public let conflicts: [Conflict]

    /// Rules in service.
    public var count: Int { rules.count - retired.count }

    /// The best rule for `name`: an exact rule, else the wildcard on the longest proper suffix.
    public func match(_ name: DNSName) -> PolicyRule? {
        name.wire.withUnsafeBufferPointer { index.bestMatch($0.baseAddress!, count: $0.count) }.map { rules[Int($0)] }
    }

    /// The same for a name as wire bytes (uncompressed, any letter case, validated by the
    /// caller: labels ≤ 63, ≤ 255 bytes, ending with the root label).
    public func match(wire: UnsafeRawBufferPointer) -> PolicyRule? {
        matchIndex(wire: wire).map { rules[$0] }
    }

    /// The position in ``rules`` of ``match(wire:)``'s rule.
    @inline(__always)
    public func matchIndex(wire: UnsafeRawBufferPointer) -> Int? {
        index.bestMatch(wire.baseAddress!.assumingMemoryBound(to: UInt8.self), count: wire.count).map { Int($0) }
    }
}

/// Lower-cased wire names (exact, or wildcard parents) → an Int32, in one open-addressing
/// table with linear probing at load ≤ 1/2. Names live in one byte pool; a slot holds the
/// name's hash tag, place in the pool, kind and value (16 bytes).
///
/// A name's hash is built label by label from the root outwards (seeded multiply-mix), so one
/// pass over a query name yields the hash of every suffix. The seed comes from `Hasher`, so it
/// differs per process (and is fixed under SWIFT_DETERMINISTIC_HASHING): table contents are
/// configuration, only lookups come from the network, and probe lengths depend on the contents.
struct NameIndex: Sendable {
    private struct Slot {
        var tag: UInt32 = 0
        var length: UInt16 = 0  // 0: empty (a wire name has at least the root byte)
        var wildcard: Bool = false
        var offset: UInt32 = 0
        var value: Int32 = 0
    }

    private var slots: [Slot]
    private var pool: [UInt8] = []
    private let mask: Int
    private let seed: UInt64
    /// Slots in use (a removed entry keeps its slot, its value -1).
    private var used = 0

    /// Filled past 3/4: probes get long.
    var isCrowded: Bool { used * 4 > slots.count * 3 }

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = Array(repeating: Slot(), count: size)
        mask = size - 1
        var hasher = Hasher()
        hasher.combine(0x646E_7366_656E_6365 as UInt64)
        seed = UInt64(bitPattern: Int64(hasher.finalize()))
    }

    @inline(__always)
    private static func mix(_ h: UInt64, _ v: UInt64) -> UInt64 {
        let product = (h ^ v).multipliedFullWidth(by: 0x9E37_79B9_7F4A_7C15)
        return product.high ^ product.low
    }

    /// The hash after adding the label at `start` (its length byte first) to `h`.
    @inline(__always)
    private static func addLabel(_ h: UInt64, _ bytes: UnsafePointer<UInt8>, _ start: Int) -> UInt64 {
        let length = Int(bytes[start])
        var h = mix(h, UInt64(length) | 0x100)
        var position = start + 1
        let end = position + length
        while position + 8 <= end {
            h = mix(h, UnsafeRawPointer(bytes + position).loadUnaligned(as: UInt64.self))
            position += 8
        }
        if position < end {
            var tail: UInt64 = 0
            var shift: UInt64 = 0
            while position < end {
                tail |= UInt64(bytes[position]) << shift
                shift += 8
                position += 1
            }
            h = mix(h, tail)
        }
        return h
    }

    /// Hashes of every suffix of the name in `bytes` (lower-cased, validated): `visit` gets the
    /// suffix's start offset and hash, longest suffix first (the whole name), root last.
    @inline(__always)
    private func suffixHashes(
        _ bytes: UnsafePointer<UInt8>, _ visit: (_ start: Int, _ hash: UInt64) -> Bool
    ) {
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 128) { starts in
            var count = 0
            var position = 0
            while bytes[position] != 0 {
                starts[count] = position
                count += 1
                position += 1 + Int(bytes[position])
            }
            let root = position
            withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 129) { hashes in
                var h = Self.mix(seed, 0)
                hashes[count] = h
                var label = count - 1
                while label >= 0 {
                    h = Self.addLabel(h, bytes, starts[label])
                    hashes[label] = h
                    label -= 1
                }
                for label in 0..<count where !visit(starts[label], hashes[label]) { return }
                _ = visit(root, hashes[count])
            }
        }
    }

    /// The value of the entry (-1: removed), or nil.
    @inline(__always)
    private func find(_ bytes: UnsafePointer<UInt8>, length: Int, hash: UInt64, wildcard: Bool) -> Int32? {
        slot(bytes, length: length, hash: hash, wildcard: wildcard).map { slots[$0].value }
    }

    @inline(__always)
    private func slot(_ bytes: UnsafePointer<UInt8>, length: Int, hash: UInt64, wildcard: Bool) -> Int? {
        let tag = UInt32(truncatingIfNeeded: hash >> 32)
        var index = Int(truncatingIfNeeded: hash) & mask
        return slots.withUnsafeBufferPointer { slots in
            pool.withUnsafeBufferPointer { pool in
                while true {
                    let slot = slots[index]
                    if slot.length == 0 { return nil }
                    if slot.tag == tag && Int(slot.length) == length && slot.wildcard == wildcard
                        && memcmp(pool.baseAddress! + Int(slot.offset), bytes, length) == 0
                    {
                        return index
                    }
                    index = (index + 1) & mask
                }
            }
        }
    }

    private func hash(_ wire: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0
        wire.withUnsafeBufferPointer { bytes in
            suffixHashes(bytes.baseAddress!) { _, h in
                hash = h
                return false
            }
        }
        return hash
    }

    /// Sets the value of `wire`'s entry (adding it when there is none and `value` is not -1);
    /// returns the value it had.
    mutating func update(_ wire: [UInt8], wildcard: Bool, value: Int32) -> Int32? {
        let hash = hash(wire)
        if let index = wire.withUnsafeBufferPointer({
            slot($0.baseAddress!, length: wire.count, hash: hash, wildcard: wildcard)
        }) {
            let old = slots[index].value
            slots[index].value = value
            return old
        }
        if value >= 0 { _ = insert(wire, wildcard: wildcard, value: value) }
        return nil
    }

    /// Adds a lower-cased wire name; if it is already there (same kind), returns its value and
    /// changes nothing.
    mutating func insert(_ wire: [UInt8], wildcard: Bool, value: Int32) -> Int32? {
        let hash = hash(wire)
        if let existing = wire.withUnsafeBufferPointer({
            find($0.baseAddress!, length: wire.count, hash: hash, wildcard: wildcard)
        }) {
            return existing
        }
        var index = Int(truncatingIfNeeded: hash) & mask
        while slots[index].length != 0 { index = (index + 1) & mask }
        slots[index] = Slot(
            tag: UInt32(truncatingIfNeeded: hash >> 32), length: UInt16(wire.count), wildcard: wildcard,
            offset: UInt32(pool.count), value: value)
        pool.append(contentsOf: wire)
        used += 1
        return nil
    }

    /// The value of the exact entry for `wire` (matched without regard to ASCII case), else of
    /// the wildcard entry on its longest proper suffix.
    @inline(__always)
    func bestMatch(_ wire: UnsafePointer<UInt8>, count: Int) -> Int32? {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: DNSName.maxWireLength + 1) { lower in
            let length = min(count, DNSName.maxWireLength)
            for i in 0..<length { lower[i] = DNSName.foldCase(wire[i]) }
            lower[length] = 0
            let bytes = UnsafePointer(lower.baseAddress!)
            var found: Int32? = nil
            suffixHashes(bytes) { start, hash in
                // The whole name: exact entries only; a proper suffix: wildcards only.
                found = find(bytes + start, length: length - start, hash: hash, wildcard: start != 0)
                if found == -1 { found = nil }  // removed by an IXFR
                return found == nil
            }
            return found
        }
    }
}
