// The only file that talks to nftables. Each target network namespace gets one thread that
// enters the namespace (setns acts per thread) and owns there one libnftables context (setup,
// listing, verification: text commands) and one nfnetlink socket (element additions: binary
// batches built by libnftnl, no text and no cache refresh per transaction). Both are blocking
// and single-threaded, so they never touch an event loop.

import CNftBatch
import CNftables
import CoreMetrics
import DNSFenceCore
public import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Publishes into real nftables sets. A commit is one nfnetlink transaction per namespace, made
/// on a committer thread of its own (the kernel applies it inside `sendmsg`, so the
/// acknowledgement is there when the call returns); `publish(batch:)` lets a caller put many
/// requests into one transaction (the server gathers one event-loop tick's worth).
public final class NftablesSetPublisher: SetPublisher {
    /// Seconds on a monotonic clock.
    public typealias Clock = @Sendable () -> UInt64

    /// One worker and one monitor per namespace, by path ("" for dnsfence's own); namespaces
    /// are added as policies name them (``addNamespaces(_:)``), never removed.
    private let namespaces = Mutex<(workers: [String: NetnsWorker], monitors: [String: NetnsMonitor])>(([:], [:]))
    private let committer = JobThread<@Sendable () -> Void>(name: "dnsfence-commit")
    private let shadow: ShadowStore
    private let revokedCounter = Counter(label: "dnsfence_nft_elements_revoked_total")
    private let connectionsCutCounter = Counter(label: "dnsfence_conntrack_entries_cut_total")
    private let clock: Clock
    private let logger: Logger

    /// Starts one worker per namespace (nil: dnsfence's own), and one monitor per namespace
    /// that follows nftables change notifications (what `nft monitor` shows), so an element
    /// someone else deletes or flushes is re-published on the next answer that hands it out.
    /// `shadowTrustSeconds` bounds how long the shadow is believed without a commit, in case a
    /// notification is lost.
    public init(namespaces: Set<String?>, shadowTrustSeconds: UInt64 = 10, clock: @escaping Clock, logger: Logger) {
        let shadow = ShadowStore(SetShadow(trustSeconds: shadowTrustSeconds))
        self.shadow = shadow
        self.clock = clock
        self.logger = logger
        addNamespaces(namespaces)
    }

    /// Starts a worker and a monitor for each of `namespaces` that has none yet, or whose
    /// worker failed to enter it or is in a namespace the path no longer names (deleted and
    /// made again) (nil: dnsfence's own namespace). What a replaced worker had committed is
    /// forgotten: nothing in the new namespace is believed until committed there.
    public func addNamespaces(_ namespaces: Set<String?>) {
        let shadow = self.shadow
        let logger = self.logger
        self.namespaces.withLock { known in
            for netns in namespaces {
                if let worker = known.workers[netns ?? ""] {
                    // Replaced when it cannot serve and the path names a namespace again.
                    guard worker.hasFailed || !worker.isCurrent,
                        netns.map({ NamespaceIdentity(path: $0) != nil }) ?? true
                    else { continue }
                    logger.info("nftables worker replaced", metadata: ["netns": "\(netns ?? "-")"])
                    // Its sockets would keep the old namespace alive.
                    worker.retire(monitor: known.monitors[netns ?? ""])
                    shadow.withLock { s in s.forgetSets { $0.netns == netns } }
                }
                known.workers[netns ?? ""] = NetnsWorker(netns: netns, logger: logger)
                known.monitors[netns ?? ""] = NetnsMonitor(netns: netns, logger: logger) { event in
                    NftablesSetPublisher.apply(event, netns: netns, to: shadow)
                }
            }
        }
    }

    /// Retires the worker and monitor of every namespace not in `used` (a reload removed the
    /// last policy with sets there), so their sockets no longer keep the namespace alive;
    /// nothing there is believed any more.
    public func retireNamespaces(keeping used: Set<String?>) {
        let keep = Set(used.map { $0 ?? "" })
        let retired = namespaces.withLock { known in
            known.workers.keys.filter { !keep.contains($0) }.map { key in
                (key, known.workers.removeValue(forKey: key)!, known.monitors.removeValue(forKey: key))
            }
        }
        for (key, worker, monitor) in retired {
            worker.retire(monitor: monitor)
            shadow.withLock { s in s.forgetSets { ($0.netns ?? "") == key } }
            logger.info("nftables namespace retired", metadata: ["netns": "\(worker.netns ?? "-")"])
        }
    }

    /// Whether the namespace `netns` names now is the one its worker is in, and usable.
    public func isCurrent(_ netns: String?) -> Bool {
        guard let worker = worker(for: netns) else { return false }
        return !worker.hasFailed && worker.isCurrent
    }

    /// The worker of namespace `netns` (nil: dnsfence's own).
    func worker(for netns: String?) -> NetnsWorker? { namespaces.withLock { $0.workers[netns ?? ""] } }

    /// Whether the monitor of `netns` listens yet.
    func monitorListens(in netns: String?) -> Bool {
        (namespaces.withLock { $0.monitors[netns ?? ""] }?.socketFD ?? -1) >= 0
    }

    /// Applies one deletion notification to the shadow: deleted elements, sets and tables are
    /// no longer believed present (and after lost notifications, nothing in the namespace is).
    static func apply(_ event: NftablesEvent, netns: String?, to shadow: ShadowStore) {
        switch event {
        case .elementsDeleted(let family, let table, let set, let addresses):
            let target = { (t: SetTarget) in t.netns == netns && t.family == family && t.table == table && t.set == set
            }
            shadow.withLock { $0.forget(addresses, inSetsWhere: target) }
        case .setDeleted(let family, let table, let set):
            shadow.withLock { s in
                s.forgetSets { $0.netns == netns && $0.family == family && $0.table == table && $0.set == set }
            }
        case .tableDeleted(let family, let table):
            shadow.withLock { s in s.forgetSets { $0.netns == netns && $0.family == family && $0.table == table } }
        case .eventsLost:
            shadow.withLock { s in s.forgetSets { $0.netns == netns } }
        }
    }

    /// Statistics: transactions committed, elements written, failures, notifications seen.
    public var statistics: NetnsWorker.Statistics {
        let (workers, monitors) = namespaces.withLock { ($0.workers, $0.monitors) }
        var total = workers.values.reduce(into: NetnsWorker.Statistics()) { total, worker in
            let s = worker.statistics
            total.batches += s.batches
            total.elements += s.elements
            total.failures += s.failures
        }
        total.notifications = monitors.values.reduce(0) { $0 + $1.received.load(ordering: .relaxed) }
        return total
    }

    /// Creates (if `create`) and verifies each set: it must exist with the right address type
    /// and `flags timeout`. Seeds the shadow with the live elements so a restart never
    /// shortens what is already there. Never flushes anything.
    public func prepare(_ targets: [SetTarget], create: Bool) async throws(FirewallSetupError) {
        for target in targets where !NftablesCommand.isValid(target) { throw .invalidName(target) }
        // One libnftables run creates the sets of a namespace (a thousand sandboxes start with
        // half the runs); only if it fails, one run a set says which.
        var created = Set<String>()
        var seen = Set<String>()
        for target in targets where create && seen.insert(target.netns ?? "").inserted {
            let group = targets.filter { $0.netns == target.netns }
            guard group.count > 1, let worker = worker(for: target.netns) else { continue }
            if case .success = await worker.run(group.map(NftablesCommand.create).joined(separator: "\n")) {
                created.insert(target.netns ?? "")
            }
        }
        for target in targets {
            guard let worker = worker(for: target.netns) else {
                throw .unavailable(target, "no worker for namespace")
            }
            if create && !created.contains(target.netns ?? "") {
                if case .failure(let error) = await worker.run(NftablesCommand.create(target)) {
                    throw .createFailed(target, "\(error)")
                }
            }
            let listing: NftablesCommand.Listing
            switch await worker.run(NftablesCommand.list(target)) {
            case .failure(let error): throw .missing(target, "\(error)")
            case .success(let output): listing = NftablesCommand.parseListing(output)
            }
            if let problem = listing.problem(for: target) { throw problem }
            let now = clock()
            let live = listing.elements.compactMap { e in e.expiresIn.map { (e.address, $0) } }
            shadow.withLock { $0.seed(target, elements: live, now: now) }
        }
    }

    /// Problems with `targets` right now (empty: all exist with the right type and flags).
    public func verify(_ targets: [SetTarget]) async -> [String] {
        var problems: [String] = []
        for target in targets {
            guard let worker = worker(for: target.netns) else {
                problems.append("set \(target): no worker")
                continue
            }
            switch await worker.run(NftablesCommand.list(target)) {
            case .failure(let error):
                problems.append("set \(target): \(error)")
            case .success(let output):
                if let problem = NftablesCommand.parseListing(output).problem(for: target) {
                    problems.append("\(problem)")
                }
            }
        }
        return problems
    }

    public func needsCommit(_ element: SetElement) -> Bool {
        let now = clock()
        return shadow.withLock { $0.check(element, now: now) }
    }

    /// Commits on the committer thread; `completion` runs there.
    public func publish(_ elements: [SetElement], completion: @escaping @Sendable (PublishError?) -> Void) {
        publish(batch: [elements]) { completion($0[0]) }
    }

    public func publish(_ elements: [SetElement]) async throws(PublishError) {
        let error = await withCheckedContinuation { continuation in
            publish(elements) { continuation.resume(returning: $0) }
        }
        if let error { throw error }
    }

    /// All requests in one transaction per namespace; if that fails, each request alone. Runs
    /// on the committer thread, never on the caller's: nf_tables serialises transactions per
    /// namespace, so a large ruleset load by someone else can hold a commit for seconds, and an
    /// event loop must not wait for it (cache hits and denials go on; the answers that wait
    /// for this commit time out into SERVFAIL). `completion` runs on the committer thread.
    public func publish(batch requests: [[SetElement]], completion: @escaping @Sendable ([PublishError?]) -> Void) {
        committer.submit { [self] in
            guard requests.count > 1 else { return completion(requests.map { commit($0) }) }
            if commit(requests.flatMap { $0 }) == nil {
                return completion(Array(repeating: nil, count: requests.count))
            }
            completion(requests.map { commit($0) })
        }
    }

    /// Plans against the shadow, commits what changes anything (one transaction per
    /// namespace), and records the outcome in the shadow.
    func commit(_ elements: [SetElement]) -> PublishError? {
        let now = clock()
        // Once per set and address, with the longest timeout.
        let planned = shadow.withLock { $0.plan(elements, now: now) }
        // Whatever is committed (or was there already), its reasons are recorded.
        defer { shadow.withLock { $0.justify(elements, now: now) } }
        guard !planned.isEmpty else { return nil }
        let netns = planned[0].target.netns ?? ""
        var byNamespace: [String: [SetElement]] = [:]
        if planned.allSatisfy({ ($0.target.netns ?? "") == netns }) {
            byNamespace[netns] = planned  // one namespace: the usual case
        } else {
            for element in planned { byNamespace[element.target.netns ?? "", default: []].append(element) }
        }
        var firstError: PublishError? = nil
        for (netns, items) in byNamespace {
            guard let worker = worker(for: netns.isEmpty ? nil : netns) else {
                firstError = firstError ?? .unavailable("no worker for namespace \(netns)")
                continue
            }
            let monitor = namespaces.withLock { $0.monitors[netns] }
            let (result, unwatched) = worker.commit(items, quieting: monitor)
            switch result {
            case .success:
                let committedAt = clock()
                shadow.withLock { $0.committed(items, now: min(now, committedAt)) }
            case .failure(let error):
                shadow.withLock { s in for target in Set(items.map(\.target)) { s.forget(target) } }
                firstError = firstError ?? error
            }
            // Someone else committed while the monitor was not listening: what they deleted
            // went unseen, so nothing in the namespace is believed until it is committed again.
            if unwatched { Self.apply(.eventsLost, netns: worker.netns, to: shadow) }
        }
        return firstError
    }
}

extension NftablesSetPublisher {
    /// Deletes the elements of `targets` that only refused reasons justify (``SetShadow/revocable``),
    /// one transaction per namespace. They leave the shadow first, so an answer that hands one
    /// out again meanwhile commits it anew; one that did so before the kernel's delete is
    /// committed again after it.
    public func revoke(in targets: [SetTarget], keeping keep: @escaping @Sendable (UInt64) -> Bool)
        async throws(PublishError) -> [SetElement]
    {
        let now = clock()
        let doomed = shadow.withLock { $0.revocable(in: Set(targets), now: now, keep: keep) }
        guard !doomed.isEmpty else { return [] }
        var firstError: PublishError? = nil
        for (netns, elements) in Dictionary(grouping: doomed, by: { $0.target.netns ?? "" }) {
            guard let worker = worker(for: netns.isEmpty ? nil : netns) else {
                firstError = firstError ?? .unavailable("no worker for namespace \(netns)")
                continue
            }
            let commands = Dictionary(grouping: elements, by: \.target).map { target, items in
                NftablesCommand.delete(items.map(\.address), from: target)
            }
            if case .failure = await worker.run(commands.joined(separator: "\n")) {
                // One element gone already (expired, or deleted by someone) fails the whole
                // transaction: delete one by one, a missing one is no error.
                for element in elements {
                    _ = await worker.run(NftablesCommand.delete([element.address], from: element.target))
                }
            }
        }
        revokedCounter.increment(by: doomed.count)
        // An answer that handed one out again between the shadow and the kernel committed it
        // before the delete: commit it once more.
        let again = shadow.withLock { s in doomed.filter { s.contains($0.address, in: $0.target) } }
        if !again.isEmpty {
            shadow.withLock { s in
                for target in Set(again.map(\.target)) { s.forget(again.map(\.address), inSetsWhere: { $0 == target }) }
            }
            try await publish(again.map { SetElement(target: $0.target, address: $0.address, timeout: 60) })
        }
        if let firstError { throw firstError }
        return doomed
    }
}

extension NftablesSetPublisher {
    /// Deletes the conntrack entries of flows to the addresses of `elements`, in their sets'
    /// namespaces (`revoke: connections`, after ``revoke(in:keeping:)``: a flow's next packet
    /// is then new to the firewall, which no longer has its address). Returns how many.
    public func cutConnections(to elements: [SetElement]) async throws(PublishError) -> Int {
        var cut = 0
        var firstError: PublishError? = nil
        for (netns, items) in Dictionary(grouping: elements, by: { $0.target.netns ?? "" }) {
            guard let worker = worker(for: netns.isEmpty ? nil : netns) else {
                firstError = firstError ?? .unavailable("no worker for namespace \(netns)")
                continue
            }
            switch await worker.cutConnections(to: Array(Set(items.map(\.address)))) {
            case .success(let count): cut += count
            case .failure(let error): firstError = firstError ?? error
            }
        }
        connectionsCutCounter.increment(by: cut)
        if let firstError { throw firstError }
        return cut
    }
}

/// The shadow behind a lock, shared by the publisher and its monitors.
final class ShadowStore: Sendable {
    private let mutex: Mutex<SetShadow>

    init(_ shadow: SetShadow) { mutex = Mutex(shadow) }

    func withLock<R>(_ body: (inout SetShadow) -> R) -> R {
        mutex.withLock { body(&$0) }
    }
}
