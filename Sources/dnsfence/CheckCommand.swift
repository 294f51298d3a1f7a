import ArgumentParser
import DNSFenceConfig
import DNSFenceFirewall
import DNSFenceWire
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// `dnsfence check`: validates everything a start would and prints file:line diagnostics; then
/// looks at the firewall sets a start would use (without creating or changing anything).
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate the configuration and policy files; exit 1 if anything is wrong.",
        discussion: """
            Also looks at what a start checks, without changing anything: each policy's network \
            namespace exists, and its sets exist with the right address type and 'flags timeout' \
            (a missing set is fine with 'create: true'). A missing namespace or set is a warning \
            (that policy would fail closed until it appears); a set of the wrong type is an error. \
            Without CAP_NET_ADMIN (and CAP_SYS_ADMIN for other namespaces) it says it cannot look.
            """
    )

    @OptionGroup var options: ConfigurationOptions

    @Flag(name: .long, help: "Check the files only; do not look at namespaces and sets.")
    var noSystem = false

    @Option(
        name: .long,
        help: "Replay a query log against this configuration: print the names whose verdict would change (repeatable).")
    var replay: [String] = []

    func run() async throws {
        let compiled: CompiledConfiguration
        do {
            compiled = try ConfigurationLoader().load(configPath: options.config, overrides: options.overrides)
        } catch {
            for diagnostic in error.diagnostics { print(diagnostic) }
            let errors = error.diagnostics.filter { $0.severity == .error }.count
            print("dnsfence check: \(errors) errors, \(error.diagnostics.count - errors) warnings")
            throw ExitCode(1)
        }
        var warnings = compiled.warnings.map(\.description)
        var errors: [String] = []
        if !noSystem {
            let findings = await Self.firewallFindings(compiled.configuration, source: options.config ?? "(embedded)")
            warnings += findings.warnings
            errors += findings.errors
        }
        for line in errors + warnings { print(line) }
        if !replay.isEmpty {
            let broken = try Self.replay(replay, against: compiled)
            if broken > 0 { errors.append("\(broken) names that were answered would be denied") }
        }
        print(
            "dnsfence check: \(compiled.selector.entries.count) policies, \(compiled.ruleCount) rules, "
                + "\(warnings.count) warnings, \(errors.count) errors")
        if !errors.isEmpty { throw ExitCode(1) }
    }

    /// What a start would find in each policy's namespace and sets.
    static func firewallFindings(_ config: ServerConfiguration, source: String) async -> (
        errors: [String], warnings: [String]
    ) {
        let policies = config.policies.compactMap { p in p.firewall.map { (p.name, $0) } }
        guard !policies.isEmpty else { return ([], []) }
        let capabilities = Set(Privileges.effective)
        if geteuid() != 0 && !capabilities.contains("cap_net_admin") {
            return (
                [],
                [
                    "\(source): warning: cannot look at the nftables sets without CAP_NET_ADMIN; run as root to check them"
                ]
            )
        }
        var errors: [String] = []
        var warnings: [String] = []
        var targets: [(policy: String, firewall: FirewallConfiguration, target: SetTarget)] = []
        for (name, fw) in policies {
            if fw.netns != nil && geteuid() != 0 && !capabilities.contains("cap_sys_admin") {
                warnings.append(
                    "\(source): warning: policy '\(name)': cannot enter \(fw.netns!) without CAP_SYS_ADMIN; its sets are not checked"
                )
                continue
            }
            targets += [fw.targets.v4, fw.targets.v6].compactMap { $0 }.map { (name, fw, $0) }
        }
        var quiet = Logger(label: "dnsfence-check")
        quiet.logLevel = .critical
        let problems = await SetInspector.problems(of: targets.map(\.target), logger: quiet)
        for (name, fw, target) in targets {
            guard let problem = problems[target] else { continue }
            switch problem {
            case .missing where fw.create:
                continue  // a start creates it
            case .missing, .unavailable:
                warnings.append(
                    "\(source): warning: policy '\(name)' would fail closed until this is fixed: \(problem)")
            default:
                errors.append("\(source): error: policy '\(name)': \(problem)")
            }
        }
        return (errors, warnings)
    }
}

extension CheckCommand {
    /// Replays logged questions against `compiled`: prints each name whose verdict changes
    /// (allowed → denied first), and returns how many answered names would now be denied.
    /// A logged question is judged under the policy it names (our logs) if this configuration
    /// has it, else the first listener's; answered means pass or local data (dnsmasq lines: always), denied means deny
    /// or audit (a would-be denial).
    static func replay(_ paths: [String], against compiled: CompiledConfiguration) throws -> Int {
        var reader = QueryLogReader()
        for path in paths { try reader.read(path) }
        let fallback = compiled.configuration.listeners.first?.policy ?? compiled.configuration.policies.first?.name
        var flips: [String: (from: String, to: String, count: Int)] = [:]
        var unknown = 0
        for query in reader.queries {
            guard let before = query.enforcedAnswer else { continue }
            let entries = compiled.selector.entries
            guard let policy = (entries[query.policy ?? ""] ?? fallback.flatMap { entries[$0] })?.policy,
                let owner = try? DNSName(query.name)
            else {
                unknown += 1
                continue
            }
            let type = DNSType(mnemonic: query.type) ?? .a
            var after = true
            if case .deny = policy.decide(DNSQuestion(name: owner, type: type)) { after = false }
            guard before != after else { continue }
            let key = "\(query.name) \(query.type)"
            let from = before ? "allowed" : "denied", to = after ? "allowed" : "denied"
            flips[key, default: (from, to, 0)].count += 1
        }
        // Answered names now denied first: those break what worked.
        let sorted = flips.sorted {
            ($0.value.to == "denied" ? 0 : 1, $0.key) < ($1.value.to == "denied" ? 0 : 1, $1.key)
        }
        for (key, flip) in sorted { print("\(flip.from) → \(flip.to): \(key) (\(flip.count) queries)") }
        let broken = flips.values.filter { $0.to == "denied" }.count
        print(
            "dnsfence check --replay: \(reader.queries.count) logged queries, \(broken) names would be denied that were "
                + "answered, \(flips.count - broken) would be answered that were denied"
                + (unknown > 0 ? ", \(unknown) under no policy of this configuration" : ""))
        return broken
    }
}

extension FirewallConfiguration {
    /// The sets this firewall names, IPv4 and IPv6.
    var targets: (v4: SetTarget?, v6: SetTarget?) {
        (
            ipv4Set.map { SetTarget(netns: netns, family: family, table: table, set: $0, isIPv6: false) },
            ipv6Set.map { SetTarget(netns: netns, family: family, table: table, set: $0, isIPv6: true) }
        )
    }
}

extension ConfigurationOptions {
    var overrides: ConfigurationOverrides {
        var o = ConfigurationOverrides()
        o.listen = listen
        o.upstreams = upstream
        o.allow = allow
        o.policyFiles = policy
        o.metrics = metrics
        o.noFirewall = noFirewall
        o.nftSet4 = nftSet4
        o.nftSet6 = nftSet6
        o.queryLog = queryLog
        o.control = control
        o.audit = audit
        return o
    }
}
