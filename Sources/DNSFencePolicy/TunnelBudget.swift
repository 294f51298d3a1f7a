/// How much a client may tunnel through one wildcard pass rule: DNS names are data, and a
/// wildcard lets a client make up as many as it likes, each one carried to an upstream (and on
/// to whoever serves the zone). An exact name cannot tunnel (its labels are fixed), so only
/// wildcard pass rules have a budget.
///
/// - `names` *novel* names below the wildcard per `window` seconds, per client, from a token
///   bucket that holds at most `burst`; a name the client had forwarded within the last window
///   costs nothing, so a CDN or an API with a few hundred hostnames is unaffected.
/// - No label longer than `maxLabel`, and at most `maxName` characters below the wildcard
///   (dots included: `a.b` below `*.example.org` is 3).
/// - With `denyEncoded`, no label that looks like encoded data (``EncodedLabel``).
public struct TunnelBudget: Hashable, Sendable {
    public var names: UInt32
    public var window: UInt32
    public var burst: UInt32
    public var maxLabel: Int
    public var maxName: Int
    public var denyEncoded: Bool

    /// The default of every wildcard pass rule (docs/configuration.md, "Tunnel budgets"): 300
    /// new names per 5 minutes, 100 at once, labels up to the protocol's 63 bytes and 100
    /// characters below the wildcard.
    public static let standard = TunnelBudget(names: 300, window: 300, burst: 100, maxLabel: 63, maxName: 100)

    public init(
        names: UInt32, window: UInt32, burst: UInt32, maxLabel: Int, maxName: Int, denyEncoded: Bool = false
    ) {
        self.names = names
        self.window = window
        self.burst = burst
        self.maxLabel = maxLabel
        self.maxName = maxName
        self.denyEncoded = denyEncoded
    }

    /// `5m`, `1h`: the window as an operator writes it.
    public var windowText: String {
        if window % 3600 == 0 { return "\(window / 3600)h" }
        if window % 60 == 0 { return "\(window / 60)m" }
        return "\(window)s"
    }
}

/// A budget as compiled onto one rule of one policy.
public struct RuleBudget: Hashable, Sendable {
    public var limits: TunnelBudget
    /// The rule's position in the policy's ``RuleSet/rules``.
    public var rule: Int32
    /// The wire length of the wildcard's parent name: what lies below it is the query name's
    /// first `count - suffixLength` bytes.
    public var suffixLength: Int
    /// Stable across reloads for the same policy name and pattern (FNV-1a), so that a reload
    /// keeps every client's spending.
    public var key: UInt64

    public init(limits: TunnelBudget, rule: Int32, suffixLength: Int, key: UInt64) {
        self.limits = limits
        self.rule = rule
        self.suffixLength = suffixLength
        self.key = key
    }

    /// The key of `pattern`'s budget in the policy named `policy`.
    public static func key(policy: String, pattern: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in policy.utf8 + [0] + pattern.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        return hash
    }

    /// Which limit on its shape `wire` (a name the rule matched, validated, lower-cased)
    /// breaks, if any: a length, or a label that looks encoded.
    public func shapeExcess(_ wire: UnsafeRawBufferPointer) -> ShapeExcess? {
        let below = wire.count - suffixLength
        guard below > 0 else { return nil }
        if below - 1 > limits.maxName { return .name }
        if limits.maxLabel < 63 {
            var at = 0
            while at < below {
                let length = Int(wire[at])
                if length > limits.maxLabel { return .label }
                at += length + 1
            }
        }
        if limits.denyEncoded, EncodedLabel.judge(wire: wire, below: below) != nil { return .encoded }
        return nil
    }

    public enum ShapeExcess: Sendable {
        case label
        case name
        case encoded
    }
}

extension Policy {
    /// The text of an EDE for a denial under `budget`: which rule's budget, and which limit.
    public func budgetText(_ budget: RuleBudget, _ limit: BudgetLimit) -> String {
        let rule = rules.rules[Int(budget.rule)]
        let limits = budget.limits
        let why: String
        switch limit {
        case .names: why = "more than \(limits.names) new names per \(limits.windowText) (burst \(limits.burst))"
        case .label: why = "a label longer than \(limits.maxLabel)"
        case .name: why = "more than \(limits.maxName) characters below the wildcard"
        case .encoded: why = "a label that looks like encoded data (deny-encoded)"
        case .clients: why = "too many clients to keep budgets for"
        }
        return "dnsfence: policy \(name): tunnel budget of \(rule.pattern) (\(rule.id)): \(why)"
    }
}

/// Which limit of a tunnel budget a query ran into (the `limit` label of
/// `dnsfence_budget_denials_total`).
public enum BudgetLimit: String, Sendable, CaseIterable {
    /// No new name left in the window.
    case names
    case label
    case name
    /// A label below the wildcard looks like encoded data (``TunnelBudget/denyEncoded``).
    case encoded
    /// The ledger holds as many clients as it may, and this one is new: fail closed.
    case clients
}
