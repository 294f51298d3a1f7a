import CoreMetrics
import DNSFenceConfig
import DNSFenceFirewall
import DNSFenceIO
import DNSFenceObserve
import DNSFenceResolve
import DNSFenceServe
import DNSFenceTransfer
import Dispatch
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The running server: loops, listeners, the query pipeline and its current snapshot, and the
/// one way to change that snapshot while serving (``reload()``). An actor, so reloads never
/// overlap; queries never wait for it (they read the snapshot store).
actor ServerRuntime {
    let configPath: String?
    let overrides: ConfigurationOverrides
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    let loops: [DatagramLoop]
    let pipeline: QueryPipeline
    /// What the current snapshot was built from.
    private(set) var current: CompiledConfiguration
    /// The publisher every policy's sets are written through (one shadow across reloads, so a
    /// reload never shortens an element); made when the first policy with a firewall appears.
    private var publisher: NftablesSetPublisher?
    /// The query log's writer, made once (a reload changes only what is logged).
    private let logWriter: QueryLogWriter
    /// The last reload's outcome, for `/readyz` and `dnsfence reload`.
    let lastReload: ReloadRecord
    /// The service manager, told about reloads (RELOADING=1, then READY=1).
    let notifier: SystemdNotifier
    /// The listeners, once bound; a reload binds new ones and closes removed ones (not when
    /// they came from socket activation: those belong to systemd).
    private var server: (server: DNSServer, activated: Bool)?

    /// The policy zones kept from primaries (their secondaries and NOTIFY responder).
    let zones: ZoneTransfers
    /// The rate limiter's kernel filter, when it could be loaded (at start, while privileged).
    let shedder: KernelShedder?

    /// Whether a change of the snapshot (reload, applied transfer, rebuild) is under way, and
    /// who waits for it: they run one at a time. The actor alone does not ensure that, since
    /// each awaits in the middle (sets, sockets), where another could start from a `current`
    /// about to be replaced.
    private var changing = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    private let reloadSuccesses = Counter(label: "dnsfence_policy_reloads_total", dimensions: [("result", "success")])
    private let reloadFailures = Counter(label: "dnsfence_policy_reloads_total", dimensions: [("result", "failure")])

    /// Builds the first snapshot (sets created or verified, upstream sockets opened) and the
    /// pipeline over it. Throws a message for the operator: nothing is left running. The query
    /// log goes to `queryLogFD` (standard output; `run` gives the program that).
    init(
        configPath: String?, overrides: ConfigurationOverrides, compiled: CompiledConfiguration, threads: Int,
        notifier: SystemdNotifier, logger: Logger, queryLogFD: Int32 = 1, zones: ZoneTransfers? = nil
    ) async throws {
        self.notifier = notifier
        self.configPath = configPath
        self.overrides = overrides
        self.logger = logger
        self.current = compiled
        self.lastReload = ReloadRecord()
        let zones = zones ?? ZoneTransfers(logger: logger)
        self.zones = zones
        let shedder = Self.loadShedder(compiled.configuration, logger: logger)
        self.shedder = shedder
        self.logWriter = QueryLogWriter(
            fd: queryLogFD, path: compiled.configuration.queryLogFile, limits: Self.logLimits(compiled.configuration),
            dropped: Counter(label: "dnsfence_querylog_dropped_total"))
        // UDP (listeners and upstream sockets) runs on our datagram loops, TCP on NIO's.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let loops: [DatagramLoop]
        do {
            loops = try (0..<threads).map { try DatagramLoop(name: "dnsfence-udp-\($0)") }
        } catch {
            try? await group.shutdownGracefully()
            throw RuntimeError("cannot start the UDP loops: \(error)")
        }
        self.group = group
        self.loops = loops
        var publisher: NftablesSetPublisher? = nil
        let snapshot: Snapshot
        do {
            snapshot = try await Self.buildSnapshot(
                compiled, previous: nil, publisher: &publisher, group: group, loops: loops, logWriter: logWriter,
                zones: zones, shedder: shedder, logger: logger)
        } catch {
            for loop in loops { try? await loop.shutdownGracefully() }
            try? await group.shutdownGracefully()
            throw error
        }
        self.publisher = publisher
        self.pipeline = QueryPipeline(snapshot: snapshot, logger: logger)
        shedder?.configure(compiled.configuration.rateLimits)
        zones.configure(compiled.transfers)
    }

    /// The rate limiter's kernel filter, or nil (noted in the log when rate limits want it).
    private static func loadShedder(_ config: ServerConfiguration, logger: Logger) -> KernelShedder? {
        do {
            return try KernelShedder()
        } catch {
            if config.rateLimits?.kernel == true {
                logger.notice(
                    "rate limits are enforced by dnsfence alone, not in the kernel",
                    metadata: ["reason": "\(error)"])
            }
            return nil
        }
    }

    /// ``buildSnapshot(_:previous:publisher:group:loops:logWriter:zones:shedder:logger:)`` with
    /// this runtime's parts, over the snapshot now serving.
    private func nextSnapshot(_ compiled: CompiledConfiguration, publisher: inout NftablesSetPublisher?)
        async throws -> Snapshot
    {
        try await Self.buildSnapshot(
            compiled, previous: (current, pipeline.snapshots.load()), publisher: &publisher, group: group,
            loops: loops, logWriter: logWriter, zones: zones, shedder: shedder, logger: logger)
    }

    /// Reads the configuration again (with the same command-line overrides), builds a snapshot
    /// from it off the event loops, and swaps it in: the next query uses it, queries in flight
    /// finish on the old one. On any error the old snapshot keeps serving and every error is
    /// reported (file:line where there is one), logged and counted.
    func reload() async -> ReloadOutcome {
        notifier.reloading()
        let outcome = await exclusively { await reloadSnapshot() }
        notifier.ready(status: status + (outcome.succeeded ? "" : "; last reload failed"))
        return outcome
    }

    /// One line for the service manager: what is serving.
    var status: String {
        "serving \(current.selector.entries.count) policies, \(current.ruleCount) rules, "
            + "\(current.configuration.upstreams.count) upstreams"
    }

    private func reloadSnapshot() async -> ReloadOutcome {
        let started = ContinuousClock.now
        let compiled: CompiledConfiguration
        do {
            compiled = try ConfigurationLoader().load(configPath: configPath, overrides: overrides, zones: zones)
        } catch {
            return fail(error.diagnostics.map(\.description), started: started)
        }
        let outcome = await install(compiled, started: started, onSwap: {}, event: "reloaded")
        if outcome.succeeded { zones.configure(compiled.transfers) }
        return outcome
    }

    /// Builds the snapshot of `compiled`, swaps it in (`onSwap` then), revokes what it no longer
    /// allows and updates listeners: what a reload and an applied transfer share.
    func install(
        _ compiled: CompiledConfiguration, started: ContinuousClock.Instant, onSwap: () -> Void, event: String
    ) async -> ReloadOutcome {
        var notes = compiled.warnings.map(\.description)
        notes += Self.restartOnlyChanges(
            from: current.configuration, to: compiled.configuration, activated: server?.activated ?? false)
        let previous = pipeline.snapshots.load()
        var publisher = self.publisher
        let snapshot: Snapshot
        do {
            snapshot = try await nextSnapshot(compiled, publisher: &publisher)
        } catch {
            return fail(["\(error)"], started: started)
        }
        self.publisher = publisher
        logWriter.configure(path: compiled.configuration.queryLogFile, limits: Self.logLimits(compiled.configuration))
        pipeline.snapshots.swap(snapshot)
        shedder?.configure(compiled.configuration.rateLimits)
        current = compiled
        onSwap()
        let revoked = await revoke(after: previous, now: snapshot, notes: &notes)
        // After revocation, which still needed them: namespaces no policy names any more.
        publisher?.retireNamespaces(keeping: compiled.configuration.firewallNamespaces)
        if let (server, activated) = server, !activated {
            // Sandboxes come and go with their listeners; the others keep their sockets.
            do {
                notes += await server.update(to: try compiled.configuration.listeners.map(Self.listener))
            } catch {
                notes.append("listeners: \(error)")
            }
        }
        if previous.forwarder !== snapshot.forwarder {
            // Queries in flight keep the old upstreams; their sockets close once they are done.
            let old = previous.forwarder
            Task {
                try? await Task.sleep(for: .seconds(10))
                old.stop()
            }
        }
        Observability.recordPolicies(compiled)
        reloadSuccesses.increment()
        let elapsed = ContinuousClock.now - started
        let outcome = ReloadOutcome(succeeded: true, messages: notes, duration: elapsed, revoked: revoked)
        lastReload.set(outcome)
        logger.info(
            "\(event)",
            metadata: [
                "policies": "\(compiled.selector.entries.count)", "rules": "\(compiled.ruleCount)",
                "revoked": "\(revoked)", "duration": "\(elapsed)",
            ])
        for note in notes { logger.warning("\(note)") }
        return outcome
    }

    /// Deletes from the sets of the snapshot that was serving every element that only names
    /// the new policies no longer pass justified; returns how many.
    private func revoke(after old: Snapshot, now new: Snapshot, notes: inout [String]) async -> Int {
        guard let publisher, !old.firewalls.isEmpty else { return 0 }
        let targets = old.firewalls.values.flatMap(\.targets)
        // Flows are cut where the old or the new binding of a set asks for it.
        let cutting = Set(
            (Array(old.firewalls.values) + Array(new.firewalls.values)).filter(\.revokesConnections).flatMap(\.targets))
        let selector = new.selector
        let reasons = pipeline.reasons
        var revoked: [SetElement] = []
        do {
            revoked = try await publisher.revoke(in: targets) { reasons.keeps($0, under: selector) }
        } catch {
            notes.append("revocation incomplete: \(error)")
        }
        let cut = revoked.filter { cutting.contains($0.target) }
        if !cut.isEmpty {
            do {
                let count = try await publisher.cutConnections(to: cut)
                if count > 0 { notes.append("cut \(count) connection(s) to revoked addresses") }
            } catch {
                notes.append("connections to revoked addresses not cut: \(error)")
            }
        }
        // No element outlives its policy's max-ttl + grace: older reasons hold nothing.
        let longest = current.configuration.policies.compactMap { $0.firewall.map { $0.maxTTL + $0.grace } }.max() ?? 0
        reasons.prune(olderThan: UInt64(longest) + 3600, now: QueryRecord.monotonicNow() / 1_000_000_000)
        return revoked.count
    }

    private func fail(_ errors: [String], started: ContinuousClock.Instant) -> ReloadOutcome {
        reloadFailures.increment()
        let outcome = ReloadOutcome(
            succeeded: false, messages: errors, duration: ContinuousClock.now - started, revoked: 0)
        lastReload.set(outcome)
        logger.error("reload failed; the previous configuration keeps serving")
        for error in errors { logger.error("\(error)") }
        return outcome
    }

    /// Runs `body` when no other change of the snapshot is under way.
    func exclusively<T: Sendable>(_ body: () async -> T) async -> T {
        while changing { await withCheckedContinuation { waiting.append($0) } }
        changing = true
        defer {
            changing = false
            if !waiting.isEmpty { waiting.removeFirst().resume() }
        }
        return await body()
    }

    /// The listeners serving, for reloads to update.
    func attach(_ server: DNSServer, activated: Bool) { self.server = (server, activated) }

    /// Every two seconds: a policy whose namespace went away (or was made again) is rebuilt
    /// failing closed; a policy failing closed is tried again, with back-off, and serves again
    /// once its namespace and sets are there. No restart, no reload needed; other policies are
    /// not touched.
    func supervise() -> Task<Void, Never> {
        Task {
            var wait: UInt64 = 2
            var waited: UInt64 = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(2))
                waited += 2
                let (lost, failing) = firewallHealth()
                guard !lost.isEmpty || (!failing.isEmpty && waited >= wait) else { continue }
                waited = 0
                let recovered = await rebuild()
                wait = recovered ? 2 : min(wait * 2, 32)
            }
        }
    }

    /// Policies serving whose namespace is no longer the worker's, and policies failing closed.
    private func firewallHealth() -> (lost: [String], failing: [String]) {
        let snapshot = pipeline.snapshots.load()
        guard let publisher else { return ([], Array(snapshot.unavailable.keys)) }
        let lost = current.configuration.policies.compactMap { policy -> String? in
            guard let fw = policy.firewall, snapshot.unavailable[policy.name] == nil else { return nil }
            return publisher.isCurrent(fw.netns) ? nil : policy.name
        }
        return (lost, Array(snapshot.unavailable.keys))
    }

    /// A snapshot of the current configuration made again (workers of namespaces made again
    /// replaced, sets verified) and swapped in. Returns whether every policy serves now.
    private func rebuild() async -> Bool {
        await exclusively { await rebuildSnapshot() }
    }

    private func rebuildSnapshot() async -> Bool {
        let previous = pipeline.snapshots.load()
        var publisher = self.publisher
        guard let snapshot = try? await nextSnapshot(current, publisher: &publisher) else { return false }
        self.publisher = publisher
        pipeline.snapshots.swap(snapshot)
        let before = Set(previous.unavailable.keys)
        let after = Set(snapshot.unavailable.keys)
        for name in before.subtracting(after) { logger.notice("policy serves again", metadata: ["policy": "\(name)"]) }
        return after.isEmpty
    }

    /// Settings a reload reads but cannot apply while serving.
    static func restartOnlyChanges(from old: ServerConfiguration, to new: ServerConfiguration, activated: Bool)
        -> [String]
    {
        var notes: [String] = []
        if activated && old.listeners != new.listeners {
            notes.append("listeners changed, but the sockets came from systemd: change the .socket unit")
        }
        if old.metrics != new.metrics { notes.append("metrics.listen changed: restart dnsfence to bind it") }
        if old.control != new.control { notes.append("control changed: restart dnsfence to bind it") }
        if old.tcp != new.tcp { notes.append("tcp limits changed: restart dnsfence to apply them") }
        return notes
    }

    /// The listener a configured one binds.
    static func listener(_ configured: ListenerConfiguration) throws -> DNSServer.Listener {
        DNSServer.Listener(
            address: try SocketAddress(
                ipAddress: configured.endpoint.address.description, port: Int(configured.endpoint.port)),
            policy: configured.policy)
    }

    /// Stops everything: listeners drained first, then upstream sockets and loops.
    func shutdown(server: DNSServer) async {
        zones.stop()
        await server.drainAndShutdown()
        pipeline.snapshots.load().forwarder.stop()
        for loop in loops { try? await loop.shutdownGracefully() }
        try? await group.shutdownGracefully()
        logWriter.flush()
    }

    /// SIGUSR1: the query log file is opened again (logrotate moved it).
    nonisolated func reopenLog() { logWriter.reopen() }

    static func logLimits(_ config: ServerConfiguration) -> QueryLogWriter.Limits {
        QueryLogWriter.Limits(
            repeatLimit: config.queryLogRepeatLimit, maxBytesPerSecond: config.queryLogMaxBytesPerSecond)
    }
}

/// What one reload did.
struct ReloadOutcome: Sendable {
    var succeeded: Bool
    /// Errors when it failed; warnings (and settings that need a restart) when it succeeded.
    var messages: [String]
    var duration: Duration
    /// Set elements deleted because only names no longer allowed justified them.
    var revoked: Int

    /// The reply `dnsfence reload` prints: `ok` or `failed`, then one message per line.
    var reply: String {
        let summary = succeeded ? ["revoked \(revoked) set element(s)"] : []
        return ([succeeded ? "ok" : "failed"] + messages + summary).joined(separator: "\n")
    }
}

/// The last reload's outcome, readable from any thread (the `/readyz` handler).
final class ReloadRecord: Sendable {
    private let value = Mutex<(outcome: ReloadOutcome, at: String)?>(nil)

    func set(_ outcome: ReloadOutcome) {
        let at = JSONQueryLog.timestamp()
        value.withLock { $0 = (outcome, at) }
    }

    /// `"reload":{…}` for `/readyz`, or "" before the first reload.
    var json: String {
        guard let (outcome, at) = value.withLock({ $0 }) else { return "" }
        let messages = outcome.messages.map(QueryRecord.quote).joined(separator: ",")
        let key = outcome.succeeded ? "warnings" : "errors"
        return "\"reload\":{\"result\":\"\(outcome.succeeded ? "success" : "failure")\",\"at\":\"\(at)\","
            + "\"revoked\":\(outcome.revoked),\"\(key)\":[\(messages)]}"
    }
}

/// A message for the operator from starting the runtime.
struct RuntimeError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
