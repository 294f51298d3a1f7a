public import DNSFenceCore

/// What dnsfence believes each set holds: per element, the latest expiry it has committed and
/// when the kernel last confirmed it (a successful commit or a listing).
///
/// The expiry is remembered for good (so a refresh never shortens an element: `add element`
/// resets the timeout, possibly downwards); the confirmation is trusted only for
/// `trustSeconds`, bounding how long a flush or delete by someone else can go unnoticed.
public struct SetShadow: Sendable {
    struct Entry: Sendable {
        var expiry: UInt64
        /// When the kernel last confirmed it; nil after a deletion notification.
        var confirmed: UInt64?
        /// Why it is there: each reason (``SetElement/reason``) with how long it holds.
        var reasons: [Reason] = []

        /// Records that `reason` holds until `until` (never shortened).
        mutating func justify(_ reason: UInt64, until: UInt64) {
            guard reason != 0 else { return }
            if let index = reasons.firstIndex(where: { $0.key == reason }) {
                reasons[index].until = max(reasons[index].until, until)
            } else {
                reasons.append(Reason(key: reason, until: until))
            }
        }

        /// A commit of `expiry` went through at `now` (the expiry never shrinks).
        mutating func confirm(expiry: UInt64, now: UInt64) {
            self.expiry = max(self.expiry, expiry)
            confirmed = now
        }
    }

    /// One reason an element is handed out, and until when.
    struct Reason: Sendable {
        var key: UInt64
        var until: UInt64
    }

    public var trustSeconds: UInt64
    /// Per set, its elements. A short list (a policy has a set or two): found by a scan that
    /// usually stops at the first identity check, where a dictionary hashed the target for
    /// every element.
    private var tables: [(target: SetTarget, entries: [IPAddress: Entry])] = []

    private func table(_ target: SetTarget) -> Int? { tables.firstIndex { $0.target == target } }

    /// The table of `target`, made if there is none.
    private mutating func tableMade(_ target: SetTarget) -> Int {
        if let index = table(target) { return index }
        tables.append((target, [:]))
        return tables.count - 1
    }

    public init(trustSeconds: UInt64 = 1) {
        self.trustSeconds = trustSeconds
    }

    /// The element to commit for `element` at time `now`, or nil when the kernel already has
    /// it for long enough. The timeout returned is never shorter than what was set before.
    public func plan(_ element: SetElement, now: UInt64) -> SetElement? {
        plan(element, against: table(element.target).flatMap { tables[$0].entries[element.address] }, now: now)
    }

    /// The same against the entry the shadow holds for the element (nil: none).
    private func plan(_ element: SetElement, against entry: Entry?, now: UInt64) -> SetElement? {
        let wanted = now + UInt64(element.timeout)
        guard let entry, entry.expiry > now else { return element }
        if entry.expiry >= wanted, let confirmed = entry.confirmed, now - confirmed < trustSeconds { return nil }
        var extended = element
        extended.timeout = UInt32(max(wanted, entry.expiry) - now)
        return extended
    }

    /// Whether `element` must be committed (``plan(_:now:)`` is not nil). When it need not be,
    /// its reason is recorded on the element the kernel already has (a commit records its
    /// reasons itself, through ``justify(_:now:)``).
    public mutating func check(_ element: SetElement, now: UInt64) -> Bool {
        guard let index = table(element.target), let entry = tables[index].entries[element.address],
            plan(element, against: entry, now: now) == nil
        else { return true }
        if element.reason != 0
            && !entry.reasons.contains(where: { $0.key == element.reason && $0.until >= now + UInt64(element.timeout) })
        {
            tables[index].entries[element.address]?.justify(element.reason, until: now + UInt64(element.timeout))
        }
        return false
    }

    /// Records the reasons of `elements` (after their commit, or for elements that needed none)
    /// on the entries the shadow has for them.
    public mutating func justify(_ elements: [SetElement], now: UInt64) {
        forEachRun(of: elements) { target, run in
            guard let index = table(target) else { return }
            for element in run where element.reason != 0 {
                tables[index].entries[element.address]?.justify(element.reason, until: now + UInt64(element.timeout))
            }
        }
    }

    /// Takes out of the shadow, and returns, the elements of `targets` whose unexpired reasons
    /// are all refused by `keep`; refused reasons of the elements that stay are dropped. An
    /// element with no unexpired reason stays (nothing says it was handed out for a name).
    public mutating func revocable(in targets: Set<SetTarget>, now: UInt64, keep: (UInt64) -> Bool) -> [SetElement] {
        var revoked: [SetElement] = []
        for index in tables.indices where targets.contains(tables[index].target) {
            let target = tables[index].target
            for (address, entry) in tables[index].entries {
                let live = entry.reasons.filter { $0.until > now }
                guard !live.isEmpty else { continue }
                let kept = live.filter { keep($0.key) }
                if kept.isEmpty {
                    tables[index].entries[address] = nil
                    revoked.append(SetElement(target: target, address: address, timeout: 1))
                } else if kept.count != entry.reasons.count {
                    tables[index].entries[address]?.reasons = kept
                }
            }
        }
        return revoked
    }

    /// Whether the shadow has an element for `address` in `target` (it was committed again).
    public func contains(_ address: IPAddress, in target: SetTarget) -> Bool {
        table(target).flatMap { tables[$0].entries[address] } != nil
    }

    /// The elements to commit for `elements` (see ``plan(_:now:)``), each set and address once
    /// with the longest timeout asked for: concurrent answers often share an address.
    public func plan(_ elements: [SetElement], now: UInt64) -> [SetElement] {
        var planned: [SetElement] = []
        planned.reserveCapacity(elements.count)
        forEachRun(of: elements) { target, run in
            guard let index = table(target) else { return planned.append(contentsOf: run) }
            let inner = tables[index].entries
            for element in run {
                if let wanted = plan(element, against: inner[element.address], now: now) { planned.append(wanted) }
            }
        }
        return Self.merged(planned)
    }

    /// `elements` with each set and address once, at its longest timeout, in first-seen order.
    /// A small open-addressing table of indices with a cheap seeded hash: the committer runs
    /// this for every element, and a `Dictionary` key of target and address cost ~400
    /// instructions each.
    static func merged(_ elements: [SetElement]) -> [SetElement] {
        guard elements.count > 1 else { return elements }
        var capacity = 16
        while capacity < elements.count * 2 { capacity <<= 1 }
        let mask = capacity - 1
        var unique: [SetElement] = []
        unique.reserveCapacity(elements.count)
        return withUnsafeTemporaryAllocation(of: Int32.self, capacity: capacity) { slots in
            slots.initialize(repeating: -1)
            for element in elements {
                var slot = Int(truncatingIfNeeded: element.address.mixedHash(seed: mergeSeed)) & mask
                while true {
                    let at = Int(slots[slot])
                    if at < 0 {
                        slots[slot] = Int32(unique.count)
                        unique.append(element)
                        break
                    }
                    if unique[at].address == element.address && unique[at].target == element.target {
                        unique[at].timeout = max(unique[at].timeout, element.timeout)
                        break
                    }
                    slot = (slot + 1) & mask
                }
            }
            return unique
        }
    }

    /// Per process, so that colliding addresses cannot be chosen in advance.
    static let mergeSeed = UInt64.random(in: 1...UInt64.max)

    /// Records a committed element.
    public mutating func committed(_ element: SetElement, now: UInt64) {
        committed([element], now: now)
    }

    /// Records committed elements (a set's inner table is looked up once per run of elements
    /// for the same set).
    public mutating func committed(_ elements: [SetElement], now: UInt64) {
        forEachRun(of: elements) { target, run in
            let index = tableMade(target)
            Self.record(run, now: now, in: &tables[index].entries)
        }
    }

    private static func record(_ run: ArraySlice<SetElement>, now: UInt64, in inner: inout [IPAddress: Entry]) {
        for element in run {
            // One lookup: the entry is updated in place, or made.
            let expiry = now + UInt64(element.timeout)
            inner[element.address, default: Entry(expiry: 0, confirmed: nil)].confirm(expiry: expiry, now: now)
        }
    }

    /// Calls `body` for each run of consecutive elements with the same target.
    private func forEachRun(of elements: [SetElement], _ body: (SetTarget, ArraySlice<SetElement>) -> Void) {
        var start = 0
        while start < elements.count {
            let target = elements[start].target
            var end = start + 1
            while end < elements.count, elements[end].target == target { end += 1 }
            body(target, elements[start..<end])
            start = end
        }
    }

    /// Seeds the shadow from a listing of the live set (restart: keep and never shorten what
    /// is already there).
    public mutating func seed(_ target: SetTarget, elements: [(IPAddress, UInt32)], now: UInt64) {
        for (address, remaining) in elements {
            committed(SetElement(target: target, address: address, timeout: remaining), now: now)
        }
    }

    /// Forgets everything about `target` (after a failure: the kernel state is unknown).
    public mutating func forget(_ target: SetTarget) {
        if let index = table(target) { tables.remove(at: index) }
    }

    /// Forgets that `addresses` are in the sets matching `predicate` (someone deleted them),
    /// keeping their expiry so a re-add still never shortens what a client was told.
    public mutating func forget(_ addresses: [IPAddress], inSetsWhere predicate: (SetTarget) -> Bool) {
        for index in tables.indices where predicate(tables[index].target) {
            for address in addresses { tables[index].entries[address]?.confirmed = nil }
        }
    }

    /// Forgets confirmation for every set matching `predicate` (a set or table was deleted).
    public mutating func forgetSets(where predicate: (SetTarget) -> Bool) {
        for index in tables.indices where predicate(tables[index].target) {
            tables[index].entries = tables[index].entries.mapValues { Entry(expiry: $0.expiry, confirmed: nil) }
        }
    }

    /// Drops expired entries.
    public mutating func prune(now: UInt64) {
        for index in tables.indices {
            tables[index].entries = tables[index].entries.filter { $0.value.expiry > now }
        }
    }

    public var count: Int { tables.reduce(0) { $0 + $1.entries.count } }
}
