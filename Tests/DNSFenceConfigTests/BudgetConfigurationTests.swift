import DNSFenceConfig
import DNSFenceCore
import DNSFencePolicy
import Testing

@Suite("Configuration: tunnel budgets")
struct BudgetConfigurationTests {
    static let files = [
        "list.allow": "*.example.org\n*.cdn.example.net\n*.open.example\napi.example.com\n",
        "deny.rpz": "$TTL 60\n@ SOA a. b. 1 2 3 4 5\n*.ads.example.org CNAME .\n",
    ]

    static func compile(_ policy: String) throws(ConfigurationError) -> CompiledConfiguration {
        let yaml = """
            listen: [{ address: 127.0.0.1:5353, policy: p }]
            upstreams: [192.0.2.53]
            policies:
              p:
                zones: [list.allow, deny.rpz]

            """ + policy
        let config = try ConfigurationParser.parse(yaml, file: "b.yaml")
        return try ConfigurationCompiler(readFile: reader(files)).compile(config)
    }

    /// The budget of each wildcard pass rule, by pattern.
    static func budgets(_ policy: String) throws -> [String: TunnelBudget] {
        let compiled = try compile(policy)
        let p = try #require(compiled.selector.select(client: IPAddress("127.0.0.1")!, listenerPolicy: "p"))
        var out: [String: TunnelBudget] = [:]
        for (index, budget) in p.ruleBudgets.enumerated() {
            if let budget { out[p.rules.rules[index].pattern] = budget.limits }
        }
        return out
    }

    @Test("every wildcard pass rule has the default budget; exact names and deny rules have none")
    func defaults() throws {
        #expect(
            try Self.budgets("")
                == [
                    "*.example.org.": .standard, "*.cdn.example.net.": .standard, "*.open.example.": .standard,
                ])
    }

    @Test("a policy's budget, per-rule budgets over it, and off")
    func overrides() throws {
        let budgets = try Self.budgets(
            """
                budget: { names: 50, per: 1m, max-label: 40 }
                budgets:
                  "*.cdn.example.net": { names: 2000, burst: 500, deny-encoded: true }
                  "*.open.example": off
            """)
        let policy = TunnelBudget(names: 50, window: 60, burst: 50, maxLabel: 40, maxName: 100)
        #expect(budgets["*.example.org."] == policy)
        #expect(
            budgets["*.cdn.example.net."]
                == TunnelBudget(names: 2000, window: 60, burst: 500, maxLabel: 40, maxName: 100, denyEncoded: true))
        #expect(!TunnelBudget.standard.denyEncoded, "off by default")
        #expect(budgets["*.open.example."] == nil)
        #expect(try Self.budgets("    budget: off\n").isEmpty)
    }

    @Test("every mistake is reported at its line")
    func errors() {
        func diagnostics(_ policy: String) -> [String] {
            do {
                _ = try Self.compile(policy)
                return []
            } catch {
                return error.diagnostics.map(\.description)
            }
        }
        #expect(
            diagnostics("    budget: { names: 0, per: 2d, burst: many, max-label: 64, max-name: 300, rate: 3 }\n") == [
                "b.yaml:6:22: error: budget names must be a whole number from 1 to 1000000, got '0'",
                "b.yaml:6:30: error: budget per must be from 1s to 1d",
                "b.yaml:6:41: error: budget burst must be a whole number from 1 to 1000000, got 'many'",
                "b.yaml:6:58: error: budget max-label must be a whole number from 1 to 63, got '64'",
                "b.yaml:6:72: error: budget max-name must be a whole number from 1 to 253, got '300'",
                "b.yaml:6:77: error: unknown key 'rate' in budget; known keys: names, per, burst, max-label, max-name, deny-encoded",
            ])
        #expect(
            diagnostics("    budget: sometimes\n") == [
                "b.yaml:6:13: error: budget must be 'off' or a mapping like { names: 300, per: 5m }"
            ])
        #expect(
            diagnostics("    budgets:\n      api.example.com: off\n") == [
                "b.yaml:7:7: error: budgets: 'api.example.com' is not a wildcard: only '*.' rules have a budget"
            ])
        #expect(
            diagnostics("    budgets:\n      \"*.ads.example.org\": off\n      \"*.nope.example\": { names: 5 }\n") == [
                "b.yaml:7: error: policy 'p': budgets: '*.ads.example.org' is not a wildcard pass rule of this policy",
                "b.yaml:8: error: policy 'p': budgets: '*.nope.example' is not a wildcard pass rule of this policy",
            ])
    }
}
