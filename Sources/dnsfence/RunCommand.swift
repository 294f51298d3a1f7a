import ArgumentParser
import DNSFenceConfig
import DNSFenceCore
import DNSFenceFirewall
import DNSFenceObserve
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// `dnsfence run -- CMD`: one program in a sandbox of its own that reaches only the names its
/// policy allows. The sandbox, the resolver (the same code as `serve`) and the program's life
/// are all this one process; everything it made goes when the program exits.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a program that can reach only allowlisted names (and is reachable only on published ports).",
        discussion: """
            Makes a network namespace with a veth link to the host (a /30 of 10.213.0.0/16), \
            masquerading for that link only, egress rules that allow DNS to dnsfence and the \
            addresses it publishes (everything else is rejected), and ingress rules for the \
            published ports. The resolver serves the sandbox on the host end of the link, and \
            the program sees it in /etc/resolv.conf (a private mount namespace; the host's \
            file is untouched). The program runs as --user (default: the user sudo names, else \
            the caller) with no capabilities and no_new_privs; its exit status is run's. \
            Needs root (sudo) for now.
            """
    )

    @Option(name: .long, help: "YAML configuration file: its first listener's policy serves the sandbox.")
    var config: String?

    @Option(name: .long, help: "Allow NAME or *.NAME (repeatable; an ad-hoc policy).")
    var allow: [String] = []

    @Option(name: .long, help: "Policy file, RPZ (.rpz/.zone) or plain list (repeatable; joins the ad-hoc policy).")
    var policy: [String] = []

    @Option(name: .long, help: "Forward allowed names to ADDR[:PORT] (repeatable; default: the host's resolv.conf).")
    var upstream: [String] = []

    @Option(name: .long, help: "Make the program's PORT reachable at [HOSTADDR:]HOSTPORT (PORT[/tcp|/udp]).")
    var publish: [String] = []

    @Option(name: .long, help: "Run the program as USER (default: the user sudo names, else the caller).")
    var user: String?

    @Option(name: .long, help: "Serve Prometheus metrics on ADDR:PORT.")
    var metrics: String?

    @Option(name: .long, help: "Query log on standard error: off, denied or all (default: off).")
    var queryLog: String?

    @Option(name: .long, help: "Log level of dnsfence's own messages (default: warning).")
    var logLevel: String = "warning"

    @Flag(
        name: .long,
        help: "Audit mode: every name resolves and connects; what would be denied is logged (see --query-log).")
    var audit = false

    @Flag(name: .long, help: "Leave the sandbox up after the program exits, and say how to enter it.")
    var keep = false

    @Flag(name: .long, help: "Remove what runs that are no longer running left behind (kept sandboxes too), then exit.")
    var cleanup = false

    @Argument(parsing: .postTerminator, help: "The program and its arguments, after --.")
    var command: [String] = []

    func validate() throws {
        if cleanup { return }
        guard !command.isEmpty else {
            throw ValidationError("no program given: dnsfence run [OPTIONS] -- CMD [ARG]...")
        }
        for spec in publish where PublishedPort(spec) == nil {
            throw ValidationError("--publish '\(spec)' is not [HOSTADDR:]HOSTPORT:PORT[/tcp|/udp]")
        }
    }

    func run() async throws {
        let started = ContinuousClock.now
        guard geteuid() == 0 else {
            printError(
                "dnsfence run: needs root to make the sandbox's namespace, link and rules; run it with sudo "
                    + "(a rootless mode through a user namespace and pasta is not built yet)")
            throw ExitCode(1)
        }
        if cleanup {
            for id in SandboxNetwork.cleanup(includingKept: true) { print("removed sandbox dfrun-\(id)") }
            return
        }
        // Everything that can be wrong with the input is found before anything is made.
        let environment = processEnvironment()
        let program: SandboxProgram
        do throws(SandboxProgram.Failure) {
            program = try SandboxProgram(command: command, user: user, environment: environment)
        } catch {
            printError("dnsfence run: \(error)")
            throw ExitCode(error.status)
        }
        let ports = publish.compactMap(PublishedPort.init)
        _ = SandboxNetwork.cleanup(includingKept: false)
        let elsewhere = SandboxNetwork.publishedElsewhere()
        for port in ports where !port.isFree || elsewhere.contains(port.key) {
            printError(
                "dnsfence run: --publish: port \(port.hostPort)/\(port.udp ? "udp" : "tcp") is taken on the host")
            throw ExitCode(1)
        }
        let (network, lock) = try Self.claim(ports)
        let compiled: CompiledConfiguration
        do {
            compiled = try ConfigurationLoader().load(configPath: config, overrides: overrides(for: network))
        } catch {
            for diagnostic in error.diagnostics { printError("\(diagnostic)") }
            SandboxNetwork.remove(id: network.id)
            throw ExitCode(1)
        }
        let logger = ServeCommand.bootstrapLogging(level: logLevel)
        let registry = Observability.bootstrapMetrics()
        let signals = SignalWatcher([SIGINT, SIGTERM, SIGHUP, SIGQUIT])
        if !network.ipv6, let why = SandboxNetwork.hostIPv6() { logger.info("no IPv6 in the sandbox: \(why)") }
        do throws(Subprocess.Failure) {
            try network.create()
        } catch {
            printError("dnsfence run: \(error)")
            SandboxNetwork.remove(id: network.id)
            throw ExitCode(1)
        }
        let resolver: RunningResolver
        do {
            resolver = try await RunningResolver.start(
                compiled, configPath: config, overrides: overrides(for: network), threads: 1,
                activation: SocketActivation(environment: [:]), notifier: SystemdNotifier(environment: [:]),
                registry: registry, logger: logger, queryLogFD: 2)
        } catch {
            SandboxNetwork.remove(id: network.id)
            throw error
        }
        let status = await Self.supervise(program, in: network, signals: signals, started: started, logger: logger)
        await resolver.stop()
        if keep {
            network.markKept()
            printError(
                "dnsfence run: sandbox kept (without its resolver): ip netns exec \(network.netns) sh; "
                    + "remove it with: dnsfence run --cleanup")
        } else {
            SandboxNetwork.remove(id: network.id)
        }
        close(lock)
        if status != 0 { throw ExitCode(status) }
    }

    /// Starts the program, passes the signals `run` gets on to it, and returns its exit status.
    static func supervise(
        _ program: SandboxProgram, in network: SandboxNetwork, signals: SignalWatcher, started: ContinuousClock.Instant,
        logger: Logger
    ) async -> Int32 {
        var directory = [CChar](repeating: 0, count: Int(PATH_MAX))
        let cwd =
            getcwd(&directory, directory.count) != nil
            ? String(decoding: directory.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "/"
        var forwarding: Task<Void, Never>? = nil
        defer { forwarding?.cancel() }
        for await event in program.start(in: network, directory: cwd) {
            switch event {
            case .started(let pid):
                logger.info(
                    "program started", metadata: ["pid": "\(pid)", "after": "\(ContinuousClock.now - started)"])
                let stream = signals.stream
                forwarding = Task {
                    for await signal in stream { kill(pid, signal) }
                }
            case .failed(let failure):
                printError("dnsfence run: \(failure)")
                return failure.status
            case .exited(let status):
                return status
            }
        }
        return 1
    }

    static func claim(_ ports: [PublishedPort]) throws(ExitCode) -> (SandboxNetwork, Int32) {
        do throws(Subprocess.Failure) {
            return try SandboxNetwork.claim(publishing: ports, ipv6: SandboxNetwork.hostIPv6() == nil)
        } catch {
            printError("dnsfence run: \(error)")
            throw ExitCode(1)
        }
    }

    /// The flags as overrides, with the sandbox's listener and sets.
    func overrides(for network: SandboxNetwork) -> ConfigurationOverrides {
        var o = ConfigurationOverrides()
        o.allow = allow
        o.policyFiles = policy
        o.upstreams = upstream
        o.metrics = metrics
        o.queryLog = queryLog ?? (audit ? "denied" : config == nil ? "off" : nil)
        o.audit = audit
        o.sandbox = .init(
            listener: Endpoint(address: network.gateway, port: 53), netns: network.netnsPath, table: "dnsfence")
        return o
    }
}
