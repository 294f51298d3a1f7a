// DNSFencePolicy: allowlist rules, name matching and the per-query decision. No I/O: callers
// hand in the text of the zone files and lists, and get an immutable `Policy` back.

public import DNSFenceWire

/// How a denied query is answered (DESIGN.md, "Policy").
public enum DenyResponse: String, Hashable, Sendable, CaseIterable {
    /// NXDOMAIN: the name does not exist. The default: musl stops walking its search list on REFUSED.
    case nxdomain
    /// NOERROR with an empty answer.
    case nodata
    /// REFUSED.
    case refused
    /// No answer at all.
    case drop

    /// The RCODE of the answer, or nil for `drop` (no answer).
    public var rcode: DNSRCode? {
        switch self {
        case .nxdomain: return .nxDomain
        case .nodata: return .noError
        case .refused: return .refused
        case .drop: return nil
        }
    }
}

/// What a rule does with a matching name.
public enum PolicyAction: Hashable, Sendable {
    /// Forward upstream; addresses in the answer are published to the firewall sets.
    case pass
    /// Answer from local data (for example a rewrite to a proxy address). Owner names are the
    /// rule's name; the decision rewrites them to the name asked.
    case localData([DNSRecord])
    /// Deny with this response; nil means the policy's configured default.
    case deny(DenyResponse?)

    /// Short label for metrics and logs (bounded).
    public var label: String {
        switch self {
        case .pass: return "pass"
        case .localData: return "local"
        case .deny: return "deny"
        }
    }
}

/// Where a rule came from: `file:line`, stable across reloads of the same file.
public struct RuleID: Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int

    public init(file: String, line: Int) {
        self.file = file
        self.line = line
    }

    public var description: String { "\(file):\(line)" }
}

/// One rule: a name or a `*.` wildcard (subdomains only, not the name itself), an action and
/// the place it was written.
public struct PolicyRule: Hashable, Sendable, CustomStringConvertible {
    /// The name, lower-cased; for a wildcard, the name below which it matches.
    public var name: DNSName
    public var isWildcard: Bool
    public var action: PolicyAction
    public var id: RuleID

    public init(name: DNSName, isWildcard: Bool, action: PolicyAction, id: RuleID) {
        self.name = name.lowercased()
        self.isWildcard = isWildcard
        self.action = action
        self.id = id
    }

    /// The pattern as written in a plain list: `*.example.org.` or `example.org.`.
    public var pattern: String {
        isWildcard ? (name.isRoot ? "*." : "*.\(name)") : name.description
    }

    public var description: String { "\(pattern) \(action.label) (\(id))" }
}
