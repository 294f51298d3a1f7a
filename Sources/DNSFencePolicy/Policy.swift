public import DNSFenceWire

/// One named policy, compiled and immutable: rules, allowed query types and the deny response.
/// A class, so handing it to each query is one reference count, not a copy of every field.
public final class Policy: Sendable {
    /// The query types a policy allows by default (DESIGN.md).
    public static let defaultTypes: Set<DNSType> = [.a, .aaaa, .cname, .https]

    public let name: String
    public let rules: RuleSet
    public let allowedTypes: Set<DNSType>
    public let denyResponse: DenyResponse
    /// `mode: audit`: what this policy would deny is answered as allowed (and published), and
    /// logged and counted as a would-be denial.
    public let audit: Bool
    /// Deny rules audited in an enforcing policy (`audit: [PATTERN]`): what they deny is
    /// answered, and logged as a would-be denial, to try a tighter rule in production.
    public let auditedRules: Set<RuleID>
    /// `cname-targets: strict`: every target of a forwarded answer's CNAME chain must be
    /// allowed itself (default `follow`: only explicitly denied targets end the chain).
    public let strictCNAMETargets: Bool
    /// The tunnel budget of each rule, by position in ``rules`` (empty: no rule has one).
    public let ruleBudgets: [RuleBudget?]
    /// Whether a denial under `rule` (nil: the default) is audited rather than enforced.
    @inline(__always)
    public func audits(_ rule: RuleID?) -> Bool {
        audit || (!auditedRules.isEmpty && rule.map(auditedRules.contains) == true)
    }

    /// Why this policy sends queries to an upstream, or nil when it answers everything itself
    /// (only local data and denials, enforced): a configuration without upstreams is an error
    /// only for a policy with a reason.
    public var forwardingReason: String? {
        if audit || !auditedRules.isEmpty { return "audits denials (audited names are forwarded)" }
        guard let pass = rules.rules.first(where: { $0.action == .pass }) else { return nil }
        return "passes names through to an upstream (\(pass.isWildcard ? "*." : "")\(pass.name))"
    }

    /// The EDE for names no rule covers, built once (it is on every default-deny answer).
    private let notAllowlisted: ExtendedDNSError

    public init(
        name: String, rules: RuleSet, allowedTypes: Set<DNSType> = Policy.defaultTypes,
        denyResponse: DenyResponse = .nxdomain, audit: Bool = false, auditedRules: Set<RuleID> = [],
        strictCNAMETargets: Bool = false, ruleBudgets: [RuleBudget?] = []
    ) {
        precondition(ruleBudgets.isEmpty || ruleBudgets.count == rules.rules.count, "one budget slot per rule")
        self.ruleBudgets = ruleBudgets
        self.strictCNAMETargets = strictCNAMETargets
        self.audit = audit
        self.auditedRules = auditedRules
        self.name = name
        self.rules = rules
        self.allowedTypes = allowedTypes
        self.denyResponse = denyResponse
        self.notAllowlisted = ExtendedDNSError(ExtendedDNSError.blocked, "dnsfence: policy \(name): not allowlisted")
    }

    /// Decides what to do with a question whose name is given as wire bytes (uncompressed, any
    /// letter case, validated: labels ≤ 63, ≤ 255 bytes, ending with the root label). The one
    /// lookup of the policy: every query, on every path, is decided here. Default deny.
    ///
    /// - A name a wildcard pass rule covers carries the rule's tunnel budget, which the server
    ///   charges when the name is forwarded (``TunnelBudget``).
    /// - A name no rule covers is denied with the policy's response and EDE 15 (Blocked).
    /// - A deny rule answers with its own response (or the policy's) and EDE 15.
    /// - A type outside ``allowedTypes`` for an otherwise allowed name gets NODATA and EDE 17
    ///   (Filtered), so the name still exists for the types that are allowed.
    /// - Local data answers with the records of the asked type, or with a CNAME the name has;
    ///   no record of that type means NODATA, not NXDOMAIN. Their owner is the rule's name:
    ///   the answer renames them to the name as asked.
    public func decide(wire: UnsafeRawBufferPointer, type: DNSType) -> PolicyDecision {
        guard let index = rules.matchIndex(wire: wire) else { return defaultDeny }
        let rule = rules.rules[index]
        switch rule.action {
        case .deny(let response):
            return deniedByRule(rule, response: response)
        case .pass:
            guard allowedTypes.contains(type) else { return filtered(rule, type: type) }
            return .pass(rule: rule.id, budget: ruleBudgets.isEmpty ? nil : ruleBudgets[index])
        case .localData(let records):
            guard allowedTypes.contains(type) else { return filtered(rule, type: type) }
            return .localData(records: Self.localAnswer(records, type: type), rule: rule.id)
        }
    }

    /// ``decide(wire:type:)`` for a question, with local data renamed to the name asked.
    public func decide(_ question: DNSQuestion) -> PolicyDecision {
        let decision = question.name.wire.withUnsafeBytes { decide(wire: $0, type: question.type) }
        guard case .localData(let records, let rule) = decision else { return decision }
        return .localData(records: records.map { $0.renamed(question.name) }, rule: rule)
    }

    /// The local records that answer `type`: a CNAME the name has, else the records of that type.
    private static func localAnswer(_ records: [DNSRecord], type: DNSType) -> [DNSRecord] {
        if records.contains(where: { $0.type == .cname }) { return records.filter { $0.type == .cname } }
        if records.allSatisfy({ $0.type == type }) { return records }
        return records.filter { $0.type == type }
    }

    private var defaultDeny: PolicyDecision { .deny(response: denyResponse, error: notAllowlisted, rule: nil) }

    private func deniedByRule(_ rule: PolicyRule, response: DenyResponse?) -> PolicyDecision {
        .deny(
            response: response ?? denyResponse,
            error: ExtendedDNSError(ExtendedDNSError.blocked, "dnsfence: policy \(name): denied by \(rule.id)"),
            rule: rule.id)
    }

    private func filtered(_ rule: PolicyRule, type: DNSType) -> PolicyDecision {
        .deny(
            response: .nodata,
            error: ExtendedDNSError(
                ExtendedDNSError.filtered, "dnsfence: policy \(name): type \(type) not allowed (\(rule.id))"),
            rule: rule.id)
    }

    /// What an upstream's answer may do whose CNAME chain runs through `targets` (wire names,
    /// in the order of the answer section) for a question of `type`: a target an explicit deny
    /// rule covers ends the chain with that rule's denial (as BIND's RPZ does for CNAME
    /// targets), and none of its addresses are handed out; a target no rule covers is followed
    /// (CDN chains need it); a loop, an unreadable target or more than 16 links is broken.
    public func judgeChain(question: [UInt8], targets: [[UInt8]?], type: DNSType) -> ChainVerdict {
        guard targets.count <= 16 else { return .broken("a CNAME chain longer than 16 links") }
        func folded(_ wire: [UInt8]) -> [UInt8] {
            var bytes = wire
            DNSName.foldCase(&bytes)
            return bytes
        }
        var seen: Set<[UInt8]> = [folded(question)]
        for target in targets {
            guard let target else { return .broken("an unreadable CNAME target") }
            guard seen.insert(folded(target)).inserted else { return .broken("a CNAME loop") }
            let decision = target.withUnsafeBytes { decide(wire: $0, type: type) }
            if case .deny(let response, _, let rule) = decision, rule != nil || strictCNAMETargets {
                let name = (try? DNSName(wire: target))?.description ?? "?"
                let why = rule.map { "denied by \($0)" } ?? "not allowlisted (cname-targets: strict)"
                return .denied(
                    response,
                    ExtendedDNSError(
                        ExtendedDNSError.blocked, "dnsfence: policy \(self.name): CNAME target \(name) \(why)"),
                    rule)
            }
        }
        return .follow
    }
}

/// See ``Policy/judgeChain(question:targets:type:)``.
public enum ChainVerdict: Sendable {
    case follow
    /// The rule that denies the target (nil: no rule allows it, under `cname-targets: strict`).
    case denied(DenyResponse, ExtendedDNSError, RuleID?)
    case broken(String)
}
