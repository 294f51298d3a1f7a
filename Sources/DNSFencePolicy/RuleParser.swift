public import DNSFenceWire

/// Turns the text of one policy file into rules. All or nothing: the first error aborts the
/// file, so a policy is never half-applied.
public enum RuleParser {
    /// Parses `source` in its format.
    public static func rules(from source: PolicySource) throws(PolicyLoadError) -> [PolicyRule] {
        switch source.format {
        case .list: return try listRules(source)
        case .rpz: return try rpzRules(source)
        }
    }

    // MARK: Plain lists

    static func listRules(_ source: PolicySource) throws(PolicyLoadError) -> [PolicyRule] {
        var rules: [PolicyRule] = []
        var text = source.text
        let result = text.withUTF8 { utf8 in
            Result { () throws(PolicyLoadError) -> [PolicyRule] in
                var lineNumber = 0
                var lineStart = 0
                let newline = UInt8(ascii: "\n")
                while lineStart <= utf8.count {
                    lineNumber += 1
                    var lineEnd = lineStart
                    while lineEnd < utf8.count && utf8[lineEnd] != newline { lineEnd += 1 }
                    defer { lineStart = lineEnd + 1 }
                    var end = lineEnd
                    if let hash = utf8[lineStart..<lineEnd].firstIndex(of: UInt8(ascii: "#")) { end = hash }
                    var start = lineStart
                    while start < end && Self.isSpace(utf8[start]) { start += 1 }
                    while end > start && Self.isSpace(utf8[end - 1]) { end -= 1 }
                    if start == end { continue }
                    let line = utf8[start..<end]
                    let id = RuleID(file: source.file, line: lineNumber)
                    guard !line.contains(where: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) else {
                        throw PolicyLoadError(
                            file: source.file, line: lineNumber,
                            message: "expected one name per line, found '\(String(decoding: line, as: UTF8.self))'"
                        )
                    }
                    let (name, wildcard) = try parsePattern(line, id: id)
                    rules.append(PolicyRule(name: name, isWildcard: wildcard, action: .pass, id: id))
                }
                return rules
            }
        }
        return try result.get()
    }

    static func isSpace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
    }

    static func parsePattern(_ text: String, id: RuleID) throws(PolicyLoadError) -> (DNSName, Bool) {
        var text = text
        let result = text.withUTF8 { utf8 in
            Result { () throws(PolicyLoadError) -> (DNSName, Bool) in try parsePattern(utf8[...], id: id) }
        }
        return try result.get()
    }

    /// `name`, `*.name` or `*` (everything). Any other `*` is an error: dnsfence has no
    /// partial-label wildcards.
    static func parsePattern(_ text: Slice<UnsafeBufferPointer<UInt8>>, id: RuleID) throws(PolicyLoadError)
        -> (DNSName, Bool)
    {
        let star = UInt8(ascii: "*"), dot = UInt8(ascii: ".")
        if text.elementsEqual([star]) || text.elementsEqual([star, dot]) { return (.root, true) }
        var body = text
        var wildcard = false
        if body.count >= 2 && body[body.startIndex] == star && body[body.startIndex + 1] == dot {
            wildcard = true
            body = body.dropFirst(2)
        }
        guard !body.contains(star) else {
            throw PolicyLoadError(
                file: id.file, line: id.line,
                message:
                    "'\(String(decoding: text, as: UTF8.self))': '*' is only allowed as the whole first label ('*.example.com')"
            )
        }
        do {
            return (try DNSName(presentation: UnsafeBufferPointer(rebasing: body)).lowercased(), wildcard)
        } catch {
            throw PolicyLoadError(
                file: id.file, line: id.line, message: "'\(String(decoding: text, as: UTF8.self))': \(error)")
        }
    }

    // MARK: Response Policy Zones

    /// RPZ action targets (draft-vixie-dnsop-dns-rpz section 4).
    static let passthru: DNSName = DNSName(constant: "rpz-passthru.")
    static let dropTarget: DNSName = DNSName(constant: "rpz-drop.")
    static let tcpOnly: DNSName = DNSName(constant: "rpz-tcp-only.")
    static let wildcardRoot: DNSName = DNSName(constant: "*.")
    static let unsupportedTriggers: Set<String> = ["rpz-ip", "rpz-nsip", "rpz-nsdname", "rpz-client-ip"]

    /// The pattern an RPZ owner name stands for: its labels below `apex`, less a leading `*`
    /// label, which makes it a wildcard (lower-cased). nil for the apex itself. What a zone file
    /// and a transferred change (a removed owner) both mean by an owner.
    public static func rpzPattern(owner: DNSName, apex: DNSName) throws(RPZOwnerError) -> (
        name: DNSName, wildcard: Bool
    )? {
        guard var relative = owner.relative(to: apex) else { throw .outside(apex) }
        if relative.isEmpty { return nil }
        var wildcard = false
        if relative.first.map({ $0.elementsEqual([UInt8(ascii: "*")]) }) == true {
            wildcard = true
            relative.removeFirst()
        }
        guard !relative.contains(where: { $0.contains(UInt8(ascii: "*")) }) else { throw .misplacedStar }
        do {
            return (try DNSName(labels: relative.map(Array.init)).lowercased(), wildcard)
        } catch {
            throw .invalid("\(error)")
        }
    }

    /// Why an owner name is no pattern.
    public enum RPZOwnerError: Error, Sendable {
        case outside(DNSName)
        case misplacedStar
        case invalid(String)

        func message(owner: DNSName) -> String {
            switch self {
            case .outside(let apex): "owner \(owner) is outside the zone \(apex) (write names relative to the zone)"
            case .misplacedStar: "'*' is only allowed as the whole first label of an owner name"
            case .invalid(let why): why
            }
        }
    }

    static func rpzRules(_ source: PolicySource) throws(PolicyLoadError) -> [PolicyRule] {
        let entries: [ZoneFileReader.Entry]
        do {
            entries = try ZoneFileReader.parse(
                source.text, file: source.file, origin: DNSName(constant: "rpz.invalid."))
        } catch {
            throw PolicyLoadError(file: error.file, line: error.line, message: error.message)
        }
        guard let first = entries.first else {
            throw PolicyLoadError(file: source.file, line: 1, message: "RPZ zone has no records (it needs an SOA)")
        }
        guard first.record.type == .soa else {
            throw PolicyLoadError(
                file: source.file, line: first.line,
                message: "an RPZ zone must start with its SOA record, found \(first.record.type)"
            )
        }
        let apex = first.record.name

        // Group records by (owner, wildcard) in file order so each owner becomes one rule.
        struct Pending {
            var name: DNSName
            var wildcard: Bool
            var line: Int
            var actionLine: Int?
            var action: PolicyAction?
            var data: [DNSRecord]
        }
        var order: [DNSName: Int] = [:]
        var wildcardOrder: [DNSName: Int] = [:]
        var pending: [Pending] = []

        for entry in entries.dropFirst() {
            let record = entry.record
            guard record.rrClass == .in else {
                throw PolicyLoadError(file: source.file, line: entry.line, message: "class \(record.rrClass) is not IN")
            }
            let found: (name: DNSName, wildcard: Bool)?
            do throws(RPZOwnerError) {
                found = try rpzPattern(owner: record.name, apex: apex)
            } catch {
                throw PolicyLoadError(file: source.file, line: entry.line, message: error.message(owner: record.name))
            }
            guard let pattern = found else {
                if record.type == .ns || record.type == .soa { continue }
                throw PolicyLoadError(
                    file: source.file, line: entry.line,
                    message: "\(record.type) at the zone apex has no meaning in an RPZ zone"
                )
            }
            let (name, wildcard) = pattern
            if let last = name.labels.last,
                unsupportedTriggers.contains(String(decoding: last, as: UTF8.self).lowercased())
            {
                throw PolicyLoadError(
                    file: source.file, line: entry.line,
                    message:
                        "RPZ trigger '\(String(decoding: last, as: UTF8.self))' is not supported (only QNAME triggers)"
                )
            }

            var action: PolicyAction? = nil
            if record.type == .cname, let target = record.target {
                if target.isRoot {
                    action = .deny(.nxdomain)
                } else if target == wildcardRoot {
                    action = .deny(.nodata)
                } else if target == passthru {
                    action = .pass
                } else if target == dropTarget {
                    action = .deny(.drop)
                } else if target == tcpOnly {
                    throw PolicyLoadError(
                        file: source.file, line: entry.line, message: "rpz-tcp-only is not supported"
                    )
                } else if target.labels.first.map({ $0.elementsEqual([UInt8(ascii: "*")]) }) == true {
                    throw PolicyLoadError(
                        file: source.file, line: entry.line,
                        message: "wildcard CNAME targets ('\(target)') are not supported"
                    )
                }
            } else if record.type.isMetaType || record.type == .soa || record.type == .ns {
                throw PolicyLoadError(
                    file: source.file, line: entry.line,
                    message: "\(record.type) records cannot be local data"
                )
            }

            let key = wildcard ? wildcardOrder[name] : order[name]
            if let index = key {
                var existing = pending[index]
                if let existingAction = existing.action {
                    throw PolicyLoadError(
                        file: source.file, line: entry.line,
                        message: "\(existing.wildcard ? "*." : "")\(name) already has the action "
                            + "'\(existingAction.label)' at line \(existing.actionLine ?? existing.line); "
                            + "an RPZ action must be the name's only record"
                    )
                }
                if action != nil {
                    throw PolicyLoadError(
                        file: source.file, line: entry.line,
                        message: "\(existing.wildcard ? "*." : "")\(name) already has local data at line "
                            + "\(existing.line); an RPZ action must be the name's only record"
                    )
                }
                if record.type == .cname || existing.data.contains(where: { $0.type == .cname }) {
                    throw PolicyLoadError(
                        file: source.file, line: entry.line,
                        message: "a CNAME cannot stand beside other data for \(name) (RFC 1034 3.6.2)"
                    )
                }
                existing.data.append(record)
                pending[index] = existing
            } else {
                let item = Pending(
                    name: name, wildcard: wildcard, line: entry.line,
                    actionLine: action == nil ? nil : entry.line, action: action,
                    data: action == nil ? [record] : []
                )
                if wildcard { wildcardOrder[name] = pending.count } else { order[name] = pending.count }
                pending.append(item)
            }
        }
        return pending.map {
            PolicyRule(
                name: $0.name, isWildcard: $0.wildcard, action: $0.action ?? .localData($0.data),
                id: RuleID(file: source.file, line: $0.line)
            )
        }
    }
}
