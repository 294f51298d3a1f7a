import ArgumentParser
import DNSFenceConfig
import DNSFenceFirewall
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
