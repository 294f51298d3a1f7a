import CDatagram
import CoreMetrics
public import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// The address a datagram came from or goes to: the kernel's sockaddr bytes, kept as they are
/// (no text, no allocation). Equal and hashed by family, port and address.
public struct DatagramPeer: Hashable, Sendable {
    var storage: sockaddr_in6
    var length: UInt32

    init(storage: sockaddr_in6, length: UInt32) {
        self.storage = storage
        self.length = length
    }

    /// The peer of an NIO inet or inet6 socket address; nil for other kinds.
    public init?(_ address: SocketAddress) {
        var storage = sockaddr_in6()
        switch address {
        case .v4(let v4):
            withUnsafeMutableBytes(of: &storage) { raw in
                withUnsafeBytes(of: v4.address) { raw.copyMemory(from: $0) }
            }
            length = UInt32(MemoryLayout<sockaddr_in>.size)
        case .v6(let v6):
            storage = v6.address
            length = UInt32(MemoryLayout<sockaddr_in6>.size)
        default:
            return nil
        }
        self.storage = storage
    }

    public var isIPv4: Bool { storage.sin6_family == sa_family_t(AF_INET) }

    /// The IPv4 address in host order, if this is an IPv4 peer.
    public var ipv4: UInt32? {
        guard isIPv4 else { return nil }
        return withUnsafeBytes(of: storage) { UInt32(bigEndian: $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self)) }
    }

    /// The 16 bytes of an IPv6 peer's address.
    public func withIPv6Bytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R? {
        guard storage.sin6_family == sa_family_t(AF_INET6) else { return nil }
        return withUnsafeBytes(of: storage.sin6_addr) { body($0) }
    }

    public var port: UInt16 { UInt16(bigEndian: storage.sin6_port) }

    public static func == (lhs: DatagramPeer, rhs: DatagramPeer) -> Bool {
        guard lhs.storage.sin6_family == rhs.storage.sin6_family, lhs.storage.sin6_port == rhs.storage.sin6_port else {
            return false
        }
        if lhs.isIPv4 { return lhs.ipv4 == rhs.ipv4 }
        return withUnsafeBytes(of: lhs.storage.sin6_addr) { left in
            withUnsafeBytes(of: rhs.storage.sin6_addr) { right in left.elementsEqual(right) }
        } && lhs.storage.sin6_scope_id == rhs.storage.sin6_scope_id
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(storage.sin6_port)
        if let ipv4 {
            hasher.combine(ipv4)
        } else {
            withUnsafeBytes(of: storage.sin6_addr) { hasher.combine(bytes: $0) }
        }
    }
}

/// A non-blocking UDP socket on a ``DatagramLoop``. Received datagrams go to `receiver` on the
/// loop; ``send(_:to:)`` queues a datagram that leaves at the end of the loop's turn, in one
/// sendmmsg(2) with everything else queued on this socket meanwhile. If the kernel's buffer is
/// full the rest waits (up to ``backlogLimit`` datagrams) until the socket is writable again.
public final class DatagramSocket: @unchecked Sendable {
    // @unchecked Sendable: everything mutable is touched on `loop` only.

    /// What a socket does with each datagram it reads (on its loop; the bytes are valid only
    /// during the call).
    public typealias Receiver = @Sendable (DatagramSocket, UnsafeRawBufferPointer, DatagramPeer) -> Void

    public let loop: DatagramLoop
    let fd: Int32
    /// The address the socket is bound to (with the kernel's port for port 0).
    public let localAddress: DatagramPeer
    // Loop-confined state is exempt from dynamic exclusivity checks (they showed up at ~1.5 %
    // of a denied answer's CPU): only the loop's thread touches it.
    @exclusivity(unchecked) private var receiver: Receiver?

    private struct Outgoing {
        var offset: Int
        var length: Int
        var peer: DatagramPeer
    }

    @exclusivity(unchecked) private var outgoing: [Outgoing] = []
    @exclusivity(unchecked) private var outgoingBytes: [UInt8] = []
    @exclusivity(unchecked) private var waitingForWritable = false
    @exclusivity(unchecked) private var closed = false
    /// Datagrams dropped because the send backlog was full or the kernel refused them.
    @exclusivity(unchecked) public private(set) var dropped = 0
    /// Datagrams read that did not fit the receive buffer (64 KiB), and were ignored.
    @exclusivity(unchecked) public private(set) var truncated = 0
    public static let backlogLimit = 4096

    /// `dnsfence_udp_dropped_total{reason}`, made when the first loop starts so that every
    /// series is exported from the start.
    static let metrics = (
        backlogFull: Counter(label: "dnsfence_udp_dropped_total", dimensions: [("reason", "send_backlog_full")]),
        refused: Counter(label: "dnsfence_udp_dropped_total", dimensions: [("reason", "send_refused")]),
        truncated: Counter(label: "dnsfence_udp_dropped_total", dimensions: [("reason", "receive_truncated")])
    )

    /// Binds a socket to `address` (SO_REUSEPORT if `reusePort`, IPV6_V6ONLY for IPv6) and
    /// registers it on `loop`; `receiver` runs on the loop for every datagram.
    public static func bind(
        _ address: SocketAddress, reusePort: Bool = false, on loop: DatagramLoop,
        receiver: @escaping Receiver
    ) async throws -> DatagramSocket {
        try await loop.submit {
            try DatagramSocket(binding: address, reusePort: reusePort, on: loop, receiver: receiver)
        }.get()
    }

    /// Takes over `fd`, a bound UDP socket someone else made (systemd's socket activation),
    /// makes it non-blocking and registers it on `loop`. The socket is closed on failure.
    public static func adopt(_ fd: Int32, on loop: DatagramLoop, receiver: @escaping Receiver) async throws
        -> DatagramSocket
    {
        try await loop.submit {
            let flags = fcntl(fd, F_GETFL)
            guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 else {
                let code = errno
                Glibc.close(fd)
                throw DatagramError(operation: "fcntl", code: code)
            }
            return try DatagramSocket(descriptor: fd, on: loop, receiver: receiver)
        }.get()
    }

    private convenience init(
        binding address: SocketAddress, reusePort: Bool, on loop: DatagramLoop, receiver: @escaping Receiver
    ) throws {
        guard var peer = DatagramPeer(address) else {
            throw DatagramError(operation: "bind \(address)", code: EAFNOSUPPORT)
        }
        let fd = withUnsafePointer(to: &peer.storage) { storage in
            storage.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                dnsfence_datagram_socket($0, peer.length, reusePort ? 1 : 0)
            }
        }
        guard fd >= 0 else { throw DatagramError(operation: "bind \(address)", code: -fd) }
        try self.init(descriptor: fd, on: loop, receiver: receiver)
    }

    /// Over a bound, non-blocking socket; closes it on failure.
    private init(descriptor fd: Int32, on loop: DatagramLoop, receiver: @escaping Receiver) throws {
        var local = sockaddr_in6()
        var localLength: UInt32 = 0
        let rc = dnsfence_datagram_local(fd, &local, &localLength)
        guard rc == 0 else {
            Glibc.close(fd)
            throw DatagramError(operation: "getsockname", code: -rc)
        }
        self.fd = fd
        self.loop = loop
        self.localAddress = DatagramPeer(storage: local, length: localLength)
        self.receiver = receiver
        do {
            try loop.register(self)
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// Queues `bytes` for `peer`; it leaves at the end of this loop turn. Call on the loop.
    public func send(_ bytes: [UInt8], to peer: DatagramPeer) {
        bytes.withUnsafeBytes { send($0, to: peer) }
    }

    /// The same from raw bytes (copied).
    public func send(_ bytes: UnsafeRawBufferPointer, to peer: DatagramPeer) {
        send(count: bytes.count, to: peer) { UnsafeMutableRawBufferPointer($0).copyMemory(from: bytes) }
    }

    /// Queues a datagram of `count` bytes that `write` fills in place (no array per datagram).
    public func send(count: Int, to peer: DatagramPeer, writing write: (UnsafeMutableBufferPointer<UInt8>) -> Void) {
        guard !closed else { return }
        guard outgoing.count < Self.backlogLimit else {
            dropped += 1
            Self.metrics.backlogFull.increment()
            return
        }
        if outgoing.isEmpty && !waitingForWritable { loop.markDirty(self) }
        let offset = outgoingBytes.count
        outgoing.append(Outgoing(offset: offset, length: count, peer: peer))
        outgoingBytes.append(contentsOf: repeatElement(0, count: count))
        outgoingBytes.withUnsafeMutableBufferPointer { write(UnsafeMutableBufferPointer(rebasing: $0[offset...])) }
    }

    /// Stops reading and closes the socket (queued datagrams are dropped). From any thread.
    public func close() {
        if loop.inEventLoop {
            closeNow()
        } else {
            loop.execute { [self] in closeNow() }
        }
    }

    func closeNow() {
        guard !closed else { return }
        closed = true
        loop.deregister(self)
        Glibc.close(fd)
        receiver = nil
        outgoing = []
        outgoingBytes = []
    }

    func readable() {
        guard let receiver else { return }
        let slots = loop.receiveSlots
        // A bounded number of rounds per turn keeps one busy socket from starving the others
        // (epoll is level-triggered: what is left is read next turn).
        for _ in 0..<4 {
            let count = Int(dnsfence_recv_datagrams(fd, slots, Int32(loop.receiveBatch)))
            guard count > 0 else { return }
            for index in 0..<count {
                let slot = slots[index]
                guard slot.truncated == 0 else {
                    truncated += 1
                    Self.metrics.truncated.increment()
                    continue
                }
                receiver(
                    self, UnsafeRawBufferPointer(start: slot.data, count: Int(slot.length)),
                    DatagramPeer(storage: slot.peer, length: slot.peer_length))
                if closed { return }
            }
            guard count == loop.receiveBatch else { return }
        }
    }

    func writable() {
        waitingForWritable = false
        loop.watchWritable(self, false)
        flush()
    }

    /// Sends what is queued, in batches; keeps the rest and waits for EPOLLOUT on EAGAIN.
    func flush() {
        guard !closed, !waitingForWritable, !outgoing.isEmpty else { return }
        var sent = 0
        let slots = loop.sendSlots
        outgoingBytes.withUnsafeMutableBufferPointer { bytes in
            while sent < outgoing.count {
                let batch = min(outgoing.count - sent, loop.sendBatch)
                for index in 0..<batch {
                    let item = outgoing[sent + index]
                    slots[index].data = bytes.baseAddress! + item.offset
                    slots[index].length = UInt32(item.length)
                    slots[index].peer = item.peer.storage
                    slots[index].peer_length = item.peer.length
                }
                let rc = Int(dnsfence_send_datagrams(fd, slots, Int32(batch)))
                if rc == -Int(EAGAIN) || rc == -Int(EWOULDBLOCK) || rc == -Int(ENOBUFS) {
                    break
                } else if rc < 0 {
                    // This datagram is refused (unreachable, filtered, too big): UDP loses it.
                    dropped += 1
                    Self.metrics.refused.increment()
                    sent += 1
                } else {
                    sent += rc
                }
            }
        }
        if sent == outgoing.count {
            outgoing.removeAll(keepingCapacity: true)
            outgoingBytes.removeAll(keepingCapacity: true)
            return
        }
        let base = outgoing[sent].offset
        outgoing.removeFirst(sent)
        for index in outgoing.indices { outgoing[index].offset -= base }
        outgoingBytes.removeFirst(base)
        waitingForWritable = true
        loop.watchWritable(self, true)
    }
}
