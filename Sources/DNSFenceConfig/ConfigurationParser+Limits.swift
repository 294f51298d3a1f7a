import DNSFenceCore
import DNSFencePolicy
import Yams

extension ConfigurationParser {
    /// `budget: off`, or `budget: { names: 300, per: 5m, burst: 100, max-label: 63, max-name: 100,
    /// deny-encoded: false }`
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
            case "deny-encoded":
                guard let on = bool(v, "\(what) deny-encoded") else {
                    valid = false
                    continue
                }
                budget.denyEncoded = on
            default:
                unknownKey(k, in: what, known: ["names", "per", "burst", "max-label", "max-name", "deny-encoded"])
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

    /// `rate-limit: off`, or `rate-limit: { queries: 5000, burst: 5000, ipv4-prefix: 24,
    /// ipv6-prefix: 56, slip: 2, exempt: [127.0.0.0/8, ::1/128], kernel: true }` over the defaults:
    /// `.some(nil)` for `off`, nil after an error.
    mutating func rateLimits(_ node: Node) -> RateLimits?? {
        if case .scalar(let scalar) = node {
            if scalar.string == "off" { return .some(nil) }
            error(node, "rate-limit must be 'off' or a mapping like { queries: 5000, burst: 5000 }")
            return nil
        }
        guard let fields = mapping(node, "rate-limit") else { return nil }
        var limits = RateLimits.standard
        var burst: UInt32? = nil
        var valid = true
        for (k, v) in fields {
            let what = "rate-limit \(k.keyText)"
            switch k {
            case "queries", "burst":
                guard let n = whole(v, what, in: 1...10_000_000) else {
                    valid = false
                    continue
                }
                if k.keyText == "queries" { limits.queries = UInt32(n) } else { burst = UInt32(n) }
            case "ipv4-prefix", "ipv6-prefix":
                let v4 = k.keyText == "ipv4-prefix"
                guard let n = whole(v, what, in: v4 ? 8...32 : 16...64) else {
                    valid = false
                    continue
                }
                if v4 { limits.ipv4Prefix = n } else { limits.ipv6Prefix = n }
            case "slip":
                guard let n = whole(v, what, in: 0...100) else {
                    valid = false
                    continue
                }
                limits.slip = UInt32(n)
            case "exempt":
                limits.exempt = list(v, what).compactMap { item in
                    guard let text = string(item, "an exempt prefix") else { return nil }
                    guard let prefix = IPPrefix(text) else {
                        error(item, "'\(text)' is not an address prefix like 10.200.0.0/24 (host bits must be zero)")
                        valid = false
                        return nil
                    }
                    return prefix
                }
            case "kernel":
                guard let on = bool(v, what) else {
                    valid = false
                    continue
                }
                limits.kernel = on
            default:
                unknownKey(
                    k, in: "rate-limit",
                    known: ["queries", "burst", "ipv4-prefix", "ipv6-prefix", "slip", "exempt", "kernel"])
                valid = false
            }
        }
        // A burst left unwritten is one second's worth.
        limits.burst = burst ?? limits.queries
        return valid ? .some(limits) : nil
    }
}
