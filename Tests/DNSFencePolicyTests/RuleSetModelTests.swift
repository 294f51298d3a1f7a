import DNSFenceCore
import DNSFencePolicy
import DNSFenceWire
import Testing

/// The rule index against a plain model: names as lower-case text in a dictionary, the query's
/// suffixes walked one by one. Seeded, so a failure repeats.
@Suite("Rule index model")
struct RuleSetModelTests {
    typealias Generator = SplitMix64

    /// A small alphabet and short labels, so that names and suffixes collide often; label
    /// lengths around 8 exercise the whole-word and tail paths of the hash.
    static func label(_ random: inout Generator) -> String {
        let letters = Array("abAB-9xy")
        let length = [1, 2, 3, 7, 8, 9, 16, 17][Int(random.next() % 8)]
        return String((0..<length).map { _ in letters[Int(random.next() % UInt64(letters.count))] })
    }

    static func name(_ random: inout Generator, pool: [String]) -> String {
        let labels = 1 + Int(random.next() % 4)
        return (0..<labels).map { _ in pool[Int(random.next() % UInt64(pool.count))] }.joined(separator: ".")
    }

    @Test("exact beats wildcard, longer suffix beats shorter, first rule wins, case is ignored", arguments: [1, 2, 3])
    func matchesModel(seed: UInt64) throws {
        var random = Generator(seed: seed)
        let labelPool = (0..<12).map { _ in Self.label(&random) }
        var rules: [PolicyRule] = []
        var exact: [String: Int] = [:]
        var wildcard: [String: Int] = [:]
        for line in 0..<400 {
            let text = Self.name(&random, pool: labelPool)
            let isWildcard = random.next() % 3 == 0
            let rule = PolicyRule(
                name: try DNSName(text), isWildcard: isWildcard, action: .pass, id: RuleID(file: "m", line: line))
            rules.append(rule)
            let key = text.lowercased()
            if isWildcard {
                if wildcard[key] == nil { wildcard[key] = line }
            } else if exact[key] == nil {
                exact[key] = line
            }
        }
        // The allow-all wildcard (`*.`) in one run.
        if seed == 2 {
            rules.append(PolicyRule(name: .root, isWildcard: true, action: .pass, id: RuleID(file: "m", line: 400)))
            wildcard[""] = 400
        }
        let set = RuleSet(rules)
        #expect(set.count == exact.count + wildcard.count)
        #expect(set.conflicts.count == rules.count - set.count)

        func model(_ text: String) -> Int? {
            let lower = text.lowercased()
            if let line = exact[lower] { return line }
            var labels = lower.split(separator: ".").map(String.init)
            while !labels.isEmpty {
                labels.removeFirst()
                if let line = wildcard[labels.joined(separator: ".")] { return line }
            }
            return nil
        }
        var matched = 0
        for _ in 0..<5_000 {
            var text = Self.name(&random, pool: labelPool + ["zz", "Q"])
            if random.next() % 2 == 0 { text = text.uppercased() }
            let expected = model(text)
            let got = set.match(try DNSName(text))?.id.line
            #expect(got == expected, "\(text)")
            if expected != nil { matched += 1 }
        }
        // The model is not vacuous: both hits and misses happen (with `*.` everything matches).
        #expect(matched > 500)
        #expect(seed == 2 ? matched == 5_000 : matched < 4_500)
    }
}

/// An index patched with ``RuleSet/applying(setting:removing:)`` answers every lookup as an
/// index built from scratch over the same rules would.
@Suite("Rule index patched by an IXFR")
struct RuleSetPatchTests {
    @Test("rounds of random changes: the patched index matches a fresh one", arguments: [7, 8, 9])
    func patchedMatchesFresh(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let labelPool = (0..<10).map { _ in RuleSetModelTests.label(&random) }
        // Pattern → rule, the model of what is in service.
        var model: [String: PolicyRule] = [:]
        func key(_ rule: PolicyRule) -> String { (rule.isWildcard ? "*." : "") + rule.name.description }
        var line = 0
        func rule() throws -> PolicyRule {
            line += 1
            let action: PolicyAction = random.next() % 2 == 0 ? .pass : .deny(.nxdomain)
            return PolicyRule(
                name: try DNSName(RuleSetModelTests.name(&random, pool: labelPool)).lowercased(),
                isWildcard: random.next() % 3 == 0, action: action, id: RuleID(file: "z", line: line))
        }
        var initial: [PolicyRule] = []
        for _ in 0..<300 {
            let r = try rule()
            if model[key(r)] == nil {
                model[key(r)] = r
                initial.append(r)
            }
        }
        var patched = RuleSet(initial)
        for _ in 0..<20 {
            var setting: [PolicyRule] = []
            var removing: [(name: DNSName, wildcard: Bool)] = []
            var touched: Set<String> = []
            for _ in 0..<15 {
                if random.next() % 2 == 0, let victim = model.values.randomElement(using: &random),
                    touched.insert(key(victim)).inserted
                {
                    removing.append((victim.name, victim.isWildcard))
                    model[key(victim)] = nil
                } else {
                    let r = try rule()
                    guard touched.insert(key(r)).inserted else { continue }
                    setting.append(r)
                    model[key(r)] = r
                }
            }
            patched = patched.applying(setting: setting, removing: removing)
            #expect(patched.count == model.count)
            let fresh = RuleSet(Array(model.values))
            for _ in 0..<400 {
                let name = try DNSName(RuleSetModelTests.name(&random, pool: labelPool))
                #expect(patched.match(name)?.id == fresh.match(name)?.id, "\(name)")
            }
        }
    }
}

@Suite("Policy patched by an IXFR")
struct PolicyPatchTests {
    @Test("a wildcard pass rule an IXFR adds gets its tunnel budget; removed rules decide nothing")
    func budgetsAndRemovals() throws {
        let compiled = try PolicyCompiler().compile(
            name: "p",
            sources: [PolicySource(file: "a.allow", text: "*.cdn.example\nold.example\nkeep.example\n", format: .list)])
        let patched = PolicyCompiler().patch(
            compiled.policy,
            setting: [
                PolicyRule(
                    name: try DNSName("api.example"), isWildcard: true, action: .pass, id: RuleID(file: "x", line: 1))
            ],
            removing: [(try DNSName("old.example"), false)],
            ruleBudgets: ["*.api.example": TunnelBudget(names: 7, window: 60, burst: 7, maxLabel: 63, maxName: 100)]
        ).policy
        #expect(patched.rules.count == 3)
        guard case .pass(_, let budget?) = patched.decide(DNSQuestion(name: try DNSName("a.api.example"), type: .a))
        else {
            Issue.record("the added wildcard passes with a budget")
            return
        }
        #expect(budget.limits.names == 7)
        guard case .pass(_, let kept?) = patched.decide(DNSQuestion(name: try DNSName("x.cdn.example"), type: .a))
        else {
            Issue.record("the old wildcard keeps its budget")
            return
        }
        #expect(kept.limits == .standard)
        guard case .deny = patched.decide(DNSQuestion(name: try DNSName("old.example"), type: .a)) else {
            Issue.record("a removed name is denied")
            return
        }
        guard case .pass = patched.decide(DNSQuestion(name: try DNSName("keep.example"), type: .a)) else {
            Issue.record("an untouched name still passes")
            return
        }
    }
}
