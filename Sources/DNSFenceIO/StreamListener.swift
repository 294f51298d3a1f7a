import CDatagram
public import NIOCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The TCP listening sockets dnsfence makes itself (and hands to SwiftNIO), so that it knows
/// their descriptors: when the descriptor table is full, a pending connection keeps the
/// listener readable and SwiftNIO's accept loop spins on EMFILE (its own back-off does not stop
/// that: the read it asked for stays pending). ``shed(_:)`` then refuses what is pending.
public enum StreamListener {
    /// A listening socket on `address` (SO_REUSEADDR; IPv6 only for IPv6).
    public static func bind(_ address: SocketAddress, backlog: Int32) throws -> Int32 {
        guard var peer = DatagramPeer(address) else {
            throw DatagramError(operation: "bind \(address)", code: EAFNOSUPPORT)
        }
        let fd = withUnsafePointer(to: &peer.storage) { storage in
            storage.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                dnsfence_stream_listener($0, peer.length, backlog)
            }
        }
        guard fd >= 0 else { throw DatagramError(operation: "bind \(address)", code: -fd) }
        return fd
    }

    /// One descriptor kept open for the moment the table is full: closed, it makes room for
    /// accepting (and closing) what waits on a listener.
    private static let spare = Mutex<Int32>(open("/dev/null", O_RDONLY | O_CLOEXEC))

    /// Opens the spare descriptor if it is not open: call it while there is room (with each
    /// listener), not first when the table is full.
    public static func reserveSpare() {
        spare.withLock { spare in
            if spare < 0 { spare = open("/dev/null", O_RDONLY | O_CLOEXEC) }
        }
    }

    /// Refuses (accepts and closes) up to 256 connections waiting on `listener`; how many.
    public static func shed(_ listener: Int32) -> Int {
        spare.withLock { spare in Int(dnsfence_shed_connections(listener, &spare, 256)) }
    }
}
