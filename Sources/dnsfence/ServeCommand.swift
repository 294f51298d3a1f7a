import ArgumentParser
import DNSFenceConfig
import DNSFenceCore
import DNSFenceFirewall
import DNSFenceIO
import DNSFenceObserve
import DNSFencePolicy
import DNSFenceResolve
import DNSFenceServe
import DNSFenceTransfer
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
        DescriptorLimit.raise()
        if let user {
            do throws(Privileges.Failure) {
                try Privileges.become(user)
            } catch {
                printError("dnsfence: \(error)")
                throw ExitCode(1)
            }
        }
        let logger = Self.bootstrapLogging(level: logLevel)
        // Metrics are bootstrapped before any layer creates its counters.
        let registry = Observability.bootstrapMetrics()
        // Signals are caught from the start: a SIGHUP while starting must not kill the server.
        let signals = SignalWatcher([SIGHUP, SIGINT, SIGTERM, SIGUSR1])
        let notifier = SystemdNotifier(environment: processEnvironment())
        // The zones kept from primaries, made before the first load so that it reads each
        // cache file once (the secondaries it makes are the ones that then serve).
        let zones = ZoneTransfers(logger: logger)
        let compiled = try Self.load(options.config, options.overrides, zones: zones)
        // Sockets systemd passed are served instead of binding (socket activation).
        let activation = SocketActivation(environment: processEnvironment())
        for problem in activation.unusable { logger.warning("socket activation: \(problem)") }
        let resolver = try await RunningResolver.start(
            compiled, configPath: options.config, overrides: options.overrides, threads: threads,
            activation: activation, notifier: notifier, registry: registry, logger: logger, zones: zones)
        notifier.ready(status: await resolver.runtime.status)
        let watchdog = notifier.watchdogInterval.map { interval in
            Task {
                while !Task.isCancelled {
                    notifier.watchdog()
                    try? await Task.sleep(for: interval / 2)
                }
            }
        }
        // SIGHUP reloads; SIGINT and SIGTERM stop.
        var stopSignal: Int32 = SIGTERM
        for await signal in signals.stream {
            if signal == SIGHUP {
                logger.info("SIGHUP: reloading")
                _ = await resolver.runtime.reload()
                continue
            }
            if signal == SIGUSR1 {
                resolver.runtime.reopenLog()
                continue
            }
            stopSignal = signal
            break
        }
        logger.info(
            "stopping",
            metadata: ["signal": "\(stopSignal)", "inflight": "\(resolver.runtime.pipeline.inflightCount)"])
        notifier.stopping()
        watchdog?.cancel()
        await resolver.stop()
    }

    /// Logging to standard error, or to the journal without our own timestamps.
    static func bootstrapLogging(level: String) -> Logger {
        let level = Logger.Level(rawValue: level) ?? .info
        let journal = JournalLogHandler.stderrIsJournal(processEnvironment())
        LoggingSystem.bootstrap { label in
            if journal { return JournalLogHandler(logLevel: level, label: label) }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: "dnsfence")
    }

    /// The configuration a start serves, or every error on standard error and exit 1.
    static func load(_ path: String?, _ overrides: ConfigurationOverrides, zones: any ZoneProvider)
        throws(ExitCode) -> CompiledConfiguration
    {
        do {
            return try ConfigurationLoader().load(configPath: path, overrides: overrides, zones: zones)
        } catch {
            for diagnostic in error.diagnostics { printError("\(diagnostic)") }
            throw ExitCode(1)
        }
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
