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
    /// The EDE for names no rule covers, built once (it is on every default-deny answer).
    private let notAllowlisted: ExtendedDNSError

    public init(
        name: String, rules: RuleSet, allowedTypes: Set<DNSType> = Policy.defaultTypes,
        denyResponse: DenyResponse = .nxdomain
    ) {
        self.name = name
        self.rules = rules
        self.allowedTypes = allowedTypes
        self.denyResponse = denyResponse
        self.notAllowlisted = ExtendedDNSError(ExtendedDNSError.blocked, "dnsfence: policy \(name): not allowlisted")
    }

    /// Decides what to do with `question`. Default deny.
    ///
    /// - A name no rule covers is denied with the policy's response and EDE 15 (Blocked).
    /// - A deny rule answers with its own response (or the policy's) and EDE 15.
    /// - A type outside ``allowedTypes`` for an otherwise allowed name gets NODATA and EDE 17
    ///   (Filtered), so the name still exists for the types that are allowed.
    /// - Local data answers with the records of the asked type, or with a CNAME the name has;
    ///   no record of that type means NODATA, not NXDOMAIN.
    public func decide(_ question: DNSQuestion) -> PolicyDecision {
        guard let rule = rules.match(question.name) else { return defaultDeny }
        switch rule.action {
        case .deny(let response):
            return deniedByRule(rule, response: response)
        case .pass, .localData:
            guard allowedTypes.contains(question.type) else { return filtered(rule, type: question.type) }
            guard case .localData(let records) = rule.action else { return .pass(rule: rule.id) }
            let cname = records.filter { $0.type == .cname }
            let chosen = cname.isEmpty ? records.filter { $0.type == question.type } : cname
            let answers = chosen.map { record in
                var copy = record
                copy.name = question.name
                return copy
            }
            return .localData(records: answers, rule: rule.id)
        }
    }

    /// ``decide(_:)`` for a name given as wire bytes (any letter case), with no ``DNSName``
    /// made, for the byte-level fast path: a denial or a pass. Nil for local data (its records
    /// carry the name as asked: the caller takes the full path).
    public func quickDecision(wire: UnsafeRawBufferPointer, type: DNSType) -> PolicyDecision? {
        guard let rule = rules.match(wire: wire) else { return defaultDeny }
        switch rule.action {
        case .deny(let response): return deniedByRule(rule, response: response)
        case .pass, .localData:
            guard allowedTypes.contains(type) else { return filtered(rule, type: type) }
            guard case .pass = rule.action else { return nil }
            return .pass(rule: rule.id)
        }
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
}
