import ArgumentParser
import DNSFenceConfig
import DNSFenceCore
import DNSFenceObserve
import DNSFenceServe
import DNSFenceTransfer
import Logging
import NIOCore
import NIOPosix
import Prometheus

#if canImport(Glibc)
    import Glibc
#endif

/// A started resolver: the runtime, its listeners, the metrics and control servers and the
/// supervisor. What `serve` and `run` share; they differ in what they wait for.
struct RunningResolver {
    let runtime: ServerRuntime
    let server: DNSServer
    let ready: ReadyFlag
    let observability: ObservabilityServer?
    let control: ControlServer?
    let supervisor: Task<Void, Never>

    /// Builds the runtime (sets created or verified; a policy that cannot have them fails
    /// closed alone), listens (on `activation`'s sockets where they match), serves metrics and
    /// the control socket, and logs `ready`. Any failure: the error on standard error, what
    /// was started is stopped, exit 1.
    static func start(
        _ compiled: CompiledConfiguration, configPath: String?, overrides: ConfigurationOverrides, threads: Int?,
        activation: SocketActivation, notifier: SystemdNotifier, registry: PrometheusCollectorRegistry,
        logger: Logger, queryLogFD: Int32 = 1, zones: ZoneTransfers? = nil
    ) async throws(ExitCode) -> RunningResolver {
        for warning in compiled.warnings { logger.warning("\(warning)") }
        let config = compiled.configuration
        Observability.recordStartup(compiled)
        let runtime: ServerRuntime
        do {
            runtime = try await ServerRuntime(
                configPath: configPath, overrides: overrides, compiled: compiled,
                threads: max(1, threads ?? System.coreCount), notifier: notifier, logger: logger,
                queryLogFD: queryLogFD, zones: zones)
        } catch {
            printError("dnsfence: \(error)")
            throw ExitCode(1)
        }
        let dnsServer = DNSServer(
            group: runtime.group, loops: runtime.loops, pipeline: runtime.pipeline, logger: logger,
            shedder: runtime.shedder)
        var limits = DNSServer.Limits()
        // TCP clients may hold at most half the descriptor table, so the cap is reached before
        // the table is full (listeners, sets and upstream sockets need the rest).
        let descriptors = Int(min(DescriptorLimit.raise(), UInt64(Int.max)))
        limits.tcpMaxConnections = min(config.tcp.maxConnections, max(1, descriptors / 2))
        if limits.tcpMaxConnections < config.tcp.maxConnections {
            logger.notice(
                "tcp max-connections lowered to half the descriptor limit",
                metadata: [
                    "configured": "\(config.tcp.maxConnections)", "used": "\(limits.tcpMaxConnections)",
                    "descriptors": "\(descriptors)",
                ])
        }
        limits.tcpMaxPerClient = config.tcp.maxPerClient
        limits.tcpIdleTimeout = .seconds(Int64(config.tcp.idleTimeout))
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
            let server = Self.observabilityServer(runtime: runtime, ready: ready, registry: registry)
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
                await ServeCommand.control(command, runtime: runtime)
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
        await runtime.startTransfers()
        logger.info(
            "ready",
            metadata: [
                "policies": "\(compiled.selector.entries.count)", "rules": "\(compiled.ruleCount)",
                "upstreams": "\(config.upstreams.map(\.description).joined(separator: ","))",
                "control": "\(config.control ?? "-")", "uid": "\(getuid())",
                "descriptors": "\(descriptors)",
                "capabilities": "\(getuid() == 0 ? "root" : Privileges.effective.joined(separator: ","))",
            ])
        return RunningResolver(
            runtime: runtime, server: dnsServer, ready: ready, observability: observability, control: control,
            supervisor: supervisor)
    }

    /// /metrics, /healthz and /readyz (which names every policy failing closed).
    private static func observabilityServer(
        runtime: ServerRuntime, ready: ReadyFlag, registry: PrometheusCollectorRegistry
    ) -> ObservabilityServer {
        let pipeline = runtime.pipeline
        let shedder = runtime.shedder
        return ObservabilityServer(
            group: MultiThreadedEventLoopGroup(numberOfThreads: 1),
            metrics: {
                Observability.exposition(
                    registry, extra: pipeline.metricsExposition() + Observability.shedExposition(shedder))
            },
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
    }

    /// Not ready any more; stops the supervisor and the servers, closes the listeners, waits
    /// for the queries in flight (bounded), and shuts the loops down.
    func stop() async {
        ready.clear()
        supervisor.cancel()
        await control?.shutdown()
        await observability?.shutdown()
        await runtime.shutdown(server: server)
    }
}
