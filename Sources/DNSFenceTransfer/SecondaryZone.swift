import CoreMetrics
import DNSFenceCore
public import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Applies a transferred zone: compiles the policies with `content` for this zone (nil: as the
/// secondaries stand, e.g. after expiry), or patches them with `changes` (an IXFR's), swaps the
/// snapshot in and revokes what it no longer allows, calling `commit` before anything else can
/// read the zones again. Returns nil on success, else why nothing changed.
public typealias ZoneApply =
    @Sendable (
        _ zone: String, _ content: ZoneContent?, _ changes: ZoneChanges?, _ commit: @escaping @Sendable () -> Void
    ) async -> String?

/// What an IXFR changed: each owner it touched (absolute, lowercased) with its records now
/// (none: the owner is gone), and the new SOA.
public struct ZoneChanges: Sendable {
    public var serial: UInt32
    public var soaLine: String
    public var owners: [String: [String]]
    /// The changes themselves, for a whole compile (``SecondaryZone/preview(_:)``).
    public var delta: ZoneDelta
}

/// One policy zone kept from its primaries (RFC 1996/1995/5936 timers): refreshed every SOA
/// refresh, retried every SOA retry after a failure, at once on a NOTIFY; expired (the policies
/// using it fail closed) when no refresh succeeded for SOA expire. A transfer is used only
/// when complete, verified and compiled; otherwise nothing changes.
public final class SecondaryZone: Sendable {
    public let source: ZoneTransferSource

    struct State {
        var content: ZoneContent?
        /// Monotonic seconds of the last successful refresh (or the cache file's age at start).
        var refreshed: Double?
        var expired = false
        /// When the next refresh is due (monotonic seconds).
        var due: Double = 0
        var notified = false
        var stopped = false
        var lastError: String?
    }

    private let state: Mutex<State>
    private let metrics: ZoneMetrics
    private let logger: Logger

    /// Starts from the cache file when there is one.
    public init(source: ZoneTransferSource, logger: Logger) {
        self.source = source
        var logger = logger
        logger[metadataKey: "zone"] = "\(source.zone)"
        self.logger = logger
        metrics = ZoneMetrics(zone: source.zone)
        var initial = State()
        if case .success(let cached) = ZoneCache.load(source) {
            initial.content = cached.content
            initial.refreshed = Self.now() - Double(max(0, time(nil) - cached.refreshed))
            initial.expired = cached.expired
            metrics.serial.record(Int64(cached.content.soa.serial))
            metrics.refreshed.record(Double(cached.refreshed))
            logger.info(
                "zone loaded from the cache",
                metadata: ["serial": "\(cached.content.soa.serial)", "expired": "\(cached.expired)"])
        }
        metrics.expired.record(initial.expired ? 1 : 0)
        state = Mutex(initial)
    }

    /// What the policies get now.
    public var current: ZoneState {
        state.withLock { s in
            guard let content = s.content else {
                return .unavailable(
                    "zone \(source.zone) not transferred yet" + (s.lastError.map { ": \($0)" } ?? ""), text: nil)
            }
            if s.expired { return .unavailable(CachedZones.expired(source, content.soa.serial), text: content.text) }
            return .serving(content.text)
        }
    }

    public var serial: UInt32? { state.withLock { $0.content?.soa.serial } }

    /// The zone held with `delta` applied (a copy), for a policy that must be compiled whole.
    public func preview(_ delta: ZoneDelta) -> ZoneContent? {
        guard var content = state.withLock({ $0.content }) else { return nil }
        content.apply(delta)
        return content
    }

    /// A NOTIFY from a primary: refresh now.
    public func notified() {
        logger.info("NOTIFY: refreshing")
        state.withLock { $0.notified = true }
    }

    public func stop() { state.withLock { $0.stopped = true } }

    /// Refreshes whenever due until stopped; the transfers themselves run on their own thread.
    public func run(apply: @escaping ZoneApply) -> Task<Void, Never> {
        Task {
            while !Task.isCancelled {
                let (go, stopped) = state.withLock { s in (s.notified || Self.now() >= s.due, s.stopped) }
                if stopped { return }
                if go { await refresh(apply: apply) } else { try? await Task.sleep(for: .milliseconds(100)) }
            }
        }
    }

    /// One refresh: each primary in order until one answers.
    func refresh(apply: ZoneApply) async {
        // The zone held is read on the transfer's thread and not kept here: an IXFR's changes
        // are applied to it in place, which a second reference would turn into a copy.
        let held = state.withLock { s -> (has: Bool, refresh: UInt32?) in
            s.notified = false
            return (s.content != nil, s.content?.soa.refresh)
        }
        let client = ZoneTransferClient(zone: source.zone, key: source.key)
        var errors: [String] = []
        for primary in source.primaries {
            let started = Self.now()
            let result = await Self.onThread { [self] in
                Result { () throws(TransferError) in
                    try client.fetch(from: primary, current: state.withLock { $0.content })
                }
            }
            switch result {
            case .failure(let error):
                metrics.transfer(held.has ? "ixfr" : "axfr", result: error.label)
                logger.warning("transfer failed", metadata: ["primary": "\(primary)", "error": "\(error)"])
                errors.append("\(primary): \(error)")
                continue
            case .success(.upToDate):
                metrics.transfer("none", result: "success")
                ZoneCache.touch(source)
                if succeeded(next: held.refresh) {
                    logger.notice("zone refreshed after expiry: its policies serve again")
                    _ = await apply(source.zone, nil, nil) {}
                }
                return
            case .success(let outcome):
                let applying = Self.now()
                let failure: String?
                let serial: UInt32
                var added = 0
                var removed = 0
                switch outcome {
                case .full(let content):
                    (serial, added) = (content.soa.serial, content.count)
                    failure = await apply(source.zone, content, nil) { [self] in
                        state.withLock { s in
                            s.content = content
                            s.expired = false
                        }
                    }
                case .incremental(let delta, let a, let r, let owners):
                    (serial, added, removed) = (delta.serial, a, r)
                    let changes = ZoneChanges(
                        serial: delta.serial, soaLine: delta.soaLine, owners: owners, delta: delta)
                    failure = await apply(source.zone, nil, changes) { [self] in
                        state.withLock { s in
                            s.content?.apply(delta)
                            s.expired = false
                        }
                    }
                case .upToDate: return
                }
                if let failure {
                    metrics.transfer(outcome.kind, result: "rejected")
                    logger.error(
                        "transfer not applied; the zone held keeps serving",
                        metadata: ["primary": "\(primary)", "serial": "\(serial)", "error": "\(failure)"])
                    errors.append("\(primary): serial \(serial) not applied: \(failure)")
                    break
                }
                metrics.transfer(outcome.kind, result: "success")
                metrics.records(added: added, removed: removed)
                metrics.apply.record(Self.now() - applying)
                metrics.serial.record(Int64(serial))
                logger.notice(
                    "zone transferred",
                    metadata: [
                        "primary": "\(primary)", "type": "\(outcome.kind)", "serial": "\(serial)",
                        "added": "\(added)", "removed": "\(removed)", "seconds": "\(Self.now() - started)",
                    ])
                if let content = state.withLock({ $0.content }) {
                    if let error = ZoneCache.store(content, for: source, from: primary) { errors.append("\(error)") }
                    _ = succeeded(next: content.soa.refresh)
                }
                if !errors.isEmpty { state.withLock { $0.lastError = errors.joined(separator: "; ") } }
                return
            }
            break
        }
        // Every primary failed (or what came could not be applied): retry, and expire in time.
        let expire = state.withLock { s -> Bool in
            s.lastError = errors.joined(separator: "; ")
            let retry = Double(max(1, s.content?.soa.retry ?? 5))
            s.due = Self.now() + retry
            guard let content = s.content, !s.expired, let refreshed = s.refreshed else { return false }
            if Self.now() - refreshed >= Double(content.soa.expire) {
                s.expired = true
                return true
            }
            // Never sleep past expiry.
            s.due = min(s.due, refreshed + Double(content.soa.expire))
            return false
        }
        if expire {
            metrics.expired.record(1)
            logger.error("zone expired: its policies fail closed", metadata: ["errors": "\(errors)"])
            _ = await apply(source.zone, nil, nil) {}
        }
    }

    /// Records a successful refresh; returns whether the zone was expired until now.
    private func succeeded(next refresh: UInt32?) -> Bool {
        metrics.refreshed.record(Double(time(nil)))
        metrics.expired.record(0)
        return state.withLock { s in
            let was = s.expired
            s.expired = false
            s.refreshed = Self.now()
            s.due = Self.now() + Double(max(1, refresh ?? 60))
            s.lastError = nil
            return was
        }
    }

    /// Monotonic seconds.
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Runs a blocking `body` on a thread of its own.
    static func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            if !startThread(named: "dnsfence-xfr", { continuation.resume(returning: body()) }) {
                continuation.resume(returning: body())
            }
        }
    }
}

/// The metrics of one zone.
struct ZoneMetrics: Sendable {
    let zone: String
    let serial: Gauge
    let refreshed: Gauge
    let expired: Gauge
    let apply: Gauge

    init(zone: String) {
        self.zone = zone
        serial = Gauge(label: "dnsfence_zone_serial", dimensions: [("zone", zone)])
        refreshed = Gauge(label: "dnsfence_zone_refresh_timestamp_seconds", dimensions: [("zone", zone)])
        expired = Gauge(label: "dnsfence_zone_expired", dimensions: [("zone", zone)])
        apply = Gauge(label: "dnsfence_zone_apply_seconds", dimensions: [("zone", zone)])
    }

    func transfer(_ type: String, result: String) {
        Counter(
            label: "dnsfence_zone_transfers_total", dimensions: [("zone", zone), ("type", type), ("result", result)]
        )
        .increment()
    }

    func records(added: Int, removed: Int) {
        Counter(label: "dnsfence_zone_records_changed_total", dimensions: [("zone", zone), ("change", "added")])
            .increment(by: added)
        Counter(label: "dnsfence_zone_records_changed_total", dimensions: [("zone", zone), ("change", "removed")])
            .increment(by: removed)
    }
}
