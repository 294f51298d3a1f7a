import DNSFenceCore
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
        warnings += wildcardWarnings(set.rules)
        let (audited, unmatched) = Self.audited(auditedPatterns, in: set)
        let (budgets, unmatchedBudgets) = Self.budgets(
            policy: name, rules: set, default: budget, overrides: ruleBudgets)
        return Output(
            policy: Policy(
                name: name, rules: set, allowedTypes: allowedTypes, denyResponse: denyResponse, audit: audit,
                auditedRules: audited, strictCNAMETargets: strictCNAMETargets, ruleBudgets: budgets),
            warnings: warnings, unmatchedAudits: unmatched, unmatchedBudgets: unmatchedBudgets
        )
    }

    /// `policy` with an IXFR's changes: `setting` put in, the patterns of `removing` gone,
    /// through ``RuleSet/applying(setting:removing:)`` (no index built again). The policy's
    /// settings are the same as when it was compiled; budgets and audited rules are found again
    /// over the rules (a pass over them, no parsing or hashing).
    public func patch(
        _ policy: Policy, setting: [PolicyRule], removing: [(name: DNSName, wildcard: Bool)],
        auditedPatterns: [String] = [], budget: TunnelBudget? = .standard, ruleBudgets: [String: TunnelBudget?] = [:]
    ) -> Output {
        let set = policy.rules.applying(setting: setting, removing: removing)
        let (audited, unmatched) = Self.audited(auditedPatterns, in: set)
        var budgets: [RuleBudget?] = []
        if set.carried != policy.rules.rules.count {
            // Built again from scratch: every rule's budget again.
            budgets = Self.budgets(policy: policy.name, rules: set, default: budget, overrides: ruleBudgets).budgets
        } else {
            // The old rules kept their places: their budgets stand; the appended ones get theirs.
            let appended = policy.rules.rules.count..<set.rules.count
            budgets = policy.ruleBudgets.isEmpty ? [] : policy.ruleBudgets
            let added = Self.budgets(
                policy: policy.name, rules: set, in: appended, default: budget, overrides: ruleBudgets)
            if budgets.isEmpty && added.contains(where: { $0 != nil }) {
                budgets = Array(repeating: nil, count: policy.rules.rules.count)
            }
            if !budgets.isEmpty { budgets += added }
        }
        return Output(
            policy: Policy(
                name: policy.name, rules: set, allowedTypes: policy.allowedTypes, denyResponse: policy.denyResponse,
                audit: policy.audit, auditedRules: audited, strictCNAMETargets: policy.strictCNAMETargets,
                ruleBudgets: budgets),
            warnings: wildcardWarnings(setting), unmatchedAudits: unmatched)
    }

    /// Wildcards that allow too much: everything, or the names under a public suffix.
    func wildcardWarnings(_ rules: [PolicyRule]) -> [PolicyWarning] {
        var warnings: [PolicyWarning] = []
        for rule in rules where rule.isWildcard && rule.action != .deny(nil) {
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
        return warnings
    }

    /// Audited deny rules, by pattern as written (`tracker.example.org`, `*.ads.example`).
    static func audited(_ patterns: [String], in set: RuleSet) -> (Set<RuleID>, [String]) {
        var audited: Set<RuleID> = []
        var unmatched: [String] = []
        for text in patterns {
            let pattern = text.absoluteLowercased
            let found = set.rules.indices.filter { index in
                guard case .deny = set.rules[index].action, !set.retired.contains(Int32(index)) else { return false }
                return set.rules[index].pattern.lowercased() == pattern
            }
            if found.isEmpty { unmatched.append(text) }
            audited.formUnion(found.map { set.rules[$0].id })
        }
        return (audited, unmatched)
    }

    /// The tunnel budget of every wildcard pass rule (`overrides` by pattern as written, nil
    /// for `off`; else `default`), by rule position; empty when no rule has one. Also the
    /// patterns of `overrides` that name no wildcard pass rule.
    static func budgets(
        policy: String, rules: RuleSet, default: TunnelBudget?, overrides: [String: TunnelBudget?]
    ) -> (budgets: [RuleBudget?], unmatched: [String]) {
        var found: Set<String> = []
        let budgets = Self.budgets(
            policy: policy, rules: rules, in: 0..<rules.rules.count, default: `default`, overrides: overrides,
            found: &found)
        let unmatched = overrides.keys.filter {
            !found.contains($0.absoluteLowercased)
        }.sorted()
        return (budgets.contains { $0 != nil } ? budgets : [], unmatched)
    }

    /// The budgets of the rules at `positions` (one slot each, nil for rules without one).
    static func budgets(
        policy: String, rules: RuleSet, in positions: Range<Int>, default: TunnelBudget?,
        overrides: [String: TunnelBudget?]
    ) -> [RuleBudget?] {
        var found: Set<String> = []
        return budgets(
            policy: policy, rules: rules, in: positions, default: `default`, overrides: overrides, found: &found)
    }

    private static func budgets(
        policy: String, rules: RuleSet, in positions: Range<Int>, default: TunnelBudget?,
        overrides: [String: TunnelBudget?], found: inout Set<String>
    ) -> [RuleBudget?] {
        var byPattern: [String: TunnelBudget?] = [:]
        for (text, budget) in overrides {
            byPattern[text.absoluteLowercased] = budget
        }
        var budgets: [RuleBudget?] = Array(repeating: nil, count: positions.count)
        for index in positions {
            let rule = rules.rules[index]
            guard rule.isWildcard && rule.action == .pass && !rules.retired.contains(Int32(index)) else { continue }
            let limits: TunnelBudget?
            if let override = byPattern[rule.pattern] {
                found.insert(rule.pattern)
                limits = override
            } else {
                limits = `default`
            }
            guard let limits else { continue }
            budgets[index - positions.lowerBound] = RuleBudget(
                limits: limits, rule: Int32(index), suffixLength: rule.name.wire.count,
                key: RuleBudget.key(policy: policy, pattern: rule.pattern))
        }
        return budgets
    }
}
