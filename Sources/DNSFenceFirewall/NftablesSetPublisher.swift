// The only file that talks to nftables. Each target network namespace gets one thread that
// enters the namespace (setns acts per thread) and owns there one libnftables context (setup,
// listing, verification: text commands) and one nfnetlink socket (element additions: binary
// batches built by libnftnl, no text and no cache refresh per transaction). Both are blocking
// and single-threaded, so they never touch an event loop.

import CNftBatch
import CNftables
import CoreMetrics
import DNSFenceIO
import DNSFenceWire
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

    private let workers: [String: NetnsWorker]
    private let committer = SerialThread(name: "dnsfence-commit")
    private let shadow: ShadowStore
    private let clock: Clock
    private let logger: Logger

    /// Starts one worker per namespace (nil: dnsfence's own), and one monitor per namespace
    /// that follows nftables change notifications (what `nft monitor` shows), so an element
    /// someone else deletes or flushes is re-published on the next answer that hands it out.
    /// `shadowTrustSeconds` bounds how long the shadow is believed without a commit, in case a
    /// notification is lost.
    public init(namespaces: Set<String?>, shadowTrustSeconds: UInt64 = 10, clock: @escaping Clock, logger: Logger) {
        var workers: [String: NetnsWorker] = [:]
        for netns in namespaces { workers[netns ?? ""] = NetnsWorker(netns: netns, logger: logger) }
        self.workers = workers
        let shadow = ShadowStore(SetShadow(trustSeconds: shadowTrustSeconds))
        self.shadow = shadow
        self.clock = clock
        self.logger = logger
        var monitors: [String: NetnsMonitor] = [:]
        for netns in namespaces {
            monitors[netns ?? ""] = NetnsMonitor(netns: netns, logger: logger) { event in
                NftablesSetPublisher.apply(event, netns: netns, to: shadow)
            }
        }
        self.monitors = monitors
    }

    private let monitors: [String: NetnsMonitor]

    /// The worker of namespace `netns` (nil: dnsfence's own).
    func worker(for netns: String?) -> NetnsWorker? { workers[netns ?? ""] }

    /// Whether the monitor of `netns` listens yet.
    func monitorListens(in netns: String?) -> Bool { (monitors[netns ?? ""]?.socketFD ?? -1) >= 0 }

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
        for target in targets {
            guard NftablesCommand.isValid(target) else { throw .invalidName(target) }
            guard let worker = workers[target.netns ?? ""] else {
                throw .unavailable(target, "no worker for namespace")
            }
            if create {
                if case .failure(let error) = await worker.run(NftablesCommand.create(target)) {
                    throw .createFailed(target, "\(error)")
                }
            }
            let listing: NftablesCommand.Listing
            switch await worker.run(NftablesCommand.list(target)) {
            case .failure(let error): throw .missing(target, "\(error)")
            case .success(let output): listing = NftablesCommand.parseListing(output)
            }
            let expected = target.isIPv6 ? "ipv6_addr" : "ipv4_addr"
            guard listing.type == expected else {
                throw .wrongType(target, found: listing.type ?? "none", expected: expected)
            }
            guard listing.hasTimeoutFlag else { throw .noTimeoutFlag(target) }
            let now = clock()
            let live = listing.elements.compactMap { e in e.expiresIn.map { (e.address, $0) } }
            shadow.withLock { $0.seed(target, elements: live, now: now) }
        }
    }

    /// Problems with `targets` right now (empty: all exist with the right type and flags).
    public func verify(_ targets: [SetTarget]) async -> [String] {
        var problems: [String] = []
        for target in targets {
            guard let worker = workers[target.netns ?? ""] else {
                problems.append("set \(target): no worker")
                continue
            }
            switch await worker.run(NftablesCommand.list(target)) {
            case .failure(let error):
                problems.append("set \(target): \(error)")
            case .success(let output):
                let listing = NftablesCommand.parseListing(output)
                let expected = target.isIPv6 ? "ipv6_addr" : "ipv4_addr"
                if listing.type != expected || !listing.hasTimeoutFlag {
                    problems.append(
                        "set \(target): type \(listing.type ?? "none"), expected \(expected) with flags timeout")
                }
            }
        }
        return problems
    }

    public func needsCommit(_ element: SetElement) -> Bool {
        let now = clock()
        return shadow.withLock { $0.plan(element, now: now) != nil }
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
            guard let worker = workers[netns] else {
                firstError = firstError ?? .unavailable("no worker for namespace \(netns)")
                continue
            }
            let (result, unwatched) = worker.commit(items, quieting: monitors[netns])
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

/// The shadow behind a lock, shared by the publisher and its monitors.
final class ShadowStore: Sendable {
    private let mutex: Mutex<SetShadow>

    init(_ shadow: SetShadow) { mutex = Mutex(shadow) }

    func withLock<R>(_ body: (inout SetShadow) -> R) -> R {
        mutex.withLock { body(&$0) }
    }
}

/// Why the sets cannot be used at start-up; dnsfence refuses to start.
public enum FirewallSetupError: Error, Hashable, Sendable, CustomStringConvertible {
    case invalidName(SetTarget)
    case unavailable(SetTarget, String)
    case createFailed(SetTarget, String)
    case missing(SetTarget, String)
    case wrongType(SetTarget, found: String, expected: String)
    case noTimeoutFlag(SetTarget)

    public var description: String {
        switch self {
        case .invalidName(let t): return "set \(t): names must be identifiers"
        case .unavailable(let t, let why): return "set \(t): \(why)"
        case .createFailed(let t, let why): return "set \(t): cannot create it: \(why)"
        case .missing(let t, let why): return "set \(t) does not exist (create it, or set 'create: true'): \(why)"
        case .wrongType(let t, let found, let expected): return "set \(t) has type \(found), expected \(expected)"
        case .noTimeoutFlag(let t): return "set \(t) lacks 'flags timeout': elements could never expire"
        }
    }
}

/// One thread inside one network namespace with one nft context.
public final class NetnsWorker: Sendable {
    public struct Statistics: Sendable {
        public var batches = 0
        public var elements = 0
        public var failures = 0
        /// Datagrams of nftables change notifications the monitors received (others' changes:
        /// while we commit, no monitor of ours listens, so the kernel builds none for us).
        public var notifications = 0
    }

    typealias Job = (command: String, continuation: CheckedContinuation<Result<String, PublishError>, Never>)

    struct State {
        var jobs: [Job] = []
        var statistics = Statistics()
    }

    /// Where a commit is while the monitor is out of the group.
    enum QuietPhase: Sendable { case beforeBatch, afterBatch }
    /// Runs at each ``QuietPhase`` of a commit (tests: someone else's change in the gap).
    let whileQuiet = Mutex<(@Sendable (QuietPhase) -> Void)?>(nil)

    /// The nfnetlink socket the thread opened inside the namespace (a socket stays in the
    /// namespace it was created in, whichever thread uses it), or why there is none yet.
    private let netlink = Mutex<Result<NetlinkSocket, PublishError>>(.failure(.unavailable("starting")))

    let netns: String?
    let logger: Logger
    private let state = Mutex(State())
    private let wakeup = Semaphore()
    private let batchCounter = Counter(label: "dnsfence_nft_batches_total")
    private let elementCounter = Counter(label: "dnsfence_nft_elements_total")
    private let batchTimer = Timer(label: "dnsfence_nft_batch_duration_seconds")
    private let failureCounters: [String: Counter] = Dictionary(
        uniqueKeysWithValues: ["rejected", "timeout", "unavailable"].map {
            ($0, Counter(label: "dnsfence_nft_failures_total", dimensions: [("reason", $0)]))
        })

    init(netns: String?, logger: Logger) {
        self.netns = netns
        self.logger = logger
        precondition(startThread(named: "dnsfence-nft") { [self] in main() }, "cannot start the nftables worker thread")
    }

    var statistics: Statistics { state.withLock { $0.statistics } }

    /// Runs one command on the worker thread (setup and verification).
    func run(_ command: String) async -> Result<String, PublishError> {
        await withCheckedContinuation { continuation in
            state.withLock { $0.jobs.append((command, continuation)) }
            wakeup.signal()
        }
    }

    /// Commits `elements` as one transaction on the calling thread.
    ///
    /// With `monitor` listening, the monitor leaves the notification group for the transaction:
    /// the kernel builds a change notification per element for a listener (a page-sized buffer
    /// each, ~4 µs per answer in an A/B), and our own additions are of no interest to it. So
    /// that nobody else's change goes unseen meanwhile, the batch names the ruleset generation
    /// read while the monitor still listened (the kernel refuses it with ERESTART if another
    /// transaction came in between; then it is sent again with the monitor back), and the
    /// generation is read again once the monitor is back: any number but ours + 1 means someone
    /// else committed in the gap. `unwatched` then says the monitor may have missed deletions.
    func commit(_ elements: [SetElement], quieting monitor: NetnsMonitor?) -> (
        result: Result<Void, PublishError>, unwatched: Bool
    ) {
        let started = ContinuousClock.now
        var unwatched = false
        let result = netlink.withLock { socket in
            socket.flatMap { socket -> Result<Void, PublishError> in
                guard let fd = monitor?.socketFD, fd >= 0 else { return Self.add(elements, through: socket.pointer) }
                var before: UInt32 = 0
                guard dnsfence_nft_batch_generation(socket.pointer, &before, 1000) == 0, before != 0,
                    dnsfence_nft_listen(fd, 0) == 0
                else { return Self.add(elements, through: socket.pointer) }
                let hook = whileQuiet.withLock { $0 }
                hook?(.beforeBatch)
                let attempt = Self.attempt(elements, through: socket.pointer, generation: before)
                hook?(.afterBatch)
                let listening = dnsfence_nft_listen(fd, 1) == 0
                if !listening {
                    logger.error("nftables monitor could not rejoin the notification group; deletions may go unseen")
                }
                guard let result = attempt else {
                    // Another transaction came first; nothing of ours ran. Again, listened to.
                    unwatched = true
                    return Self.add(elements, through: socket.pointer)
                }
                // Ours moved the generation by one (the kernel skips 0); a failure by none.
                var expected = before
                if case .success = result { expected = before == UInt32.max ? 1 : before + 1 }
                var after: UInt32 = 0
                if !listening || dnsfence_nft_batch_generation(socket.pointer, &after, 1000) != 0 || after != expected {
                    unwatched = true
                }
                return result
            }
        }
        let elapsed = (ContinuousClock.now - started).components
        batchTimer.recordNanoseconds(elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000)
        switch result {
        case .success:
            state.withLock {
                $0.statistics.batches += 1
                $0.statistics.elements += elements.count
            }
            batchCounter.increment()
            elementCounter.increment(by: elements.count)
        case .failure(let error):
            state.withLock { $0.statistics.failures += 1 }
            failureCounters[error.reasonLabel]?.increment()
        }
        return (result, unwatched)
    }

    private func main() {
        if let netns, dnsfence_enter_netns(netns) != 0 {
            let reason = "cannot enter network namespace \(netns): \(String(cString: strerror(errno)))"
            logger.error("nftables worker failed", metadata: ["netns": "\(netns)", "error": "\(reason)"])
            netlink.withLock { $0 = .failure(.unavailable(reason)) }
            serveForever { _ in .failure(.unavailable(reason)) }
        }
        if let socket = dnsfence_nft_batch_open() {
            netlink.withLock { $0 = .success(NetlinkSocket(pointer: socket)) }
        } else {
            let reason = "cannot open a netfilter netlink socket: \(String(cString: strerror(errno)))"
            netlink.withLock { $0 = .failure(.unavailable(reason)) }
        }
        guard let ctx = nft_ctx_new(0) else {
            serveForever { _ in .failure(.unavailable("nft_ctx_new failed")) }
        }
        nft_ctx_buffer_output(ctx)
        nft_ctx_buffer_error(ctx)
        serveForever { command in
            let rc = nft_run_cmd_from_buffer(ctx, command)
            if rc != 0 {
                let error = nft_ctx_get_error_buffer(ctx).map { String(cString: $0) } ?? "error \(rc)"
                return .failure(.rejected(error.split(separator: "\n").first.map(String.init) ?? error))
            }
            return .success(nft_ctx_get_output_buffer(ctx).map { String(cString: $0) } ?? "")
        }
    }

    /// Commits `elements` as one nfnetlink transaction.
    static func add(_ elements: [SetElement], through batch: OpaquePointer) -> Result<Void, PublishError> {
        attempt(elements, through: batch, generation: 0) ?? .failure(.rejected("the ruleset generation changed"))
    }

    /// The same, but if `generation` is not 0 only at that ruleset generation: nil if the
    /// ruleset has moved on (then nothing ran).
    static func attempt(_ elements: [SetElement], through batch: OpaquePointer, generation: UInt32) -> Result<
        Void, PublishError
    >? {
        // A batch names one or two sets in practice: found by a short search from the last one.
        var groups: [(target: SetTarget, keys: [UInt8], timeouts: [UInt64])] = []
        var last = 0
        for element in elements {
            let slot: Int
            if last < groups.count, groups[last].target == element.target {
                slot = last
            } else if let known = groups.firstIndex(where: { $0.target == element.target }) {
                slot = known
            } else {
                slot = groups.count
                groups.append((element.target, [], []))
                groups[slot].keys.reserveCapacity(elements.count * (element.target.isIPv6 ? 16 : 4))
                groups[slot].timeouts.reserveCapacity(elements.count)
            }
            last = slot
            element.address.appendBytes(to: &groups[slot].keys)
            groups[slot].timeouts.append(UInt64(max(element.timeout, 1)) * 1000)
        }
        for group in groups where group.keys.count != group.timeouts.count * (group.target.isIPv6 ? 16 : 4) {
            return .failure(.rejected("set \(group.target): an address of the wrong family"))
        }
        // Keep every buffer and C string alive while the C structures point into them.
        let tables = groups.map { strdup($0.target.table) }
        let sets = groups.map { strdup($0.target.set) }
        defer {
            tables.forEach { free($0) }
            sets.forEach { free($0) }
        }
        let keyBuffers = groups.map { group in
            let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(group.keys.count, 1))
            _ = buffer.initialize(from: group.keys)
            return buffer
        }
        let timeoutBuffers = groups.map { group in
            let buffer = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: max(group.timeouts.count, 1))
            _ = buffer.initialize(from: group.timeouts)
            return buffer
        }
        defer {
            keyBuffers.forEach { $0.deallocate() }
            timeoutBuffers.forEach { $0.deallocate() }
        }
        var specs: [dnsfence_nft_set_elements] = []
        for (i, group) in groups.enumerated() {
            specs.append(
                dnsfence_nft_set_elements(
                    family: familyNumber(group.target.family), table: tables[i], set: sets[i],
                    key_length: group.target.isIPv6 ? 16 : 4, count: UInt32(group.timeouts.count),
                    keys: keyBuffers[i].baseAddress, timeouts_ms: timeoutBuffers[i].baseAddress))
        }
        let rc = specs.withUnsafeBufferPointer {
            dnsfence_nft_batch_add(batch, $0.baseAddress, UInt32($0.count), generation, 1000)
        }
        switch rc {
        case 0:
            return .success(())
        case ERESTART where generation != 0:
            return nil
        case -1:
            return .failure(.unavailable("netlink: \(String(cString: strerror(errno)))"))
        default:
            let names = groups.map { "\($0.target.family) \($0.target.table) \($0.target.set)" }.joined(separator: ", ")
            let why =
                switch rc {
                case ENOENT: "no such table or set"
                case ENFILE, ENOSPC: "set is full"
                case EINVAL: "element does not match the set's type"
                default: String(cString: strerror(rc))
                }
            return .failure(.rejected("\(names): \(why)"))
        }
    }

    /// nfproto numbers of the families `NftablesCommand` accepts.
    static func familyNumber(_ family: String) -> UInt8 {
        switch family {
        case "ip": return 2  // NFPROTO_IPV4
        case "ip6": return 10  // NFPROTO_IPV6
        default: return 1  // NFPROTO_INET
        }
    }

    /// The worker loop: wait, run queued commands one by one.
    private func serveForever(_ execute: (String) -> Result<String, PublishError>) -> Never {
        while true {
            wakeup.wait()
            let jobs = state.withLock { state -> [Job] in
                defer { state.jobs = [] }
                return state.jobs
            }
            for job in jobs { job.continuation.resume(returning: execute(job.command)) }
        }
    }
}

/// An open nfnetlink socket (used only under its worker's lock).
struct NetlinkSocket: @unchecked Sendable {
    // @unchecked Sendable: the pointer is only dereferenced inside NetnsWorker.netlink's lock.
    let pointer: OpaquePointer
}

/// A deletion nf_tables reported (what `nft monitor destroy` shows).
enum NftablesEvent: Sendable, Equatable {
    case elementsDeleted(family: String, table: String, set: String, addresses: [IPAddress])
    case setDeleted(family: String, table: String, set: String)
    case tableDeleted(family: String, table: String)
    /// The notification socket overflowed: some deletions were not seen.
    case eventsLost
}

/// Follows nf_tables change notifications in one namespace on a thread of its own: a netlink
/// socket subscribed to the nftables group; deletions are parsed (libnftnl) and handed to
/// `onEvent`, additions by others are skipped by message type. Our own commits never reach it:
/// the worker takes it out of the group for each of them (``NetnsWorker/commit(_:quieting:)``).
final class NetnsMonitor: @unchecked Sendable {
    // @unchecked Sendable: `fd` is written by the C monitor (an atomic store) and read with
    // atomic loads; everything else is immutable.
    let netns: String?
    let logger: Logger
    let onEvent: @Sendable (NftablesEvent) -> Void
    private let fd: UnsafeMutablePointer<Int32> = {
        let fd = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        fd.initialize(to: -1)
        return fd
    }()

    /// The monitor's socket once it listens, else -1.
    var socketFD: Int32 { dnsfence_nft_monitor_fd(fd) }
    /// Datagrams of notifications received.
    let received = Atomic<Int>(0)

    init(netns: String?, logger: Logger, onEvent: @escaping @Sendable (NftablesEvent) -> Void) {
        self.netns = netns
        self.logger = logger
        self.onEvent = onEvent
        if !startThread(named: "dnsfence-monitor", { [self] in run() }) {
            logger.error("cannot start the nftables monitor thread")
        }
    }

    static func familyName(_ number: UInt8) -> String? {
        switch number {
        case 1: return "inet"
        case 2: return "ip"
        case 10: return "ip6"
        default: return nil
        }
    }

    private func run() {
        if let netns, dnsfence_enter_netns(netns) != 0 {
            logger.error("nftables monitor cannot enter the namespace", metadata: ["netns": "\(netns)"])
            return
        }
        // The monitor outlives every use of this pointer: the thread never returns while it runs.
        let context = Unmanaged.passUnretained(self).toOpaque()
        let rc = dnsfence_nft_monitor(
            { context, kind, family, table, set, keys, keyLength, count in
                let monitor = Unmanaged<NetnsMonitor>.fromOpaque(context!).takeUnretainedValue()
                if kind == DNSFENCE_NFT_RECEIVED {
                    monitor.received.add(1, ordering: .relaxed)
                    return
                }
                if kind == DNSFENCE_NFT_EVENTS_LOST { return monitor.onEvent(.eventsLost) }
                guard let family = NetnsMonitor.familyName(family), let table else { return }
                let tableName = String(cString: table)
                switch kind {
                case DNSFENCE_NFT_TABLE_DELETED:
                    monitor.onEvent(.tableDeleted(family: family, table: tableName))
                case DNSFENCE_NFT_SET_DELETED:
                    guard let set else { return }
                    monitor.onEvent(.setDeleted(family: family, table: tableName, set: String(cString: set)))
                case DNSFENCE_NFT_ELEMENTS_DELETED:
                    guard let set, let keys else { return }
                    let length = Int(keyLength)
                    let addresses = (0..<Int(count)).compactMap { i in
                        IPAddress(bytes: UnsafeBufferPointer(start: keys + i * length, count: length))
                    }
                    monitor.onEvent(
                        .elementsDeleted(
                            family: family, table: tableName, set: String(cString: set), addresses: addresses))
                default:
                    return
                }
            }, context, fd)
        logger.error(
            "nftables monitor stopped",
            metadata: ["netns": "\(netns ?? "-")", "error": "\(String(cString: strerror(-rc)))"])
    }
}

/// One thread running submitted jobs in order (no Dispatch: it may block in the kernel).
final class SerialThread: Sendable {
    private let jobs = Mutex<[@Sendable () -> Void]>([])
    private let wakeup = Semaphore()

    init(name: String) {
        precondition(startThread(named: name) { [self] in run() }, "cannot start the \(name) thread")
    }

    func submit(_ job: @escaping @Sendable () -> Void) {
        jobs.withLock { $0.append(job) }
        wakeup.signal()
    }

    private func run() {
        while true {
            wakeup.wait()
            let batch = jobs.withLock { jobs -> [@Sendable () -> Void] in
                defer { jobs = [] }
                return jobs
            }
            for job in batch { job() }
        }
    }
}

/// A counting semaphore over a POSIX one (no Dispatch on the worker thread).
final class Semaphore: @unchecked Sendable {
    // @unchecked Sendable: sem_t is made for concurrent use through sem_post/sem_wait.
    private let sem = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    init() { sem_init(sem, 0, 0) }

    deinit {
        sem_destroy(sem)
        sem.deallocate()
    }

    func signal() { sem_post(sem) }

    func wait() {
        while sem_wait(sem) != 0 && errno == EINTR {}
    }
}
