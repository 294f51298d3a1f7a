import DNSFencePolicy
import Yams

extension ConfigurationParser {
    /// `budget: off`, or `budget: { names: 300, per: 5m, burst: 100, max-label: 63, max-name: 100 }`
    /// with what is not written taken from `base`: `.some(nil)` for `off`, nil after an error.
    mutating func budget(_ node: Node, _ what: String, base: TunnelBudget) -> TunnelBudget?? {
        if case .scalar(let scalar) = node {
            if scalar.string == "off" { return .some(nil) }
            error(node, "\(what) must be 'off' or a mapping like { names: 300, per: 5m }")
            return nil
        }
        guard let fields = mapping(node, what) else { return nil }
        var budget = base
        var burst: UInt32? = nil
        var valid = true
        for (k, v) in fields {
            switch k {
            case "names", "burst":
                guard let n = whole(v, "\(what) \(k.keyText)", in: 1...1_000_000) else {
                    valid = false
                    continue
                }
                if k.keyText == "names" { budget.names = UInt32(n) } else { burst = UInt32(n) }
            case "per":
                guard let seconds = duration(v, "\(what) per"), seconds >= 1, seconds <= 86400 else {
                    if case .scalar = v, DurationParser.seconds(string(v, "") ?? "") != nil {
                        error(v, "\(what) per must be from 1s to 1d")
                    }
                    valid = false
                    continue
                }
                budget.window = seconds
            case "max-label":
                guard let n = whole(v, "\(what) max-label", in: 1...63) else {
                    valid = false
                    continue
                }
                budget.maxLabel = n
            case "max-name":
                guard let n = whole(v, "\(what) max-name", in: 1...253) else {
                    valid = false
                    continue
                }
                budget.maxName = n
            default:
                unknownKey(k, in: what, known: ["names", "per", "burst", "max-label", "max-name"])
                valid = false
            }
        }
        // A burst left unwritten is the base's, but never more than the names of a window.
        budget.burst = burst ?? min(base.burst, budget.names)
        return valid ? .some(budget) : nil
    }

    /// `budgets: { "*.cdn.example.net": { names: 2000 }, "*.example.org": off }`: per wildcard
    /// pass rule, by pattern, over the policy's budget.
    mutating func ruleBudgets(_ node: Node, base: TunnelBudget) -> [String: TunnelBudget?] {
        guard let entries = mapping(node, "budgets") else { return [:] }
        var budgets: [String: TunnelBudget?] = [:]
        for (pattern, value) in entries {
            guard pattern.keyText.hasPrefix("*.") else {
                error(pattern.node, "budgets: '\(pattern.keyText)' is not a wildcard: only '*.' rules have a budget")
                continue
            }
            policyLines["budgets.\(pattern.keyText)"] = pattern.node.mark?.line
            if let budget = budget(value, "budget of '\(pattern.keyText)'", base: base) {
                budgets[pattern.keyText] = budget
            }
        }
        return budgets
    }

    /// A whole number in `range`.
    mutating func whole(_ node: Node, _ what: String, in range: ClosedRange<Int>) -> Int? {
        guard let text = string(node, what) else { return nil }
        guard let n = Int(text), range.contains(n) else {
            error(node, "\(what) must be a whole number from \(range.lowerBound) to \(range.upperBound), got '\(text)'")
            return nil
        }
        return n
    }
}
