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
        guard let rule = rules.match(question.name) else {
            return .deny(response: denyResponse, error: notAllowlisted, rule: nil)
        }
        switch rule.action {
        case .deny(let response):
            return .deny(
                response: response ?? denyResponse,
                error: ExtendedDNSError(ExtendedDNSError.blocked, "dnsfence: policy \(name): denied by \(rule.id)"),
                rule: rule.id
            )
        case .pass, .localData:
            guard allowedTypes.contains(question.type) else {
                return .deny(
                    response: .nodata,
                    error: ExtendedDNSError(
                        ExtendedDNSError.filtered,
                        "dnsfence: policy \(name): type \(question.type) not allowed (\(rule.id))"
                    ),
                    rule: rule.id
                )
            }
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
}
