import DNSFenceWire
import NIOCore
import NIOPosix
import Synchronization

/// A pool of long-lived UDP sockets for upstream queries, each bound to its own random
/// ephemeral port. A query goes out on a random socket with a random ID that is not in flight
/// there; a reply is accepted only from the queried address and port, with that ID and the
/// same question (RFC 5452 section 4). With 64 sockets and 16-bit IDs an off-path attacker
/// must guess about 22 bits per query; in exchange no socket is created per query (which cost
/// ~300 µs of CPU per forwarded answer).
final class UpstreamSocketPool: Sendable {
    struct Key: Hashable {
        var socket: Int
        var upstream: SocketAddress
        var id: UInt16
    }

    struct Pending {
        var completion: UpstreamForwarder.Completion
        var question: DNSQuestion
        var loop: any EventLoop
        var timer: Scheduled<Void>?

        /// Cancels the timer and reports, on the caller's loop.
        func conclude(_ result: Result<DNSMessage, any Error>) {
            timer?.cancel()
            if loop.inEventLoop {
                completion(result)
            } else {
                let completion = self.completion
                loop.execute { completion(result) }
            }
        }
    }

    let channels: [any Channel]
    /// Indices into `channels` by the event loop each socket is registered on.
    private let socketsByLoop: [ObjectIdentifier: [Int]]
    private let pending = Mutex<[Key: Pending]>([:])
    private let rejected = Atomic<Int>(0)

    private init(channels: [any Channel]) {
        self.channels = channels
        var byLoop: [ObjectIdentifier: [Int]] = [:]
        for (index, channel) in channels.enumerated() {
            byLoop[ObjectIdentifier(channel.eventLoop), default: []].append(index)
        }
        socketsByLoop = byLoop
    }

    /// Binds `count` sockets for each address family the upstreams use.
    static func make(group: any EventLoopGroup, count: Int, ipv6: Bool) async throws -> UpstreamSocketPool {
        let handlerBox = HandlerBox()
        var channels: [any Channel] = []
        for index in 0..<count {
            let channel = try await DatagramBootstrap(group: group)
                .channelOption(.datagramVectorReadMessageCount, value: 16)
                .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65536))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(PoolReplyHandler(socket: index, box: handlerBox))
                    }
                }
                .bind(host: ipv6 ? "::" : "0.0.0.0", port: 0).get()
            channels.append(channel)
        }
        let pool = UpstreamSocketPool(channels: channels)
        handlerBox.pool.withLock { $0 = pool }
        return pool
    }

    var rejectedReplies: Int { rejected.load(ordering: .relaxed) }

    /// Sends `query` (its ID is replaced) to `upstream` from a random socket, preferably one
    /// on `loop`; `completion` gets the matching reply or a timeout, once, on `loop`.
    func exchange(
        _ query: DNSMessage, upstream: SocketAddress, timeout: TimeAmount, on loop: any EventLoop,
        completion: @escaping UpstreamForwarder.Completion
    ) {
        let local = socketsByLoop[ObjectIdentifier(loop)] ?? []
        let socket =
            local.isEmpty ? RandomPool.shared.below(channels.count) : local[RandomPool.shared.below(local.count)]
        let channel = channels[socket]
        var query = query
        let key = pending.withLock { table -> Key in
            var draft = Key(socket: socket, upstream: upstream, id: 0)
            repeat {
                draft.id = RandomPool.shared.next16()
            } while table[draft] != nil
            table[draft] = Pending(completion: completion, question: query.questions[0], loop: loop, timer: nil)
            return draft
        }
        query.id = key.id
        let timer = channel.eventLoop.scheduleTask(in: timeout) { [self] () -> Void in
            pending.withLock { $0.removeValue(forKey: key) }?.conclude(.failure(UpstreamForwarder.UpstreamTimeout()))
        }
        // If the reply won the race the entry is gone and the timer finds nothing when it fires.
        pending.withLock { $0[key]?.timer = timer }
        let envelope = AddressedEnvelope(remoteAddress: upstream, data: ByteBuffer(bytes: query.encoded()))
        channel.writeAndFlush(envelope).whenFailure { [self] error in
            pending.withLock { $0.removeValue(forKey: key) }?.conclude(.failure(error))
        }
    }

    /// A datagram arrived on socket `socket`: complete the matching query, or count a rejection.
    func deliver(socket: Int, from remote: SocketAddress, bytes: [UInt8]) {
        guard bytes.count >= 12, let reply = try? DNSMessage(decoding: bytes), reply.isResponse else {
            rejected.add(1, ordering: .relaxed)
            return
        }
        let key = Key(socket: socket, upstream: remote, id: reply.id)
        let entry = pending.withLock { table -> Pending? in
            guard let entry = table[key], reply.questions.count == 1, let question = reply.questions.first,
                question.name == entry.question.name, question.type == entry.question.type,
                question.rrClass == entry.question.rrClass
            else { return nil }
            table[key] = nil
            return entry
        }
        guard let entry else {
            rejected.add(1, ordering: .relaxed)
            return
        }
        entry.conclude(.success(reply))
    }
}

/// Lets the handlers reach the pool that owns their channels (set once after binding).
final class HandlerBox: Sendable {
    let pool = Mutex<UpstreamSocketPool?>(nil)
}

final class PoolReplyHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let socket: Int
    let box: HandlerBox

    init(socket: Int, box: HandlerBox) {
        self.socket = socket
        self.box = box
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        box.pool.withLock { $0 }?.deliver(
            socket: socket, from: envelope.remoteAddress, bytes: Array(buffer: envelope.data))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP errors for an upstream that is down surface here; the query times out.
    }
}
