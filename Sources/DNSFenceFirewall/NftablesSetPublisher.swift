// The only file that imports libnftables. Each target network namespace gets one thread that
// enters the namespace (setns acts per thread), owns one nft context there, and runs every
// command for it — contexts are blocking and single-threaded, so they never touch an event loop.

import CNftables
import CoreMetrics
import DNSFenceWire
public import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Publishes into real nftables sets, batching concurrent requests per namespace into one
/// transaction: while one commit runs, new requests queue, and the next commit takes them all
/// (no timer: latency is one commit under light load, batches grow under heavy load).
public final class NftablesSetPublisher: SetPublisher {
    /// Seconds on a monotonic clock.
    public typealias Clock = @Sendable () -> UInt64

    private let workers: [String: NetnsWorker]
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
        var monitors: [NetnsMonitor] = []
        for netns in namespaces {
            monitors.append(
                NetnsMonitor(netns: netns, logger: logger) { line in
                    NftablesSetPublisher.apply(event: line, netns: netns, to: shadow)
                })
        }
        self.monitors = monitors
    }

    private let monitors: [NetnsMonitor]

    /// Applies one `nft monitor` line to the shadow: deleted elements, sets and tables are no
    /// longer believed present.
    static func apply(event line: String, netns: String?, to shadow: ShadowStore) {
        let words = line.split(separator: " ", maxSplits: 5).map(String.init)
        guard words.count >= 3, words[0] == "delete" else { return }
        switch words[1] {
        case "element" where words.count >= 5:
            let (family, table, set) = (words[2], words[3], words[4])
            guard let open = line.firstIndex(of: "{") else { return }
            let addresses = line[line.index(after: open)...].split(separator: ",").compactMap { item in
                item.split(separator: " ").first.flatMap { IPAddress(String($0)) }
            }
            let target = { (t: SetTarget) in t.netns == netns && t.family == family && t.table == table && t.set == set
            }
            shadow.withLock { $0.forget(addresses, inSetsWhere: target) }
        case "set" where words.count >= 5:
            let (family, table, set) = (words[2], words[3], words[4])
            shadow.withLock { s in
                s.forgetSets { $0.netns == netns && $0.family == family && $0.table == table && $0.set == set }
            }
        case "table" where words.count >= 4:
            let (family, table) = (words[2], words[3])
            shadow.withLock { s in s.forgetSets { $0.netns == netns && $0.family == family && $0.table == table } }
        default:
            return
        }
    }

    /// Statistics: transactions committed, elements written, failures.
    public var statistics: NetnsWorker.Statistics {
        workers.values.reduce(into: NetnsWorker.Statistics()) { total, worker in
            let s = worker.statistics
            total.batches += s.batches
            total.elements += s.elements
            total.failures += s.failures
        }
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

    public func needsCommit(_ elements: [SetElement]) -> Bool {
        let now = clock()
        return shadow.withLock { shadow in elements.contains { shadow.plan($0, now: now) != nil } }
    }

    public func publish(_ elements: [SetElement], completion: @escaping @Sendable (PublishError?) -> Void) {
        let now = clock()
        let planned = shadow.withLock { shadow in elements.compactMap { shadow.plan($0, now: now) } }
        guard !planned.isEmpty else { return completion(nil) }
        var byNamespace: [String: [SetElement]] = [:]
        for element in planned { byNamespace[element.target.netns ?? "", default: []].append(element) }
        let remaining = Atomic<Int>(byNamespace.count)
        let firstError = Mutex<PublishError?>(nil)
        let shadow = self.shadow
        let clock = self.clock
        for (netns, items) in byNamespace {
            guard let worker = workers[netns] else {
                firstError.withLock { $0 = $0 ?? .unavailable("no worker for namespace \(netns)") }
                if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
                    completion(firstError.withLock { $0 })
                }
                continue
            }
            worker.enqueue(items) { result in
                switch result {
                case .success:
                    let committedAt = clock()
                    shadow.withLock { s in for item in items { s.committed(item, now: min(now, committedAt)) } }
                case .failure(let error):
                    shadow.withLock { s in for target in Set(items.map(\.target)) { s.forget(target) } }
                    firstError.withLock { $0 = $0 ?? error }
                }
                if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
                    completion(firstError.withLock { $0 })
                }
            }
        }
    }

    public func publish(_ elements: [SetElement]) async throws(PublishError) {
        let now = clock()
        let planned = shadow.withLock { shadow in elements.compactMap { shadow.plan($0, now: now) } }
        guard !planned.isEmpty else { return }
        var byNamespace: [String: [SetElement]] = [:]
        for element in planned { byNamespace[element.target.netns ?? "", default: []].append(element) }
        for (netns, items) in byNamespace {
            guard let worker = workers[netns] else { throw .unavailable("no worker for namespace \(netns)") }
            let result = await worker.commit(items)
            switch result {
            case .success:
                let committedAt = clock()
                shadow.withLock { shadow in
                    for item in items { shadow.committed(item, now: min(now, committedAt)) }
                }
            case .failure(let error):
                shadow.withLock { shadow in
                    for target in Set(items.map(\.target)) { shadow.forget(target) }
                }
                throw error
            }
        }
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
    }

    enum Job {
        case command(String, CheckedContinuation<Result<String, PublishError>, Never>)
        case publish([SetElement], @Sendable (Result<Void, PublishError>) -> Void)
    }

    struct State {
        var jobs: [Job] = []
        var statistics = Statistics()
    }

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
        let box = Unmanaged.passRetained(self)
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { raw in
                let worker = Unmanaged<NetnsWorker>.fromOpaque(raw!).takeRetainedValue()
                worker.main()
                return nil
            }, box.toOpaque())
        precondition(rc == 0, "cannot start the nftables worker thread")
        pthread_detach(thread)
    }

    var statistics: Statistics { state.withLock { $0.statistics } }

    /// Runs one command alone (setup and verification).
    func run(_ command: String) async -> Result<String, PublishError> {
        await withCheckedContinuation { continuation in
            state.withLock { $0.jobs.append(.command(command, continuation)) }
            wakeup.signal()
        }
    }

    /// Commits `elements`, batched with whatever else is queued.
    func commit(_ elements: [SetElement]) async -> Result<Void, PublishError> {
        await withCheckedContinuation { continuation in
            enqueue(elements) { continuation.resume(returning: $0) }
        }
    }

    /// Queues `elements` for the next transaction; `completion` runs on the worker thread.
    func enqueue(_ elements: [SetElement], completion: @escaping @Sendable (Result<Void, PublishError>) -> Void) {
        state.withLock { $0.jobs.append(.publish(elements, completion)) }
        wakeup.signal()
    }

    private func main() {
        if let netns, dnsfence_enter_netns(netns) != 0 {
            let reason = "cannot enter network namespace \(netns): \(String(cString: strerror(errno)))"
            logger.error("nftables worker failed", metadata: ["netns": "\(netns)", "error": "\(reason)"])
            serveForever { _ in .failure(.unavailable(reason)) }
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

    /// The worker loop: wait, take every queued job, run commands one by one and all publish
    /// jobs as one transaction (retried one job at a time if the batch fails, so one bad
    /// request cannot fail the others).
    private func serveForever(_ execute: (String) -> Result<String, PublishError>) -> Never {
        while true {
            wakeup.wait()
            let jobs = state.withLock { state -> [Job] in
                defer { state.jobs = [] }
                return state.jobs
            }
            var publishes: [([SetElement], @Sendable (Result<Void, PublishError>) -> Void)] = []
            for job in jobs {
                switch job {
                case .command(let text, let continuation): continuation.resume(returning: execute(text))
                case .publish(let elements, let continuation): publishes.append((elements, continuation))
                }
            }
            guard !publishes.isEmpty else { continue }
            let all = publishes.flatMap(\.0)
            let started = ContinuousClock.now
            let result = execute(NftablesCommand.addElements(all))
            let elapsed = (ContinuousClock.now - started).components
            batchTimer.recordNanoseconds(elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000)
            switch result {
            case .success:
                state.withLock {
                    $0.statistics.batches += 1
                    $0.statistics.elements += all.count
                }
                batchCounter.increment()
                elementCounter.increment(by: all.count)
                for (_, completion) in publishes { completion(.success(())) }
            case .failure(let error) where publishes.count == 1:
                state.withLock { $0.statistics.failures += 1 }
                failureCounters[error.reasonLabel]?.increment()
                publishes[0].1(.failure(error))
            case .failure:
                for (elements, completion) in publishes {
                    let result = execute(NftablesCommand.addElements(elements))
                    state.withLock {
                        if case .success = result {
                            $0.statistics.batches += 1
                            $0.statistics.elements += elements.count
                        } else {
                            $0.statistics.failures += 1
                        }
                    }
                    switch result {
                    case .success:
                        batchCounter.increment()
                        elementCounter.increment(by: elements.count)
                    case .failure(let error):
                        failureCounters[error.reasonLabel]?.increment()
                    }
                    completion(result.map { _ in () })
                }
            }
        }
    }
}

/// Follows nftables change notifications in one namespace: a thread runs libnftables'
/// `monitor` command with its output sent into a pipe, and a second thread reads the pipe line
/// by line and hands each line to `onEvent`.
final class NetnsMonitor: Sendable {
    let netns: String?
    let logger: Logger
    let onEvent: @Sendable (String) -> Void

    init(netns: String?, logger: Logger, onEvent: @escaping @Sendable (String) -> Void) {
        self.netns = netns
        self.logger = logger
        self.onEvent = onEvent
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            logger.error("cannot create the nftables monitor pipe")
            return
        }
        let (readEnd, writeEnd) = (fds[0], fds[1])
        Self.spawn { [self] in runMonitor(writeEnd: writeEnd) }
        Self.spawn { [self] in readLines(readEnd: readEnd) }
    }

    private static func spawn(_ body: @escaping @Sendable () -> Void) {
        final class Box: @unchecked Sendable {
            // @unchecked Sendable: handed to exactly one new thread, never shared.
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        let box = Unmanaged.passRetained(Box(body))
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { raw in
                Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
                return nil
            }, box.toOpaque())
        if rc == 0 { pthread_detach(thread) } else { box.release() }
    }

    private func runMonitor(writeEnd: Int32) {
        if let netns, dnsfence_enter_netns(netns) != 0 {
            logger.error("nftables monitor cannot enter the namespace", metadata: ["netns": "\(netns)"])
            close(writeEnd)
            return
        }
        guard let ctx = nft_ctx_new(0), let output = fdopen(writeEnd, "w") else {
            close(writeEnd)
            return
        }
        setvbuf(output, nil, _IOLBF, 0)
        nft_ctx_set_output(ctx, output)
        nft_ctx_buffer_error(ctx)
        // Deletions only ("destroy" events: elements, sets, tables; a flush shows as element
        // deletions): our own additions would otherwise come back as events to format and parse.
        let rc = nft_run_cmd_from_buffer(ctx, "monitor destroy")  // returns only on error
        logger.error("nftables monitor stopped", metadata: ["netns": "\(netns ?? "-")", "rc": "\(rc)"])
        fclose(output)
    }

    private func readLines(readEnd: Int32) {
        guard let input = fdopen(readEnd, "r") else { return }
        var buffer = [CChar](repeating: 0, count: 65536)
        while fgets(&buffer, Int32(buffer.count), input) != nil {
            let bytes = buffer.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }
            onEvent(String(decoding: bytes, as: UTF8.self))
        }
        fclose(input)
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
