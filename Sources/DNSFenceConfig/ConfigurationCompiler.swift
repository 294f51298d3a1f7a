import DNSFenceCore
public import DNSFencePolicy
public import DNSFenceTransfer
import DNSFenceWire

/// The output of stages 2 and 3: a configuration that passed validation, with every policy
/// compiled into an immutable ``Policy`` and a selector for clients.
public struct CompiledConfiguration: Sendable {
    public var configuration: ServerConfiguration
    public var selector: ClientPolicySelector
    public var warnings: [ConfigDiagnostic]
    /// The policy zones kept from primaries.
    public var transfers: [ZoneTransferSource] = []
    /// Policies that fail closed because a zone of theirs has nothing to serve, and why.
    public var unavailable: [String: String] = [:]

    /// Total rules over all policies.
    public var ruleCount: Int { selector.entries.values.reduce(0) { $0 + $1.policy.rules.count } }
}

/// Stages 2 (validate) and 3 (compile). Zone files are read through `readFile` so tests and
/// `dnsfence check` see exactly what `serve` would.
public struct ConfigurationCompiler: Sendable {
    /// Reads a file's text or throws a message saying why not.
    public typealias FileReader = @Sendable (String) throws -> String

    public var readFile: FileReader
    /// Directory that relative zone paths are taken from (the config file's); nil for the CWD.
    public var baseDirectory: String?
    public var publicSuffixes: PublicSuffixList
    /// Where transferred zones' text comes from.
    public var zones: any ZoneProvider

    public init(
        readFile: @escaping FileReader, baseDirectory: String? = nil, publicSuffixes: PublicSuffixList = .embedded,
        zones: any ZoneProvider = CachedZones()
    ) {
        self.readFile = readFile
        self.baseDirectory = baseDirectory
        self.publicSuffixes = publicSuffixes
        self.zones = zones
    }

    /// Validates and compiles; throws every error found (warnings ride along in the error).
    public func compile(_ config: ServerConfiguration) throws(ConfigurationError) -> CompiledConfiguration {
        var diagnostics = validate(config)
        var entries: [ClientPolicySelector.Entry] = []
        let compiler = PolicyCompiler(publicSuffixes: publicSuffixes)
        let transfers = transferSources(config, diagnostics: &diagnostics)
        var unavailable: [String: String] = [:]
        for policy in config.policies {
            var sources: [PolicySource] = []
            var readable = true
            for zone in policy.zones {
                if let name = ZoneTransferSource.zone(inPath: zone) {
                    guard let source = transfers[name] else {
                        readable = false
                        continue
                    }
                    switch zones.state(of: source) {
                    case .serving(let text): sources.append(PolicySource(file: zone, text: text, format: .rpz))
                    case .unavailable(let why, let text):
                        // Fails closed until the zone is there (the other zones still compile,
                        // so their errors are known now; an expired copy too, so that its
                        // denials go on).
                        if let text { sources.append(PolicySource(file: zone, text: text, format: .rpz)) }
                        unavailable[policy.name] = why
                        diagnostics.append(
                            ConfigDiagnostic(
                                file: config.source, line: config.transfers[name]?.line ?? 0, severity: .warning,
                                message: "policy '\(policy.name)' fails closed: \(why)"))
                    }
                    continue
                }
                let path = resolve(zone)
                do {
                    sources.append(PolicySource(file: zone, text: try readFile(path)))
                } catch {
                    readable = false
                    diagnostics.append(
                        ConfigDiagnostic(
                            file: config.source,
                            line: config.lines["policies.\(policy.name).zones.\(zone)"]
                                ?? config.line("policies.\(policy.name)"),
                            message: "policy '\(policy.name)': cannot read zone file '\(path)': \(error)"
                        ))
                }
            }
            if !policy.inlineAllow.isEmpty {
                sources.append(
                    PolicySource(file: "--allow", text: policy.inlineAllow.joined(separator: "\n"), format: .list))
            }
            guard readable else { continue }
            do {
                let output = try compiler.compile(
                    name: policy.name, sources: sources, allowedTypes: policy.qtypes,
                    denyResponse: policy.deny, audit: policy.audit, auditedPatterns: policy.auditedRules,
                    strictCNAMETargets: policy.strictCNAMETargets, budget: policy.budget,
                    ruleBudgets: policy.ruleBudgets)
                for pattern in output.unmatchedBudgets {
                    diagnostics.append(
                        ConfigDiagnostic(
                            file: config.source,
                            line: config.lines["policies.\(policy.name).budgets.\(pattern)"]
                                ?? config.line("policies.\(policy.name)"),
                            message: "policy '\(policy.name)': budgets: '\(pattern)' is not a wildcard pass rule "
                                + "of this policy"))
                }
                for pattern in output.unmatchedAudits {
                    diagnostics.append(
                        ConfigDiagnostic(
                            file: config.source, line: config.line("policies.\(policy.name)"),
                            message: "policy '\(policy.name)': audit: '\(pattern)' is not a deny rule of this policy"))
                }
                diagnostics += output.warnings.map {
                    ConfigDiagnostic(file: $0.file, line: $0.line, severity: .warning, message: $0.message)
                }
                if config.upstreams.isEmpty, let reason = output.policy.forwardingReason {
                    diagnostics.append(
                        ConfigDiagnostic(
                            file: config.source, line: config.line("policies.\(policy.name)"),
                            message: "policy '\(policy.name)' \(reason), but there are no upstreams "
                                + "(add 'upstreams:' or --upstream)"))
                }
                if output.policy.rules.count == 0 {
                    diagnostics.append(
                        ConfigDiagnostic(
                            file: config.source, line: config.line("policies.\(policy.name)"), severity: .warning,
                            message: "policy '\(policy.name)' has no rules: it denies every name"
                        ))
                }
                entries.append(ClientPolicySelector.Entry(policy: output.policy, clients: policy.clients))
            } catch {
                diagnostics.append(ConfigDiagnostic(file: error.file, line: error.line, message: error.message))
            }
        }
        if diagnostics.contains(where: { $0.severity == .error }) { throw ConfigurationError(diagnostics) }
        var compiled = CompiledConfiguration(
            configuration: config, selector: ClientPolicySelector(entries), warnings: diagnostics)
        compiled.transfers = transfers.values.sorted { $0.zone < $1.zone }
        compiled.unavailable = unavailable
        return compiled
    }

    /// The configured transfers with their keys read (`secret-file`) and paths resolved.
    func transferSources(_ config: ServerConfiguration, diagnostics: inout [ConfigDiagnostic])
        -> [String: ZoneTransferSource]
    {
        var out: [String: ZoneTransferSource] = [:]
        for (zone, transfer) in config.transfers {
            var key: TSIGKey? = nil
            if let keyName = transfer.keyName, let secretFile = transfer.secretFile {
                let path = resolve(secretFile)
                do {
                    guard let secret = TSIGKey.secret(inKeyFile: try readFile(path)) else {
                        diagnostics.append(
                            ConfigDiagnostic(
                                file: transfer.file, line: transfer.line,
                                message: "tsig secret-file '\(path)' holds no base64 secret of at least 16 bytes "
                                    + "(bare, or as 'keymgr -t' or 'tsig-keygen' print it)"))
                        continue
                    }
                    key = TSIGKey(name: keyName, algorithm: transfer.algorithm, secret: secret)
                } catch {
                    diagnostics.append(
                        ConfigDiagnostic(
                            file: transfer.file, line: transfer.line,
                            message: "cannot read tsig secret-file '\(path)': \(error)"))
                    continue
                }
            }
            out[zone] = ZoneTransferSource(
                zone: zone,
                primaries: transfer.primaries.map { TransferPrimary(address: $0.address, port: $0.port) },
                key: key, cacheDirectory: transfer.cacheDirectory.map(resolve))
        }
        return out
    }

    func resolve(_ path: String) -> String {
        guard let baseDirectory, !path.hasPrefix("/") else { return path }
        return baseDirectory + "/" + path
    }

    /// Cross-checks that need the whole configuration.
    func validate(_ config: ServerConfiguration) -> [ConfigDiagnostic] {
        var out: [ConfigDiagnostic] = []
        func error(_ key: String, _ message: String) {
            out.append(ConfigDiagnostic(file: config.source, line: config.line(key), message: message))
        }
        func warning(_ key: String, _ message: String) {
            out.append(
                ConfigDiagnostic(file: config.source, line: config.line(key), severity: .warning, message: message))
        }
        if config.listeners.isEmpty { error("listen", "no listeners: add 'listen:' or --listen ADDR:PORT") }
        var seen = Set<Endpoint>()
        let names = Set(config.policies.map(\.name))
        let anyClients = config.policies.contains { !$0.clients.isEmpty }
        for listener in config.listeners {
            if !seen.insert(listener.endpoint).inserted {
                error("listen", "listener \(listener.endpoint) is given twice")
            }
            if let policy = listener.policy, !names.contains(policy) {
                error(
                    "listen",
                    "listener \(listener.endpoint) names policy '\(policy)', which is not defined"
                        + (names.isEmpty ? "" : " (defined: \(names.sorted().joined(separator: ", ")))"))
            }
            if listener.policy == nil && !anyClients {
                error(
                    "listen",
                    "listener \(listener.endpoint) has no policy and no policy lists 'clients': "
                        + "every query would be refused")
            }
        }
        for upstream in config.upstreams {
            if let own = config.listeners.first(where: { $0.endpoint.covers(upstream) }) {
                error(
                    "upstreams", "upstream \(upstream) is dnsfence's own listener \(own.endpoint): queries would loop")
            }
        }
        var prefixes: [IPPrefix: String] = [:]
        var sets: [String: String] = [:]
        for policy in config.policies {
            for prefix in policy.clients {
                if let other = prefixes[prefix], other != policy.name {
                    error(
                        "policies.\(policy.name)",
                        "client prefix \(prefix) is in policies '\(other)' and '\(policy.name)'")
                }
                prefixes[prefix] = policy.name
            }
            if let fw = policy.firewall {
                for set in [fw.ipv4Set, fw.ipv6Set].compactMap({ $0 }) {
                    let key = "\(fw.netns ?? "-") \(fw.family) \(fw.table) \(set)"
                    if let other = sets[key] {
                        warning(
                            "policies.\(policy.name)",
                            "policies '\(other)' and '\(policy.name)' publish into the "
                                + "same set \(fw.family) \(fw.table) \(set): resolving in one opens egress for the other"
                        )
                    }
                    sets[key] = policy.name
                }
            }
        }
        return out
    }
}
