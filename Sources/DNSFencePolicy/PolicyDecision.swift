public import DNSFenceWire

/// The outcome of matching one question against a policy: what the server does next.
public enum PolicyDecision: Hashable, Sendable {
    /// Forward upstream under `rule`, charging `budget` (a wildcard's tunnel budget) for it.
    case pass(rule: RuleID, budget: RuleBudget?)
    /// Answer locally with `records` (owners already set to the name asked). An empty list
    /// means NODATA: the name exists in local data, but not with this type.
    case localData(records: [DNSRecord], rule: RuleID)
    /// Answer with `response` and this Extended DNS Error; `rule` is nil for default deny.
    case deny(response: DenyResponse, error: ExtendedDNSError, rule: RuleID?)

    /// Bounded label for metrics: `pass`, `local` or `deny`.
    public var actionLabel: String {
        switch self {
        case .pass: return "pass"
        case .localData: return "local"
        case .deny: return "deny"
        }
    }

    /// The rule behind the decision, if any.
    public var rule: RuleID? {
        switch self {
        case .pass(let rule, _), .localData(_, let rule): return rule
        case .deny(_, _, let rule): return rule
        }
    }
}
