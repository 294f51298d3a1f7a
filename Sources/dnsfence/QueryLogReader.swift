import DNSFenceConfig
import Foundation

/// One question from a query log: ours (JSON lines) or dnsmasq's `log-queries`.
struct LoggedQuery: Sendable {
    /// The name as logged, lower-cased, without the final dot.
    var name: String
    var type: String
    /// pass, local, deny, audit, error; dnsmasq lines say `query` (what was answered is on
    /// other lines).
    var action: String
    var rcode: String?
    var policy: String?
    var time: String?

    /// Whether the program got (or, in audit mode, would have been denied but got) an answer
    /// that the upstream did not call nonexistent: a name it really uses.
    var resolved: Bool {
        ["pass", "local", "audit", "query"].contains(action) && rcode != "NXDOMAIN"
    }

    /// What an enforcing policy did with it: answered (pass, local data; dnsmasq lines: always),
    /// denied (deny, or audit: a would-be denial), or nil (errors, malformed queries).
    var enforcedAnswer: Bool? {
        switch action {
        case "pass", "local", "query": return true
        case "deny", "audit": return false
        default: return nil
        }
    }
}

/// Reads query logs: every line that is one of ours or a dnsmasq query line; others are counted.
struct QueryLogReader {
    private struct JSONLine: Decodable {
        var time: String?
        var qname: String?
        var qtype: String?
        var action: String?
        var rcode: String?
        var policy: String?
    }

    var queries: [LoggedQuery] = []
    var skipped = 0

    mutating func read(_ path: String) throws {
        let text = try ConfigurationLoader.readFile(path)
        let decoder = JSONDecoder()
        for line in text.split(separator: "\n") {
            if line.first == "{" {
                if let entry = try? decoder.decode(JSONLine.self, from: Data(line.utf8)), let name = entry.qname,
                    let action = entry.action
                {
                    queries.append(
                        LoggedQuery(
                            name: Self.normalized(name), type: entry.qtype ?? "A", action: action, rcode: entry.rcode,
                            policy: entry.policy, time: entry.time))
                    continue
                }
            } else if let query = Self.dnsmasq(line) {
                queries.append(query)
                continue
            }
            skipped += 1
        }
    }

    /// `Dec  5 10:00:00 dnsmasq[123]: query[A] example.com from 10.0.0.2`
    static func dnsmasq(_ line: Substring) -> LoggedQuery? {
        guard let start = line.range(of: ": query[") else { return nil }
        let rest = line[start.upperBound...]
        guard let close = rest.firstIndex(of: "]") else { return nil }
        let type = String(rest[..<close])
        let words = rest[rest.index(after: close)...].split(separator: " ")
        guard words.count >= 1 else { return nil }
        let time = line[..<start.lowerBound].split(separator: " ").prefix(3).joined(separator: " ")
        return LoggedQuery(name: normalized(String(words[0])), type: type, action: "query", time: time)
    }

    static func normalized(_ name: String) -> String {
        var lower = name.lowercased()
        if lower.hasSuffix(".") { lower.removeLast() }
        return lower
    }
}
