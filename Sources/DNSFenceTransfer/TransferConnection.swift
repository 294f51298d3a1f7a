public import DNSFenceCore

#if canImport(Glibc)
    import Glibc
#endif

/// A primary server: its address and port (53 unless written).
public struct TransferPrimary: Sendable, Hashable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(address: IPAddress, port: UInt16 = 53) {
        self.address = address
        self.port = port
    }

    public var description: String { address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)" }
}

/// Why a transfer failed. Whatever it was, nothing of the transfer is used.
public enum TransferError: Error, Sendable, CustomStringConvertible, Equatable {
    /// Connecting, sending or receiving failed (or timed out).
    case network(String)
    /// The primary answered with an error RCODE.
    case refused(String)
    /// A message is not signed, or not signed right, with the zone's key.
    case tsig(String)
    /// A message or the sequence of records is not a transfer of this zone.
    case malformed(String)
    /// An IXFR that does not apply to the zone held (a deletion of a record it has not).
    case incoherent(String)

    public var description: String {
        switch self {
        case .network(let why), .refused(let why), .tsig(let why), .malformed(let why), .incoherent(let why): why
        }
    }

    /// The label of `dnsfence_zone_transfers_total{result}`.
    public var label: String {
        switch self {
        case .network: "network"
        case .refused: "refused"
        case .tsig: "tsig"
        case .malformed: "malformed"
        case .incoherent: "incoherent"
        }
    }
}

/// One TCP connection to a primary with blocking I/O bounded by a timeout per operation (the
/// transfer runs on its own thread). DNS over TCP frames each message with its length.
final class TransferConnection {
    private let fd: Int32
    private let peer: TransferPrimary

    init(to primary: TransferPrimary, timeout seconds: Int) throws(TransferError) {
        peer = primary
        let family = primary.address.isIPv4 ? AF_INET : AF_INET6
        fd = socket(family, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .network("socket: \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var storage = sockaddr_storage()
        let length = primary.address.withSocketAddress(port: primary.port, into: &storage)
        let rc = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        }
        guard rc == 0 else {
            let why = errno == EINPROGRESS || errno == EAGAIN ? "timed out" : String(cString: strerror(errno))
            close(fd)
            throw .network("cannot connect to \(primary): \(why)")
        }
    }

    deinit { close(fd) }

    func send(_ message: [UInt8]) throws(TransferError) {
        let framed = [UInt8(message.count >> 8), UInt8(message.count & 0xFF)] + message
        var sent = 0
        while sent < framed.count {
            let n = framed.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + sent, framed.count - sent, Int32(MSG_NOSIGNAL))
            }
            guard n > 0 else { throw .network("sending to \(peer): \(Self.reason(n))") }
            sent += n
        }
    }

    /// The next message, or nil when the primary closed the connection between messages.
    func receive() throws(TransferError) -> [UInt8]? {
        guard let prefix = try read(2, allowEOF: true) else { return nil }
        let length = Int(prefix[0]) << 8 | Int(prefix[1])
        guard length >= 12 else { throw .malformed("\(peer) sent a \(length)-byte message") }
        return try read(length, allowEOF: false)
    }

    private func read(_ count: Int, allowEOF: Bool) throws(TransferError) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var have = 0
        while have < count {
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + have, count - have, 0) }
            if n == 0 {
                if have == 0 && allowEOF { return nil }
                throw .network("\(peer) closed the connection in the middle of a message")
            }
            guard n > 0 else { throw .network("receiving from \(peer): \(Self.reason(n))") }
            have += n
        }
        return out
    }

    private static func reason(_ n: Int) -> String {
        n == 0 ? "connection closed" : errno == EAGAIN ? "timed out" : String(cString: strerror(errno))
    }
}

extension IPAddress {
    /// Fills `storage` with this address and `port`; returns the address length.
    func withSocketAddress(port: UInt16, into storage: inout sockaddr_storage) -> socklen_t {
        let bytes = self.bytes
        return withUnsafeMutableBytes(of: &storage) { raw in
            if bytes.count == 4 {
                var sin = sockaddr_in()
                sin.sin_family = sa_family_t(AF_INET)
                sin.sin_port = port.bigEndian
                withUnsafeMutableBytes(of: &sin.sin_addr) { $0.copyBytes(from: bytes) }
                raw.storeBytes(of: sin, as: sockaddr_in.self)
                return socklen_t(MemoryLayout<sockaddr_in>.size)
            }
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: bytes) }
            raw.storeBytes(of: sin6, as: sockaddr_in6.self)
            return socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
    }
}
