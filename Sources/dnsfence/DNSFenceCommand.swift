import ArgumentParser

/// `dnsfence`: a filtering DNS resolver for sandboxed network namespaces.
@main
struct DNSFenceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dnsfence",
        abstract: "A filtering DNS resolver for sandboxes: answers only allowlisted names.",
        version: Observability.versionLine,
        subcommands: [ServeCommand.self, CheckCommand.self, ReloadCommand.self],
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
}
