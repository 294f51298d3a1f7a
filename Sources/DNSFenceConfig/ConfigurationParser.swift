import DNSFenceCore
import DNSFencePolicy
import DNSFenceWire
import Yams

/// Stage 1: YAML text → ``ServerConfiguration``. Unknown keys, wrong types and malformed values
/// are reported with file, line and column; parsing goes on after an error so one run lists
/// them all.
public struct ConfigurationParser {
    let file: String
    private(set) var diagnostics: [ConfigDiagnostic] = []
    /// The line of each `zones:` and `budgets:` entry of the policy being parsed (as
    /// `zones.PATH`, `budgets.PATTERN`), for messages about what they name.
    var policyLines: [String: Int] = [:]
    /// The zones transferred from primaries, by zone name (`zones: [{ transfer: … }]`).
    var transfers: [String: ZoneTransferConfiguration] = [:]

    public init(file: String) {
        self.file = file
    }

    /// Parses `text`; throws ``ConfigurationError`` listing every problem found.
    public static func parse(_ text: String, file: String) throws(ConfigurationError) -> ServerConfiguration {
        var parser = ConfigurationParser(file: file)
        let config = parser.parse(text)
        guard !parser.diagnostics.contains(where: { $0.severity == .error }) else {
            throw ConfigurationError(parser.diagnostics)
        }
        return config
    }

    mutating func error(_ node: Node?, _ message: String) {
        diagnostics.append(
            ConfigDiagnostic(
                file: file, line: node?.mark?.line ?? 0, column: node?.mark?.column ?? 0,
                message: message))
    }

    mutating func parse(_ text: String) -> ServerConfiguration {
        var config = ServerConfiguration(source: file)
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            diagnostics.append(Self.diagnostic(error, file: file))
            return config
        } catch {
            diagnostics.append(ConfigDiagnostic(file: file, line: 0, message: "\(error)"))
            return config
        }
        guard let root else { return config }  // an empty file is the empty configuration
        guard let top = mapping(root, "the configuration") else { return config }
        for (key, value) in top {
            config.lines[key.keyText] = key.node.mark?.line
            switch key {
            case "listen":
                config.listeners = list(value, "listen").compactMap { listener($0) }
            case "upstreams":
                config.upstreams = list(value, "upstreams").compactMap { item in
                    if case .scalar = item { return endpoint(item, defaultPort: 53) }
                    guard let fields = mapping(item, "an upstream") else { return nil }
                    var result: Endpoint? = nil
                    for (k, v) in fields {
                        switch k {
                        case "address": result = endpoint(v, defaultPort: 53)
                        default: unknownKey(k, in: "an upstream", known: ["address"])
                        }
                    }
                    if result == nil && fields.keys.contains("address") == false {
                        error(item, "an upstream needs 'address'")
                    }
                    return result
                }
            case "policies":
                guard let entries = mapping(value, "policies") else { continue }
                for (name, body) in entries {
                    policyLines = [:]
                    if let policy = policy(name: name.keyText, body) {
                        config.lines["policies.\(policy.name)"] = name.node.mark?.line
                        for (key, line) in policyLines { config.lines["policies.\(policy.name).\(key)"] = line }
                        config.policies.append(policy)
                    }
                }
            case "cache":
                config.cache = cache(value)
            case "tcp":
                config.tcp = tcp(value)
            case "metrics":
                guard let fields = mapping(value, "metrics") else { continue }
                for (k, v) in fields {
                    switch k {
                    case "listen": config.metrics = endpoint(v, defaultPort: nil)
                    default: unknownKey(k, in: "metrics", known: ["listen"])
                    }
                }
            case "log":
                guard let fields = mapping(value, "log") else { continue }
                for (k, v) in fields {
                    switch k {
                    case "queries":
                        if let mode = choice(v, QueryLogMode.self, "log.queries") { config.queryLog = mode }
                    case "file":
                        if let path = string(v, "log.file") {
                            if path.hasPrefix("/") {
                                config.queryLogFile = path
                            } else {
                                error(v, "log.file must be an absolute path")
                            }
                        }
                    case "repeat-limit", "max-bytes-per-second":
                        if let text = string(v, k.keyText), let n = Int(text), n >= 0 {
                            if k.keyText == "repeat-limit" {
                                config.queryLogRepeatLimit = n
                            } else {
                                config.queryLogMaxBytesPerSecond = n
                            }
                        } else {
                            error(v, "log.\(k.keyText) must be a whole number ≥ 0")
                        }
                    default:
                        unknownKey(k, in: "log", known: ["queries", "file", "repeat-limit", "max-bytes-per-second"])
                    }
                }
            case "rate-limit":
                if let limits = rateLimits(value) { config.rateLimits = limits }
            case "drop-ins":
                config.dropIns = string(value, "drop-ins")
            case "control":
                guard let path = string(value, "control") else { continue }
                if path.hasPrefix("/") {
                    config.control = path
                } else {
                    error(
                        value, "'control' must be an absolute path to a Unix socket (e.g. /run/dnsfence/control.sock)")
                }
            default:
                unknownKey(
                    key, in: "the configuration",
                    known: [
                        "listen", "upstreams", "policies", "cache", "tcp", "rate-limit", "metrics", "log", "control",
                        "drop-ins",
                    ])
            }
        }
        config.transfers = transfers
        return config
    }

    // MARK: Sections

    mutating func listener(_ node: Node) -> ListenerConfiguration? {
        if case .scalar = node {
            return endpoint(node, defaultPort: nil).map { ListenerConfiguration(endpoint: $0) }
        }
        guard let fields = mapping(node, "a listener") else { return nil }
        var endpoint: Endpoint? = nil
        var policy: String? = nil
        for (k, v) in fields {
            switch k {
            case "address": endpoint = self.endpoint(v, defaultPort: nil)
            case "policy": policy = string(v, "listen.policy")
            default: unknownKey(k, in: "a listener", known: ["address", "policy"])
            }
        }
        guard let endpoint else {
            if !fields.keys.contains("address") { error(node, "a listener needs 'address' (ADDR:PORT)") }
            return nil
        }
        return ListenerConfiguration(endpoint: endpoint, policy: policy)
    }

    mutating func policy(name: String, _ node: Node) -> PolicyConfiguration? {
        guard let fields = mapping(node, "policy '\(name)'") else { return nil }
        var policy = PolicyConfiguration(name: name)
        var ruleBudgets: Node? = nil
        guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
        else {
            error(node, "policy name '\(name)' may use only letters, digits, '-' and '_'")
            return nil
        }
        for (k, v) in fields {
            switch k {
            case "zones":
                policy.zones = list(v, "zones").compactMap { item in
                    guard let zone = zoneEntry(item) else { return nil }
                    policyLines["zones.\(zone)"] = item.mark?.line
                    return zone
                }
            case "allow":
                policy.inlineAllow = list(v, "allow").compactMap { string($0, "an allowed name") }
            case "clients":
                policy.clients = list(v, "clients").compactMap { item in
                    guard let text = string(item, "a client prefix") else { return nil }
                    guard let prefix = IPPrefix(text) else {
                        error(item, "'\(text)' is not an address prefix like 10.200.0.0/24 (host bits must be zero)")
                        return nil
                    }
                    return prefix
                }
            case "deny":
                if let deny = choice(v, DenyResponse.self, "deny") { policy.deny = deny }
            case "qtypes":
                var types = Set<DNSType>()
                for item in list(v, "qtypes") {
                    guard let text = string(item, "a query type") else { continue }
                    guard let type = DNSType(mnemonic: text), !type.isMetaType || type == .any else {
                        error(item, "'\(text)' is not a query type (A, AAAA, HTTPS, TXT, … or TYPEnnn)")
                        continue
                    }
                    types.insert(type)
                }
                policy.qtypes = types
            case "firewall":
                policy.firewall = firewall(v)
            case "cname-targets":
                if let strict = either(v, "cname-targets", off: "follow", on: "strict") {
                    policy.strictCNAMETargets = strict
                }
            case "audit":
                policy.auditedRules = list(v, "audit").compactMap { string($0, "an audited rule") }
            case "mode":
                if let audit = either(v, "mode", off: "enforce", on: "audit") { policy.audit = audit }
            case "budget":
                if let budget = budget(v, "budget", base: .standard) { policy.budget = budget }
            case "budgets":
                ruleBudgets = v
            default:
                unknownKey(
                    k, in: "policy '\(name)'",
                    known: [
                        "zones", "allow", "clients", "deny", "qtypes", "firewall", "mode", "audit", "cname-targets",
                        "budget", "budgets",
                    ])
            }
        }
        // Per rule, over the policy's budget wherever it is written.
        if let ruleBudgets { policy.ruleBudgets = self.ruleBudgets(ruleBudgets, base: policy.budget ?? .standard) }
        return policy
    }

    mutating func firewall(_ node: Node) -> FirewallConfiguration? {
        guard let fields = mapping(node, "firewall") else { return nil }
        var fw = FirewallConfiguration()
        for (k, v) in fields {
            switch k {
            case "netns":
                if let path = string(v, "netns") {
                    if path.hasPrefix("/") {
                        fw.netns = path
                    } else {
                        error(v, "netns must be an absolute path like /run/netns/NAME")
                    }
                }
            case "table":
                guard let text = string(v, "table") else { continue }
                let parts = text.split(separator: " ")
                if parts.count == 2, ["ip", "ip6", "inet"].contains(String(parts[0])), Self.isNftIdentifier(parts[1]) {
                    fw.family = String(parts[0])
                    fw.table = String(parts[1])
                } else {
                    error(
                        v,
                        "table must be 'FAMILY NAME' with FAMILY ip, ip6 or inet and NAME [A-Za-z][A-Za-z0-9_]*, got '\(text)'"
                    )
                }
            case "ipv4-set", "ipv6-set":
                guard let text = string(v, k.keyText) else { continue }
                guard Self.isNftIdentifier(Substring(text)) else {
                    error(v, "\(k.keyText) '\(text)' is not a valid set name ([A-Za-z][A-Za-z0-9_]*, at most 63)")
                    continue
                }
                if k.keyText == "ipv4-set" { fw.ipv4Set = text } else { fw.ipv6Set = text }
            case "create":
                if let flag = bool(v, "create") { fw.create = flag }
            case "admit-private":
                if let flag = bool(v, "admit-private") { fw.admitPrivate = flag }
            case "min-ttl":
                if let d = duration(v, "min-ttl") { fw.minTTL = d }
            case "max-ttl":
                if let d = duration(v, "max-ttl") { fw.maxTTL = d }
            case "grace":
                if let d = duration(v, "grace") { fw.grace = d }
            case "publish-local":
                if let flag = bool(v, "publish-local") { fw.publishLocal = flag }
            case "revoke":
                if let cut = either(v, "revoke", off: "elements", on: "connections") { fw.revokeConnections = cut }
            default:
                unknownKey(
                    k, in: "firewall",
                    known: [
                        "netns", "table", "ipv4-set", "ipv6-set", "create", "admit-private", "min-ttl", "max-ttl",
                        "grace", "revoke", "publish-local",
                    ])
            }
        }
        if fw.ipv4Set == nil && fw.ipv6Set == nil { error(node, "firewall needs 'ipv4-set' and/or 'ipv6-set'") }
        if fw.minTTL > fw.maxTTL {
            error(node, "firewall min-ttl (\(fw.minTTL)s) is larger than max-ttl (\(fw.maxTTL)s)")
        }
        return fw
    }

    mutating func cache(_ node: Node) -> CacheConfiguration {
        var cache = CacheConfiguration()
        guard let fields = mapping(node, "cache") else { return cache }
        for (k, v) in fields {
            switch k {
            case "max-entries":
                if let text = string(v, "max-entries"), let n = Int(text), n >= 0 {
                    cache.maxEntries = n
                } else {
                    error(v, "max-entries must be a whole number ≥ 0")
                }
            case "min-ttl":
                if let d = duration(v, "min-ttl") { cache.minTTL = d }
            case "max-ttl":
                if let d = duration(v, "max-ttl") { cache.maxTTL = d }
            case "failure-ttl":
                if let d = duration(v, "failure-ttl") {
                    if d > 300 {
                        error(v, "cache failure-ttl must be at most 5m (RFC 9520), got \(d)s")
                    } else {
                        cache.failureTTL = d
                    }
                }
            case "stale-max":
                if let d = duration(v, "stale-max") {
                    if d > 7 * 86400 {
                        error(v, "cache stale-max must be at most 1w (RFC 8767 suggests 1 to 3 days), got \(d)s")
                    } else {
                        cache.staleMax = d
                    }
                }
            default:
                unknownKey(k, in: "cache", known: ["max-entries", "min-ttl", "max-ttl", "failure-ttl", "stale-max"])
            }
        }
        if cache.minTTL > cache.maxTTL {
            error(node, "cache min-ttl (\(cache.minTTL)s) is larger than max-ttl (\(cache.maxTTL)s)")
        }
        return cache
    }

    mutating func tcp(_ node: Node) -> TCPConfiguration {
        var tcp = TCPConfiguration()
        guard let fields = mapping(node, "tcp") else { return tcp }
        for (k, v) in fields {
            switch k {
            case "max-connections", "max-per-client":
                guard let text = string(v, k.keyText), let n = Int(text), n >= 1 else {
                    error(v, "\(k.keyText) must be a whole number ≥ 1")
                    continue
                }
                if k.keyText == "max-connections" { tcp.maxConnections = n } else { tcp.maxPerClient = n }
            case "idle-timeout":
                if let d = duration(v, "idle-timeout"), d >= 1 {
                    tcp.idleTimeout = d
                } else {
                    error(v, "idle-timeout must be at least 1s")
                }
            default:
                unknownKey(k, in: "tcp", known: ["max-connections", "max-per-client", "idle-timeout"])
            }
        }
        return tcp
    }
}

extension ServerConfiguration {
    /// Line of a top-level key, for messages (0 when unknown).
    func line(_ key: String) -> Int { lines[key] ?? 0 }
}
