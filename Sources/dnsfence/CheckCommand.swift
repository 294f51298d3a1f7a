import ArgumentParser
import DNSFenceConfig

#if canImport(Glibc)
    import Glibc
#endif

/// `dnsfence check`: validates everything a start would and prints file:line diagnostics.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate the configuration and policy files; exit 1 if anything is wrong."
    )

    @OptionGroup var options: ConfigurationOptions

    func run() throws {
        let overrides = options.overrides
        do {
            let compiled = try ConfigurationLoader().load(configPath: options.config, overrides: overrides)
            for warning in compiled.warnings { print(warning) }
            print(
                "dnsfence check: \(compiled.selector.entries.count) policies, \(compiled.ruleCount) rules, "
                    + "\(compiled.warnings.count) warnings, 0 errors")
        } catch {
            for diagnostic in error.diagnostics { print(diagnostic) }
            let errors = error.diagnostics.filter { $0.severity == .error }.count
            print("dnsfence check: \(errors) errors, \(error.diagnostics.count - errors) warnings")
            throw ExitCode(1)
        }
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
        return o
    }
}
