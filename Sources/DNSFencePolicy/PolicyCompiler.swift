public import DNSFenceWire

/// Compiles policy sources into a ``Policy`` and collects the warnings a careful operator
/// wants to see (`dnsfence check`).
public struct PolicyCompiler: Sendable {
    public var publicSuffixes: PublicSuffixList

    public init(publicSuffixes: PublicSuffixList = .embedded) {
        self.publicSuffixes = publicSuffixes
    }

    /// The compiled policy and what looked suspicious.
    public struct Output: Sendable {
        public var policy: Policy
        public var warnings: [PolicyWarning]
        /// Patterns of `auditedPatterns` that name no deny rule of the policy.
        public var unmatchedAudits: [String] = []
        /// Patterns of `ruleBudgets` that name no wildcard pass rule of the policy.
        public var unmatchedBudgets: [String] = []
    }

    /// Reads every source (first error aborts the whole policy) and indexes the rules.
    public func compile(
        name: String, sources: [PolicySource], extraRules: [PolicyRule] = [],
        allowedTypes: Set<DNSType> = Policy.defaultTypes, denyResponse: DenyResponse = .nxdomain, audit: Bool = false,
        auditedPatterns: [String] = [], strictCNAMETargets: Bool = false,
        budget: TunnelBudget? = .standard, ruleBudgets: [String: TunnelBudget?] = [:]
    ) throws(PolicyLoadError) -> Output {
        var rules = extraRules
        for source in sources {
            rules += try RuleParser.rules(from: source)
        }
        let set = RuleSet(rules)
        var warnings: [PolicyWarning] = []
        for conflict in set.conflicts {
            let same = conflict.kept.action == conflict.ignored.action
            warnings.append(
                PolicyWarning(
                    file: conflict.ignored.id.file, line: conflict.ignored.id.line,
                    message: same
                        ? "duplicate rule \(conflict.ignored.pattern) (already at \(conflict.kept.id))"
                        : "rule \(conflict.ignored.pattern) (\(conflict.ignored.action.label)) conflicts with "
                            + "\(conflict.kept.id) (\(conflict.kept.action.label)); the earlier rule wins"
                ))
        }
        for rule in set.rules where rule.isWildcard && rule.action != .deny(nil) {
            if case .deny = rule.action { continue }
            if rule.name.isRoot {
                warnings.append(
                    PolicyWarning(
                        file: rule.id.file, line: rule.id.line,
                        message: "'\(rule.pattern)' allows every name: the policy filters nothing"
                    ))
            } else if publicSuffixes.isPublicSuffix(rule.name) {
                warnings.append(
                    PolicyWarning(
                        file: rule.id.file, line: rule.id.line,
                        message: "'\(rule.pattern)' is a wildcard on the public suffix '\(rule.name)': "
                            + "it allows names of unrelated owners"
                    ))
            }
        }
        // Audited deny rules, by pattern as written (`tracker.example.org`, `*.ads.example`).
        var audited: Set<RuleID> = []
        var unmatched: [String] = []
        for text in auditedPatterns {
            let pattern = (text.hasSuffix(".") ? text : text + ".").lowercased()
            let found = set.rules.filter { rule in
                if case .deny = rule.action { return rule.pattern.lowercased() == pattern }
                return false
            }
            if found.isEmpty { unmatched.append(text) }
            audited.formUnion(found.map(\.id))
        }
        let (budgets, unmatchedBudgets) = Self.budgets(
            policy: name, rules: set, default: budget, overrides: ruleBudgets)
        return Output(
            policy: Policy(
                name: name, rules: set, allowedTypes: allowedTypes, denyResponse: denyResponse, audit: audit,
                auditedRules: audited, strictCNAMETargets: strictCNAMETargets, ruleBudgets: budgets),
            warnings: warnings, unmatchedAudits: unmatched, unmatchedBudgets: unmatchedBudgets
        )
    }

    /// The tunnel budget of every wildcard pass rule (`overrides` by pattern as written, nil
    /// for `off`; else `default`), by rule position; empty when no rule has one. Also the
    /// patterns of `overrides` that name no wildcard pass rule.
    static func budgets(
        policy: String, rules: RuleSet, default: TunnelBudget?, overrides: [String: TunnelBudget?]
    ) -> (budgets: [RuleBudget?], unmatched: [String]) {
        var byPattern: [String: TunnelBudget?] = [:]
        for (text, budget) in overrides {
            byPattern[(text.hasSuffix(".") ? text : text + ".").lowercased()] = budget
        }
        var found: Set<String> = []
        var budgets: [RuleBudget?] = Array(repeating: nil, count: rules.count)
        for (index, rule) in rules.rules.enumerated() where rule.isWildcard && rule.action == .pass {
            let limits: TunnelBudget?
            if let override = byPattern[rule.pattern] {
                found.insert(rule.pattern)
                limits = override
            } else {
                limits = `default`
            }
            guard let limits else { continue }
            budgets[index] = RuleBudget(
                limits: limits, rule: Int32(index), suffixLength: rule.name.wire.count,
                key: RuleBudget.key(policy: policy, pattern: rule.pattern))
        }
        let unmatched = overrides.keys.filter {
            !found.contains(($0.hasSuffix(".") ? $0 : $0 + ".").lowercased())
        }.sorted()
        return (budgets.contains { $0 != nil } ? budgets : [], unmatched)
    }
}
