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
