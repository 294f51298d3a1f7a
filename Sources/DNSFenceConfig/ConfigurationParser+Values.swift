import DNSFenceCore
import DNSFencePolicy
import DNSFenceWire
import Yams

extension ConfigurationParser {
    /// A mapping's entries in document order, with duplicate keys reported.
    struct Entries: Sequence {
        var pairs: [(Key, Node)]
        var keys: Set<String> { Set(pairs.map(\.0.keyText)) }
        func makeIterator() -> IndexingIterator<[(Key, Node)]> { pairs.makeIterator() }
    }

    /// A mapping key: its text and node (for positions). Matches string patterns in `switch`.
    struct Key {
        var keyText: String
        var node: Node
        static func ~= (pattern: String, key: Key) -> Bool { pattern == key.keyText }
    }

    mutating func mapping(_ node: Node, _ what: String) -> Entries? {
        guard case .mapping(let mapping) = node else {
            error(node, "\(what) must be a mapping of 'key: value' lines")
            return nil
        }
        var seen: [String: Int] = [:]
        var pairs: [(Key, Node)] = []
        for (k, v) in mapping {
            guard case .scalar(let scalar) = k else {
                error(k, "keys in \(what) must be plain words")
                continue
            }
            if let line = seen[scalar.string] {
                error(k, "'\(scalar.string)' appears twice in \(what) (first at line \(line))")
                continue
            }
            seen[scalar.string] = k.mark?.line ?? 0
            pairs.append((Key(keyText: scalar.string, node: k), v))
        }
        return Entries(pairs: pairs)
    }

    mutating func list(_ node: Node, _ what: String) -> [Node] {
        switch node {
        case .sequence(let sequence): return Array(sequence)
        case .scalar: return [node]  // a single value where a list is expected is a list of one
        default:
            error(node, "\(what) must be a list")
            return []
        }
    }

    mutating func string(_ node: Node, _ what: String) -> String? {
        guard case .scalar(let scalar) = node else {
            error(node, "\(what) must be a single value")
            return nil
        }
        return scalar.string
    }

    mutating func bool(_ node: Node, _ what: String) -> Bool? {
        guard let text = string(node, what) else { return nil }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            error(node, "\(what) must be true or false, got '\(text)'")
            return nil
        }
    }

    mutating func duration(_ node: Node, _ what: String) -> UInt32? {
        guard let text = string(node, what) else { return nil }
        guard let seconds = DurationParser.seconds(text) else {
            error(node, "\(what) '\(text)' is not a duration like 30s, 5m, 1h, 1d")
            return nil
        }
        return seconds
    }

    mutating func endpoint(_ node: Node, defaultPort: UInt16?) -> Endpoint? {
        guard let text = string(node, "an address") else { return nil }
        guard let endpoint = Endpoint(text, defaultPort: defaultPort) else {
            error(
                node,
                "'\(text)' is not an address like 127.0.0.1:5353 or [::1]:5353"
                    + (defaultPort == nil ? " (the port is required)" : ""))
            return nil
        }
        return endpoint
    }

    mutating func choice<T: RawRepresentable & CaseIterable>(_ node: Node, _ type: T.Type, _ what: String) -> T?
    where T.RawValue == String {
        guard let text = string(node, what) else { return nil }
        guard let value = T(rawValue: text.lowercased()) else {
            error(node, "\(what) must be one of \(T.allCases.map(\.rawValue).joined(separator: ", ")), got '\(text)'")
            return nil
        }
        return value
    }

    /// A key with two words for off and on (`revoke: elements | connections`): false for `off`,
    /// true for `on`, nil (and an error if it is some other word) otherwise.
    mutating func either(_ node: Node, _ what: String, off: String, on: String) -> Bool? {
        switch string(node, what) {
        case off: return false
        case on: return true
        case nil: return nil
        case let other?:
            error(node, "\(what) must be '\(off)' or '\(on)', got '\(other)'")
            return nil
        }
    }

    mutating func unknownKey(_ key: Key, in what: String, known: [String]) {
        let hint =
            known.min { Self.distance($0, key.keyText) < Self.distance($1, key.keyText) }
            .flatMap { Self.distance($0, key.keyText) <= 2 ? " (did you mean '\($0)'?)" : nil } ?? ""
        error(key.node, "unknown key '\(key.keyText)' in \(what)\(hint); known keys: \(known.joined(separator: ", "))")
    }

    static func isNftIdentifier(_ text: Substring) -> Bool {
        guard let first = text.first, first.isASCII, first.isLetter, text.count <= 63 else { return false }
        return text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    }

    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var row = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var previous = row[0]
            row[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let current = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = current
            }
        }
        return row[b.count]
    }

    static func diagnostic(_ error: YamlError, file: String) -> ConfigDiagnostic {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
            .composer(_, let problem, let mark, _):
            return ConfigDiagnostic(file: file, line: mark.line, column: mark.column, message: "YAML: \(problem)")
        default:
            return ConfigDiagnostic(file: file, line: 0, message: "YAML: \(error)")
        }
    }
}
