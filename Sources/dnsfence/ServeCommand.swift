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

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "dnsfence")
        // Metrics are bootstrapped before any layer creates its counters.
        let registry = Observability.bootstrapMetrics()

        let compiled: CompiledConfiguration
        do {
            compiled = try ConfigurationLoader().load(configPath: options.config, overrides: options.overrides)
        } catch {
            for diagnostic in error.diagnostics { printError("\(diagnostic)") }
            throw ExitCode(1)
        }
        for warning in compiled.warnings { logger.warning("\(warning)") }
        let config = compiled.configuration
        // Fail closed: the sets must exist (or be created) with the right type before any
        // answer is given; a policy whose sets cannot be verified stops the start.
        let firewalls: [String: FirewallBinding]
        do {
            firewalls = try await Self.prepareFirewalls(config, logger: logger)
        } catch {
            printError("dnsfence: \(error)")
            throw ExitCode(1)
        }

        // UDP (listeners and upstream sockets) runs on our datagram loops, TCP on NIO's.
        let threadCount = max(1, threads ?? System.coreCount)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threadCount)
        let loops: [DatagramLoop]
        do {
            loops = try (0..<threadCount).map { try DatagramLoop(name: "dnsfence-udp-\($0)") }
        } catch {
            printError("dnsfence: cannot start the UDP loops: \(error)")
            throw ExitCode(1)
        }
        let upstreams = try config.upstreams.map {
            try SocketAddress(ipAddress: $0.address.description, port: Int($0.port))
        }
        let forwarder = UpstreamForwarder(settings: .init(upstreams: upstreams), group: group, logger: logger)
        do {
            try await forwarder.start(loops: loops)
        } catch {
            printError("dnsfence: cannot open upstream sockets: \(error)")
            throw ExitCode(1)
        }
        let cache = AnswerCache(
            limits: .init(
                maxEntries: config.cache.maxEntries, minTTL: config.cache.minTTL, maxTTL: config.cache.maxTTL),
            clock: { UInt64(DispatchTime.now().uptimeNanoseconds / 1_000_000_000) }
        )
        Observability.recordStartup(compiled)
        let pipeline = QueryPipeline(
            selector: compiled.selector, cache: cache, forwarder: forwarder, logger: logger, firewalls: firewalls,
            queryLog: Observability.queryLog(config.queryLog))
        let dnsServer = DNSServer(group: group, loops: loops, pipeline: pipeline, logger: logger)
        var limits = DNSServer.Limits()
        limits.tcpMaxConnections = config.tcp.maxConnections
        limits.tcpMaxPerClient = config.tcp.maxPerClient
        limits.tcpIdleTimeout = .seconds(Int64(config.tcp.idleTimeout))
        do {
            try await dnsServer.start(
                config.listeners.map {
                    DNSServer.Listener(
                        address: try SocketAddress(
                            ipAddress: $0.endpoint.address.description, port: Int($0.endpoint.port)),
                        policy: $0.policy)
                }, limits: limits)
        } catch {
            printError("dnsfence: cannot listen: \(error)")
            forwarder.stop()
            for loop in loops { try? await loop.shutdownGracefully() }
            try? await group.shutdownGracefully()
            throw ExitCode(1)
        }
        let ready = ReadyFlag()
        var observability: ObservabilityServer? = nil
        if let metricsAddress = config.metrics {
            let server = ObservabilityServer(
                group: MultiThreadedEventLoopGroup(numberOfThreads: 1),
                metrics: { Observability.exposition(registry, extra: pipeline.metricsExposition()) },
                readiness: { await Observability.readiness(ready: ready, forwarder: forwarder, firewalls: firewalls) })
            do {
                try await server.start(
                    at: try SocketAddress(ipAddress: metricsAddress.address.description, port: Int(metricsAddress.port))
                )
            } catch {
                printError("dnsfence: cannot serve metrics on \(metricsAddress): \(error)")
                await dnsServer.shutdown()
                throw ExitCode(1)
            }
            observability = server
        }
        ready.set()
        logger.info(
            "ready",
            metadata: [
                "policies": "\(compiled.selector.entries.count)", "rules": "\(compiled.ruleCount)",
                "upstreams": "\(config.upstreams.map(\.description).joined(separator: ","))",
            ])
        let signal = await Self.waitForTermination()
        logger.info("stopping", metadata: ["signal": "\(signal)", "inflight": "\(pipeline.inflightCount)"])
        ready.clear()
        await dnsServer.drainAndShutdown()
        await observability?.shutdown()
        forwarder.stop()
        for loop in loops { try? await loop.shutdownGracefully() }
        try? await group.shutdownGracefully()
    }

    /// One nftables publisher for every namespace the policies name; sets created or verified.
    static func prepareFirewalls(_ config: ServerConfiguration, logger: Logger) async throws -> [String:
        FirewallBinding]
    {
        let policies = config.policies.filter { $0.firewall != nil }
        guard !policies.isEmpty else { return [:] }
        let publisher = NftablesSetPublisher(
            namespaces: Set(policies.map { $0.firewall?.netns }),
            clock: { UInt64(DispatchTime.now().uptimeNanoseconds / 1_000_000_000) }, logger: logger)
        var bindings: [String: FirewallBinding] = [:]
        for policy in policies {
            guard let fw = policy.firewall else { continue }
            let v4 = fw.ipv4Set.map {
                SetTarget(netns: fw.netns, family: fw.family, table: fw.table, set: $0, isIPv6: false)
            }
            let v6 = fw.ipv6Set.map {
                SetTarget(netns: fw.netns, family: fw.family, table: fw.table, set: $0, isIPv6: true)
            }
            try await publisher.prepare([v4, v6].compactMap { $0 }, create: fw.create)
            bindings[policy.name] = FirewallBinding(
                publisher: publisher, ipv4: v4, ipv6: v6, minTTL: fw.minTTL, maxTTL: fw.maxTTL, grace: fw.grace,
                admitPrivate: fw.admitPrivate)
            logger.info(
                "firewall sets ready",
                metadata: [
                    "policy": "\(policy.name)", "ipv4": "\(v4.map(\.description) ?? "-")",
                    "ipv6": "\(v6.map(\.description) ?? "-")",
                ])
        }
        return bindings
    }

    /// Suspends until SIGINT or SIGTERM.
    static func waitForTermination() async -> Int32 {
        await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
            let queue = DispatchQueue(label: "dnsfence.signals")
            let fired = SignalLatch(continuation)
            queue.sync {
                for sig in [SIGINT, SIGTERM] {
                    signal(sig, SIG_IGN)
                    let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
                    source.setEventHandler { fired.fire(sig) }
                    source.resume()
                    fired.retain(source)
                }
            }
        }
    }
}

/// Resumes a continuation once, from whichever signal comes first.
/// `@unchecked Sendable`: every access happens on the one serial signal queue.
final class SignalLatch: @unchecked Sendable {
    private var continuation: CheckedContinuation<Int32, Never>?
    private var sources: [any DispatchSourceSignal] = []

    init(_ continuation: CheckedContinuation<Int32, Never>) { self.continuation = continuation }

    func retain(_ source: any DispatchSourceSignal) { sources.append(source) }

    func fire(_ signal: Int32) {
        continuation?.resume(returning: signal)
        continuation = nil
    }
}

func printError(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
