import ArgumentParser

/// `dnsfence`: a filtering DNS resolver for sandboxed network namespaces.
@main
struct DNSFenceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dnsfence",
        abstract: "A filtering DNS resolver for sandboxes: answers only allowlisted names.",
        discussion: """
            dnsfence is a sandbox's only resolver. It answers only names its policy allows, \
            refuses every other name without forwarding it, rewrites allowed names to local \
            data or passes them to an upstream resolver, and publishes every address it hands \
            out into nftables sets before the answer leaves, so that a firewall rule allowing \
            egress only to those sets and the name policy always agree.

            Signals: SIGHUP reloads the configuration and policies (as `dnsfence reload` does); \
            SIGTERM and SIGINT stop after the queries in flight are answered.

            Exit status: 0 on a clean stop, 1 for an invalid configuration or a failed start \
            (every error with file and line), 2 when `dnsfence reload` finds no server.

            Files: the configuration (`--config`, YAML; default: the embedded policy), its \
            zones and `drop-ins:` directory. Documentation: README.md and docs/ in the source \
            tree (configuration.md, sandbox.md, metrics.md, architecture.md).
            """,
        version: Observability.versionLine,
        subcommands: [ServeCommand.self, CheckCommand.self, ReloadCommand.self, RunCommand.self, LearnCommand.self],
        defaultSubcommand: ServeCommand.self
    )
}

/// Flags shared by `serve` and `check` (DESIGN.md, "Command line").
struct ConfigurationOptions: ParsableArguments {
    @Option(name: .long, help: "YAML configuration file (default: the embedded configuration).")
    var config: String?

    @Option(name: .long, help: "Listen on ADDR:PORT, UDP and TCP (repeatable; replaces the file's listeners).")
    var listen: [String] = []

    @Option(name: .long, help: "Forward allowed names to ADDR[:PORT] (repeatable; replaces the file's upstreams).")
    var upstream: [String] = []

    @Option(name: .long, help: "Allow NAME or *.NAME (repeatable; builds one ad-hoc policy for every client).")
    var allow: [String] = []

    @Option(name: .long, help: "Policy file, RPZ (.rpz/.zone) or plain list (repeatable; joins the ad-hoc policy).")
    var policy: [String] = []

    @Option(name: .long, help: "Serve Prometheus metrics on ADDR:PORT.")
    var metrics: String?

    @Flag(name: .long, help: "Publish nothing into nftables sets.")
    var noFirewall = false

    @Option(name: .customLong("nft-set4"), help: "IPv4 set of the ad-hoc policy, FAMILY:TABLE:SET.")
    var nftSet4: String?

    @Option(name: .customLong("nft-set6"), help: "IPv6 set of the ad-hoc policy, FAMILY:TABLE:SET.")
    var nftSet6: String?

    @Option(name: .customLong("query-log"), help: "Query log: off, denied or all (overrides the file).")
    var queryLog: String?

    @Option(name: .long, help: "Control socket for `dnsfence reload` (a Unix socket path; overrides the file).")
    var control: String?

    @Flag(
        name: .long,
        help: "Audit mode: answer every name as allowed (and publish it); log and count what would be denied.")
    var audit = false
}
