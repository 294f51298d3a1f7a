import CNftBatch
import CNftables
import CoreMetrics
import DNSFenceCore
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The sets of one network namespace: its nfnetlink socket (opened inside it) for commits, and
/// set-up, verification and conntrack commands run inside it on a ``NamespaceThreads`` thread.
public final class NetnsWorker: Sendable {
    public struct Statistics: Sendable {
        public var batches = 0
        public var elements = 0
        public var failures = 0
        /// Datagrams of nftables change notifications the monitors received (others' changes:
        /// while we commit, no monitor of ours listens, so the kernel builds none for us).
        public var notifications = 0
    }

    /// Where a commit is while the monitor is out of the group.
    enum QuietPhase: Sendable { case beforeBatch, afterBatch }
    /// Runs at each ``QuietPhase`` of a commit (tests: someone else's change in the gap).
    let whileQuiet = Mutex<(@Sendable (QuietPhase) -> Void)?>(nil)

    /// The nfnetlink socket the thread opened inside the namespace (a socket stays in the
    /// namespace it was created in, whichever thread uses it), or why there is none yet.
    private let netlink: NetlinkSlot

    let netns: String?
    let logger: Logger
    private let state = Mutex(Statistics())
    /// The shared thread this worker's jobs run on (inside its namespace, entered per job).
    private let thread: Int
    private let batchCounter = Counter(label: "dnsfence_nft_batches_total")
    private let elementCounter = Counter(label: "dnsfence_nft_elements_total")
    private let batchTimer = Timer(label: "dnsfence_nft_batch_duration_seconds")
    private let failureCounters: [String: Counter] = Dictionary(
        uniqueKeysWithValues: ["rejected", "timeout", "unavailable"].map {
            ($0, Counter(label: "dnsfence_nft_failures_total", dimensions: [("reason", $0)]))
        })

    /// The namespace file's device and inode when the worker was made (nil: dnsfence's own, or
    /// the file was missing): a namespace deleted and made again under the same name is a
    /// different namespace, which this worker's thread and socket are not in.
    let identity: NamespaceIdentity?

    init(netns: String?, logger: Logger) {
        self.netns = netns
        self.identity = netns.flatMap(NamespaceIdentity.init(path:))
        self.logger = logger
        let netlink = NetlinkSlot()
        self.netlink = netlink
        let threads = NamespaceThreads.shared
        thread = threads.assign()
        threads.submit(on: thread) { [identity] in
            Self.open(netns, identity: identity, netlink: netlink, logger: logger)
        }
    }

    var statistics: Statistics { state.withLock { $0 } }

    /// Whether the worker could not enter its namespace or open its socket there (it never
    /// will: a new worker is needed once the namespace is back).
    var hasFailed: Bool {
        netlink.socket.withLock { slot in
            if case .failure(.unavailable(let reason)) = slot { return reason != "starting" }
            return false
        }
    }

    /// Whether the worker is in the namespace its path names now (false when the path is gone,
    /// or names another namespace than the one entered).
    var isCurrent: Bool {
        guard let netns else { return true }
        return identity != nil && identity == NamespaceIdentity(path: netns)
    }

    /// Gives up the namespace (no policy uses it any more): closes the netlink socket and the
    /// monitor's, so the kernel can free a namespace that was deleted, and moves the thread
    /// that last worked there back out. Commits after this fail as unavailable.
    func retire(monitor: NetnsMonitor?) {
        netlink.socket.withLock { slot in
            if case .success(let socket) = slot { dnsfence_nft_batch_close(socket.pointer) }
            slot = .failure(.unavailable("network namespace \(netns ?? "-") is no longer used"))
            monitor?.close()
        }
        NamespaceThreads.shared.submit(on: thread) { _ = NamespaceThreads.shared.enter(nil, identity: nil) }
    }

    /// Runs one command on the worker thread (setup and verification).
    func run(_ command: String) async -> Result<String, PublishError> {
        await onThread { $0.run(command) }
    }

    /// Deletes the conntrack entries of flows to `addresses` in the worker's namespace (see
    /// `dnsfence_conntrack_cut`); how many.
    func cutConnections(to addresses: [IPAddress]) async -> Result<Int, PublishError> {
        await onThread { context in
            if case .failed(let reason) = context { return .failure(.unavailable(reason)) }
            var deleted = 0
            for (family, group) in Dictionary(grouping: addresses, by: \.isIPv4) {
                var keys: [UInt8] = []
                for address in group { address.appendBytes(to: &keys) }
                let rc = keys.withUnsafeBufferPointer {
                    dnsfence_conntrack_cut(
                        UInt8(family ? AF_INET : AF_INET6), $0.baseAddress, UInt32(group.count), 1000)
                }
                guard rc >= 0 else {
                    return .failure(.rejected("conntrack: \(String(cString: strerror(errno)))"))
                }
                deleted += Int(rc)
            }
            return .success(deleted)
        }
    }

    /// Runs `body` on the worker's thread, inside the namespace (or with why it could not
    /// get in).
    private func onThread<T: Sendable>(_ body: @escaping @Sendable (borrowing NftContext) -> T) async -> T {
        await withCheckedContinuation { continuation in
            NamespaceThreads.shared.submit(on: thread) { [self] in
                let context: NftContext
                if hasFailed, case .failure(.unavailable(let reason)) = netlink.socket.withLock({ $0 }) {
                    context = .failed(reason)
                } else if let reason = NamespaceThreads.shared.enter(netns, identity: identity) {
                    context = .failed(reason)
                } else {
                    context = .ready
                }
                continuation.resume(returning: body(context))
            }
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
        let result = netlink.socket.withLock { socket in
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
                $0.batches += 1
                $0.elements += elements.count
            }
            batchCounter.increment()
            elementCounter.increment(by: elements.count)
        case .failure(let error):
            state.withLock { $0.failures += 1 }
            failureCounters[error.reasonLabel]?.increment()
        }
        return (result, unwatched)
    }

    /// On the worker's thread: enters the namespace and opens the netlink socket there (or
    /// records why it could not).
    private static func open(_ netns: String?, identity: NamespaceIdentity?, netlink: NetlinkSlot, logger: Logger) {
        if let reason = NamespaceThreads.shared.enter(netns, identity: identity) {
            logger.error("nftables worker failed", metadata: ["netns": "\(netns ?? "-")", "error": "\(reason)"])
            netlink.socket.withLock { $0 = .failure(.unavailable(reason)) }
            return
        }
        if let socket = dnsfence_nft_batch_open() {
            netlink.socket.withLock { $0 = .success(NetlinkSocket(pointer: socket)) }
        } else {
            let reason = "cannot open a netfilter netlink socket: \(String(cString: strerror(errno)))"
            netlink.socket.withLock { $0 = .failure(.unavailable(reason)) }
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
}

/// Which namespace a path names: its file's device and inode.
struct NamespaceIdentity: Equatable, Sendable {
    var device: UInt64
    var inode: UInt64

    init?(path: String) {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
    }

    init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }
}

/// The nfnetlink socket a worker opened inside its namespace (a socket stays in the namespace
/// it was created in, whichever thread uses it), or why there is none yet.
final class NetlinkSlot: Sendable {
    let socket = Mutex<Result<NetlinkSocket, PublishError>>(.failure(.unavailable("starting")))

    /// A worker dropped without ``NetnsWorker/retire(monitor:)`` (a publisher that is itself
    /// dropped) still gives its socket back, once the job that opens it is done with it too.
    deinit {
        socket.withLock { slot in
            if case .success(let socket) = slot { dnsfence_nft_batch_close(socket.pointer) }
        }
    }
}

/// An open nfnetlink socket (used only under its worker's lock).
struct NetlinkSocket: @unchecked Sendable {
    // @unchecked Sendable: the pointer is only dereferenced inside NetnsWorker.netlink's lock.
    let pointer: OpaquePointer
}
