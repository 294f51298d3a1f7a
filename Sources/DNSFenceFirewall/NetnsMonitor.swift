import CDatagram
import CNftBatch
import CNftables
import DNSFenceCore
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A deletion nf_tables reported (what `nft monitor destroy` shows).
enum NftablesEvent: Sendable, Equatable {
    case elementsDeleted(family: String, table: String, set: String, addresses: [IPAddress])
    case setDeleted(family: String, table: String, set: String)
    case tableDeleted(family: String, table: String)
    /// The notification socket overflowed: some deletions were not seen.
    case eventsLost
}

/// Follows nf_tables change notifications in one namespace: a netlink socket opened there and
/// subscribed to the nftables group, read by the one ``MonitorHub`` thread; deletions are
/// parsed (libnftnl) and handed to `onEvent`, additions by others are skipped by message type.
/// Our own commits never reach it: the worker takes it out of the group for each of them
/// (``NetnsWorker/commit(_:quieting:)``).
final class NetnsMonitor: Sendable {
    let netns: String?
    let logger: Logger
    let onEvent: @Sendable (NftablesEvent) -> Void
    /// The socket once it listens, else -1; the lock also keeps ``close()`` from closing it
    /// while the hub reads it.
    private let fd = Mutex<Int32>(-1)

    /// The monitor's socket once it listens, else -1.
    var socketFD: Int32 { fd.withLock { $0 } }
    /// Datagrams of notifications received.
    let received = Atomic<Int>(0)

    init(netns: String?, logger: Logger, onEvent: @escaping @Sendable (NftablesEvent) -> Void) {
        self.netns = netns
        self.logger = logger
        self.onEvent = onEvent
        let identity = netns.flatMap(NamespaceIdentity.init(path:))
        let threads = NamespaceThreads.shared
        threads.submit(on: threads.assign()) { [self] in
            if let reason = threads.enter(netns, identity: identity) {
                logger.error(
                    "nftables monitor cannot enter the namespace",
                    metadata: ["netns": "\(netns ?? "-")", "error": "\(reason)"])
                return
            }
            let socket = dnsfence_nft_monitor_open()
            guard socket >= 0 else {
                logger.error(
                    "nftables monitor cannot open its socket",
                    metadata: ["netns": "\(netns ?? "-")", "error": "\(String(cString: strerror(-socket)))"])
                return
            }
            fd.withLock { $0 = socket }
            MonitorHub.shared.add(socket, self)
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

    /// On the hub's thread: reports what waits on the socket; false if the socket failed (the
    /// monitor then stops, and its descriptor reads -1).
    func drain(into buffer: UnsafeMutableRawBufferPointer) -> Bool {
        fd.withLock { socket in
            guard socket >= 0 else { return false }
            guard drain(socket, into: buffer) else {
                // Left open: a commit may be quieting this descriptor right now, and a closed
                // number could be reused by another socket.
                socket = -1
                return false
            }
            return true
        }
    }

    /// Stops listening for good (the namespace is no longer used): the hub forgets the socket
    /// and it is closed. Called under the namespace worker's lock, which commits hold while
    /// they quiet the monitor.
    func close() {
        fd.withLock { socket in
            guard socket >= 0 else { return }
            MonitorHub.shared.remove(socket)
            Glibc.close(socket)
            socket = -1
        }
    }

    private func drain(_ socket: Int32, into buffer: UnsafeMutableRawBufferPointer) -> Bool {
        // The hub holds the monitor while it reads it.
        let context = Unmanaged.passUnretained(self).toOpaque()
        let rc = dnsfence_nft_monitor_drain(
            socket, buffer.baseAddress, UInt32(buffer.count),
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
            }, context)
        guard rc == 0 else {
            logger.error(
                "nftables monitor stopped",
                metadata: ["netns": "\(netns ?? "-")", "error": "\(String(cString: strerror(-rc)))"])
            return false
        }
        return true
    }
}

/// The one thread that reads every monitor's socket (epoll), whatever the number of namespaces.
final class MonitorHub: Sendable {
    static let shared = MonitorHub()

    private let epoll = dnsfence_epoll_create()
    /// Monitors by socket descriptor, until their namespace is no longer used.
    private let monitors = Mutex<[Int32: NetnsMonitor]>([:])

    private init() {
        let started = startThread(named: "dnsfence-monitor") { [self] in run() }
        precondition(started && epoll >= 0, "cannot start the nftables monitor thread")
    }

    func add(_ socket: Int32, _ monitor: NetnsMonitor) {
        monitors.withLock { $0[socket] = monitor }
        let rc = dnsfence_epoll_control(
            epoll, Int32(DNSFENCE_EPOLL_ADD), socket, UInt32(DNSFENCE_EPOLLIN), UInt64(socket))
        if rc != 0 {
            monitor.logger.error(
                "nftables monitor cannot be watched", metadata: ["error": "\(String(cString: strerror(-rc)))"])
        }
    }

    func remove(_ socket: Int32) {
        _ = dnsfence_epoll_control(epoll, Int32(DNSFENCE_EPOLL_DEL), socket, 0, 0)
        monitors.withLock { $0[socket] = nil }
    }

    private func run() {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
        var tokens = [UInt64](repeating: 0, count: 64)
        var events = [UInt32](repeating: 0, count: 64)
        while true {
            let ready = dnsfence_epoll_wait(epoll, &tokens, &events, Int32(tokens.count), -1)
            guard ready > 0 else { continue }
            for token in tokens[0..<Int(ready)] {
                let socket = Int32(truncatingIfNeeded: token)
                guard let monitor = monitors.withLock({ $0[socket] }) else { continue }
                if !monitor.drain(into: buffer) { remove(socket) }
            }
        }
    }
}
