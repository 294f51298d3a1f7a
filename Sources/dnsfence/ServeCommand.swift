import ArgumentParser
import DNSFenceConfig
import DNSFenceFirewall
import DNSFenceIO
import DNSFenceObserve
import DNSFencePolicy
import DNSFenceResolve
import DNSFenceServe
import DNSFenceWire
import Dispatch
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// `dnsfence serve`: the resolver. Builds the services from the configuration; no logic here.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Answer DNS queries for allowlisted names; refuse everything else without forwarding it."
    )

    @OptionGroup var options: ConfigurationOptions

    @Option(name: .long, help: "Event-loop threads (default: one per core).")
    var threads: Int?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(
        name: .long,
        help: "Run as USER, keeping only CAP_NET_ADMIN, CAP_SYS_ADMIN and CAP_NET_BIND_SERVICE (start as root).")
    var user: String?

    func run() async throws {
        // First of all: nothing is opened, bound or started as root that the user could not.
        if let user {
            do throws(Privileges.Failure) {
                try Privileges.become(user)
            } catch {
                printError("dnsfence: \(error)")
                throw ExitCode(1)
            }
        }
        let level = Logger.Level(rawValue: logLevel) ?? .info
        let journal = JournalLogHandler.stderrIsJournal(processEnvironment())
        LoggingSystem.bootstrap { label in
            if journal { return JournalLogHandler(logLevel: level, label: label) }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "dnsfence")
        // Metrics are bootstrapped before any layer creates its counters.
        let registry = Observability.bootstrapMetrics()
        // Signals are caught from the start: a SIGHUP while starting must not kill the server.
        let signals = SignalWatcher([SIGHUP, SIGINT, SIGTERM])
        let notifier = SystemdNotifier(environment: processEnvironment())

        let compiled: CompiledConfiguration
        do {
            compiled = try ConfigurationLoader().load(configPath: options.config, overrides: options.overrides)
        } catch {
            for diagnostic in error.diagnostics { printError("\(diagnostic)") }
            throw ExitCode(1)
        }
        for warning in compiled.warnings { logger.warning("\(warning)") }
        let config = compiled.configuration
        Observability.recordStartup(compiled)
        // Fail closed: the sets must exist (or be created) with the right type before any
        // answer is given; a policy whose sets cannot be verified stops the start.
        let runtime: ServerRuntime
        do {
            runtime = try await ServerRuntime(
                configPath: options.config, overrides: options.overrides, compiled: compiled,
                threads: max(1, threads ?? System.coreCount), notifier: notifier, logger: logger)
        } catch {
            printError("dnsfence: \(error)")
            throw ExitCode(1)
        }
        let dnsServer = DNSServer(
            group: runtime.group, loops: runtime.loops, pipeline: runtime.pipeline, logger: logger)
        var limits = DNSServer.Limits()
        limits.tcpMaxConnections = config.tcp.maxConnections
        limits.tcpMaxPerClient = config.tcp.maxPerClient
        limits.tcpIdleTimeout = .seconds(Int64(config.tcp.idleTimeout))
        // Sockets systemd passed are served instead of binding (socket activation).
        let activation = SocketActivation(environment: processEnvironment())
        for problem in activation.unusable { logger.warning("socket activation: \(problem)") }
        do {
            try await dnsServer.start(try activation.listeners(for: config.listeners), limits: limits)
            await runtime.attach(dnsServer, activated: !activation.sockets.isEmpty)
        } catch {
            printError("dnsfence: cannot listen: \(error)")
            await runtime.shutdown(server: dnsServer)
            throw ExitCode(1)
        }
        let ready = ReadyFlag()
        var observability: ObservabilityServer? = nil
        if let metricsAddress = config.metrics {
            let pipeline = runtime.pipeline
            let server = ObservabilityServer(
                group: MultiThreadedEventLoopGroup(numberOfThreads: 1),
                metrics: { Observability.exposition(registry, extra: pipeline.metricsExposition()) },
                readiness: {
                    let snapshot = pipeline.snapshots.load()
                    let failing = snapshot.unavailable.sorted { $0.key < $1.key }.map {
                        "policy \($0.key): fails closed: \($0.value.extraText)"
                    }
                    return failing
                        + (await Observability.readiness(
                            ready: ready, forwarder: snapshot.forwarder, firewalls: snapshot.firewalls))
                },
                details: { runtime.lastReload.json })
            do {
                try await server.start(
                    at: try SocketAddress(ipAddress: metricsAddress.address.description, port: Int(metricsAddress.port))
                )
            } catch {
                printError("dnsfence: cannot serve metrics on \(metricsAddress): \(error)")
                await runtime.shutdown(server: dnsServer)
                throw ExitCode(1)
            }
            observability = server
        }
        var control: ControlServer? = nil
        if let path = config.control {
            let server = ControlServer(group: runtime.group) { command in
                await Self.control(command, runtime: runtime)
            }
            do {
                try await server.start(at: path)
            } catch {
                printError("dnsfence: cannot open the control socket \(path): \(error)")
                await observability?.shutdown()
                await runtime.shutdown(server: dnsServer)
                throw ExitCode(1)
            }
            control = server
        }
        ready.set()
        let supervisor = await runtime.supervise()
        notifier.ready(status: await runtime.status)
        let watchdog = notifier.watchdogInterval.map { interval in
            Task {
                while !Task.isCancelled {
                    notifier.watchdog()
                    try? await Task.sleep(for: interval / 2)
                }
            }
        }
        logger.info(
            "ready",
            metadata: [
                "policies": "\(compiled.selector.entries.count)", "rules": "\(compiled.ruleCount)",
                "upstreams": "\(config.upstreams.map(\.description).joined(separator: ","))",
                "control": "\(config.control ?? "-")", "uid": "\(getuid())",
                "capabilities": "\(getuid() == 0 ? "root" : Privileges.effective.joined(separator: ","))",
            ])
        // SIGHUP reloads; SIGINT and SIGTERM stop.
        var stopSignal: Int32 = SIGTERM
        for await signal in signals.stream {
            if signal == SIGHUP {
                logger.info("SIGHUP: reloading")
                _ = await runtime.reload()
                continue
            }
            stopSignal = signal
            break
        }
        logger.info(
            "stopping", metadata: ["signal": "\(stopSignal)", "inflight": "\(runtime.pipeline.inflightCount)"])
        ready.clear()
        notifier.stopping()
        watchdog?.cancel()
        supervisor.cancel()
        await control?.shutdown()
        await observability?.shutdown()
        await runtime.shutdown(server: dnsServer)
    }

    /// One command from the control socket: `reload` (replies `ok` or `failed`, then one
    /// message per line) or `status`.
    static func control(_ command: String, runtime: ServerRuntime) async -> String {
        switch command {
        case "reload":
            return await runtime.reload().reply
        case "status":
            let json = runtime.lastReload.json
            return "ok\n" + (json.isEmpty ? "no reload yet" : "{" + json + "}")
        default:
            return "failed\nunknown command '\(command)' (known: reload, status)"
        }
    }
}

/// Delivers the given signals as an async stream (their default actions are disabled while it
/// lives: a signal is never lost between two reads).
final class SignalWatcher {
    let stream: AsyncStream<Int32>
    private let sources: [any DispatchSourceSignal]

    init(_ signals: [Int32]) {
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        let queue = DispatchQueue(label: "dnsfence.signals")
        self.stream = stream
        sources = signals.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            return source
        }
    }
}

/// The process environment as a dictionary (without Foundation).
func processEnvironment() -> [String: String] {
    var result: [String: String] = [:]
    var entry = environ
    while let pointer = entry.pointee {
        let text = String(cString: pointer)
        if let equals = text.firstIndex(of: "=") {
            result[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        entry += 1
    }
    return result
}

func printError(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
