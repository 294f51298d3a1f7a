import DNSFenceCore
import DNSFenceIO
import DNSFenceWire
import NIOCore

/// The UDP side of a listener: each datagram read on a ``DatagramLoop`` runs the synchronous
/// pipeline stage inline; an answer made now is queued on the socket and leaves with the rest
/// of the loop turn's answers in one sendmmsg(2). A query that must go upstream continues as
/// callbacks on the same loop (its upstream socket is one of that loop's), and its answer
/// leaves at the end of the turn that completed it.
enum UDPQueryHandler {
    static func receiver(pipeline: QueryPipeline, listenerPolicy: String?) -> DatagramSocket.Receiver {
        { socket, bytes, peer in
            guard let client = peer.ipAddress else { return }
            let queryContext = QueryContext(client: client, listenerPolicy: listenerPolicy, transport: .udp)
            // An answer made now is written straight into the send buffer.
            guard
                let pending = pipeline.handle(
                    bytes, context: queryContext, emit: { socket.send(count: $0, to: peer, writing: $1) })
            else { return }
            pipeline.complete(pending, on: socket.loop) { response in
                guard let response else { return }
                socket.send(response, to: peer)
            }
        }
    }
}

extension DatagramPeer {
    /// The peer's IP address (from the sockaddr bytes, not text).
    var ipAddress: IPAddress? {
        if let ipv4 { return .v4(ipv4) }
        return withIPv6Bytes { IPAddress(bytes: $0) } ?? nil
    }
}

extension SocketAddress {
    /// The IP address of an inet/inet6 socket address (from its bytes, not its text).
    var dnsfenceIP: IPAddress? {
        switch self {
        case .v4(let address): return .v4(UInt32(bigEndian: address.address.sin_addr.s_addr))
        case .v6(let address): return withUnsafeBytes(of: address.address.sin6_addr) { IPAddress(bytes: $0) }
        default: return nil
        }
    }
}
