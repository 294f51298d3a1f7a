import ArgumentParser
import DNSFenceConfig
import DNSFencePolicy
import DNSFenceWire

/// `dnsfence learn LOG...`: the names a program really resolved, from query logs (best taken
/// in audit mode), printed as a policy to review and then enforce (docs/audit.md).
struct LearnCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "learn",
        abstract: "Print a policy (plain list or RPZ) from the names query logs show being resolved.",
        discussion: """
            Reads dnsfence query logs (JSON lines; from a run with --audit and --query-log all, \
            every name the program asked for) and dnsmasq log-queries lines. A name counts when \
            it was answered (pass, local data, audit) and the upstream did not call it \
            nonexistent. Each entry carries a comment with its count and when it was first and \
            last seen. Where many names sit directly under one parent, *.PARENT is suggested \
            instead, never on a public suffix.
            """
    )

    @Argument(help: "Query log files.")
    var logs: [String]

    @Option(name: .long, help: "Leave out names asked fewer times than this.")
    var minCount = 1

    @Option(name: .long, help: "Output format: list (plain allowlist) or rpz.")
    var format = "list"

    @Option(
        name: .long,
        help: "An existing policy file to extend: it is printed first, then the names it does not allow yet.")
    var merge: String?

    @Option(name: .long, help: "Suggest *.PARENT when at least this many names sit directly under PARENT.")
    var wildcardSiblings = 10

    func validate() throws {
        guard format == "list" || format == "rpz" else { throw ValidationError("--format must be list or rpz") }
        guard minCount >= 1, wildcardSiblings >= 2 else {
            throw ValidationError("--min-count must be at least 1 and --wildcard-siblings at least 2")
        }
    }

    struct Entry {
        var pattern: String
        var count = 0
        var first = ""
        var last = ""
        var names = 1

        mutating func add(_ time: String?, times: Int = 1) {
            count += times
            if let time {
                if first.isEmpty || time < first { first = time }
                if time > last { last = time }
            }
        }
    }

    func run() throws {
        var reader = QueryLogReader()
        for log in logs {
            do {
                try reader.read(log)
            } catch {
                throw ValidationError("\(log): \(error)")
            }
        }
        var entries: [String: Entry] = [:]
        for query in reader.queries where query.resolved {
            entries[query.name, default: Entry(pattern: query.name)].add(query.time)
        }
        let suffixes = ConfigurationLoader.publicSuffixes
        var (learned, notes) = Self.wildcards(
            entries.filter { $0.value.count >= minCount }, siblings: wildcardSiblings, suffixes: suffixes)
        var existing = ""
        if let merge {
            existing = try ConfigurationLoader.readFile(merge)
            let policy = try PolicyCompiler(publicSuffixes: suffixes)
                .compile(name: "merge", sources: [PolicySource(file: merge, text: existing)]).policy
            learned = learned.filter { entry in
                guard let name = try? DNSName(entry.pattern.replacingOccurrences(of: "*.", with: "x.")) else {
                    return true
                }
                if case .deny = policy.decide(DNSQuestion(name: name, type: .a)) { return true }
                return false
            }
        }
        print(render(learned, notes: notes, queries: reader.queries.count, skipped: reader.skipped, existing: existing))
    }

    /// Replaces the names directly under a parent with `*.PARENT` where there are at least
    /// `siblings` of them, unless the parent is a public suffix (or a top-level name).
    static func wildcards(_ entries: [String: Entry], siblings: Int, suffixes: PublicSuffixList) -> ([Entry], [String])
    {
        var byParent: [String: [String]] = [:]
        for name in entries.keys {
            guard let dot = name.firstIndex(of: ".") else { continue }
            byParent[String(name[name.index(after: dot)...]), default: []].append(name)
        }
        var result = entries
        var notes: [String] = []
        for (parent, children) in byParent.sorted(by: { $0.key < $1.key }) where children.count >= siblings {
            let isSuffix = (try? DNSName(parent)).map(suffixes.isPublicSuffix) ?? true
            guard parent.contains("."), !isSuffix else {
                notes.append("\(children.count) names under \(parent), a public suffix: listed one by one")
                continue
            }
            var wildcard = Entry(pattern: "*.\(parent)")
            wildcard.names = children.count
            for child in children {
                let entry = result.removeValue(forKey: child)!
                wildcard.add(entry.first.isEmpty ? nil : entry.first, times: entry.count)
                if !entry.last.isEmpty { wildcard.add(entry.last, times: 0) }
            }
            result[wildcard.pattern] = wildcard
        }
        // Grouped by domain: sorted on the labels from the right.
        let sorted = result.values.sorted {
            $0.pattern.split(separator: ".").reversed().joined(separator: ".")
                < $1.pattern.split(separator: ".").reversed().joined(separator: ".")
        }
        return (sorted, notes)
    }

    func render(_ entries: [Entry], notes: [String], queries: Int, skipped: Int, existing: String) -> String {
        let comment = format == "rpz" ? ";" : "#"
        var lines: [String] = []
        if !existing.isEmpty {
            lines.append(existing.hasSuffix("\n") ? String(existing.dropLast()) : existing)
            lines.append("\(comment) learned by dnsfence learn:")
        } else {
            lines.append(
                "\(comment) learned by dnsfence learn from \(queries) logged queries (\(skipped) other lines);")
            lines.append("\(comment) review every entry before enforcing it.")
            if format == "rpz" {
                lines += ["$TTL 60", "@ SOA localhost. root.localhost. 1 3600 600 86400 60", "  NS localhost."]
            }
        }
        for note in notes { lines.append("\(comment) \(note)") }
        for entry in entries {
            var about = "\(entry.count) quer\(entry.count == 1 ? "y" : "ies")"
            if entry.names > 1 { about += " for \(entry.names) names" }
            if !entry.first.isEmpty { about += ", first \(entry.first), last \(entry.last)" }
            lines.append(
                format == "rpz" ? "\(entry.pattern) CNAME rpz-passthru. ; \(about)" : "\(entry.pattern)  # \(about)")
        }
        return lines.joined(separator: "\n")
    }
}
