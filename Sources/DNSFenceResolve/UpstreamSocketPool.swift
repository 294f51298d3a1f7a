import DNSFenceIO
import DNSFenceWire
import NIOCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A pool of long-lived UDP sockets for upstream queries, each bound to its own random
/// ephemeral port. A query goes out on a random socket with a random ID that is not in flight
/// there; a reply is accepted only from the queried address and port, with that ID and the
/// same question (RFC 5452 section 4). With 64 sockets and 16-bit IDs an off-path attacker
/// must guess about 22 bits per query; in exchange no socket is created per query (which cost
/// ~300 µs of CPU per forwarded answer).
final class UpstreamSocketPool: Sendable {
    struct Key: Hashable {
        var socket: Int
        var upstream: DatagramPeer
        var id: UInt16
    }

    struct Pending {
        var completion: UpstreamForwarder.Completion
        var question: DNSQuestion
        var loop: any EventLoop
        /// When the query times out (``NIODeadline`` nanoseconds).
        var deadline: UInt64
        /// When a reply is no longer accepted and the query ends with a timeout; past `deadline`
        /// and before it, the caller has been told it timed out and a late reply still counts.
        var expiry: UInt64

        /// Reports, on the caller's loop.
        func conclude(_ result: Result<UpstreamReply, any Error>) {
            if loop.inEventLoop {
                completion(result)
            } else {
                let completion = self.completion
                loop.execute { completion(result) }
            }
        }
    }

    let sockets: [DatagramSocket]
    /// Indices into `sockets` by the loop each socket is registered on.
    private let socketsByLoop: [ObjectIdentifier: [Int]]
    private let pending = Mutex<[Key: Pending]>([:])
    private let rejected = Atomic<Int>(0)
    /// How often queries past their deadline are looked for: a timeout fires up to this late,
    /// and no query pays for a timer of its own (a timer is five allocations on the hot path).
    static let sweepInterval = TimeAmount.milliseconds(50)
    private let sweeper = Mutex<RepeatedTask?>(nil)

    private init(sockets: [DatagramSocket]) {
        self.sockets = sockets
        var byLoop: [ObjectIdentifier: [Int]] = [:]
        for (index, socket) in sockets.enumerated() {
            byLoop[ObjectIdentifier(socket.loop), default: []].append(index)
        }
        socketsByLoop = byLoop
    }

    /// Binds `count` sockets for one address family, spread over `loops`.
    static func make(loops: [DatagramLoop], count: Int, ipv6: Bool) async throws -> UpstreamSocketPool {
        precondition(!loops.isEmpty, "the upstream pool needs a datagram loop")
        let box = PoolBox()
        var sockets: [DatagramSocket] = []
        do {
            for index in 0..<count {
                let socket = try await DatagramSocket.bind(
                    try SocketAddress(ipAddress: ipv6 ? "::" : "0.0.0.0", port: 0), on: loops[index % loops.count]
                ) { _, bytes, peer in
                    box.pool.withLock { $0 }?.deliver(socket: index, from: peer, bytes: bytes)
                }
                sockets.append(socket)
            }
        } catch {
            for socket in sockets { socket.close() }
            throw error
        }
        let pool = UpstreamSocketPool(sockets: sockets)
        box.pool.withLock { $0 = pool }
        let task = loops[0].scheduleRepeatedTask(initialDelay: sweepInterval, delay: sweepInterval) {
            [weak pool] _ in pool?.sweep(now: NIODeadline.now().uptimeNanoseconds)
        }
        pool.sweeper.withLock { $0 = task }
        return pool
    }

    /// Tells every query past its deadline that it timed out: with a late window it stays, and
    /// its reply (or, at its expiry, a final timeout) is reported as well; without, it ends.
    func sweep(now: UInt64) {
        let (late, expired) = pending.withLock { table -> ([Pending], [Pending]) in
            guard table.values.contains(where: { $0.deadline <= now }) else { return ([], []) }
            var late: [Pending] = []
            var expired: [Pending] = []
            for (key, entry) in table where entry.deadline <= now {
                if entry.expiry <= now {
                    expired.append(entry)
                    table[key] = nil
                } else {
                    late.append(entry)
                    table[key]!.deadline = entry.expiry
                }
            }
            return (late, expired)
        }
        for entry in late { entry.conclude(.failure(UpstreamForwarder.UpstreamTimeout(stillListening: true))) }
        for entry in expired { entry.conclude(.failure(UpstreamForwarder.UpstreamTimeout())) }
    }

    var rejectedReplies: Int { rejected.load(ordering: .relaxed) }

    /// Closes every socket; queries in flight time out.
    func close() {
        sweeper.withLock { $0 }?.cancel()
        for socket in sockets { socket.close() }
        // Nothing can answer now: whatever is in flight times out at once.
        sweep(now: .max)
    }

    /// Sends `query` (its ID is replaced) to `upstream` from a random socket, preferably one
    /// on `loop`; `completion` gets the matching reply or a timeout, once, on `loop`. With a
    /// `late` window, a timeout is first reported as still listening (the caller asks elsewhere
    /// meanwhile), and the reply, or a final timeout at the window's end, follows.
    func exchange(
        _ query: DNSMessage, upstream: SocketAddress, timeout: TimeAmount, late: TimeAmount = .zero,
        on loop: any EventLoop, completion: @escaping UpstreamForwarder.Completion
    ) {
        guard let peer = DatagramPeer(upstream) else {
            return completion(.failure(DatagramError(operation: "send to \(upstream)", code: EAFNOSUPPORT)))
        }
        let local = socketsByLoop[ObjectIdentifier(loop)] ?? []
        let index =
            local.isEmpty ? RandomPool.shared.below(sockets.count) : local[RandomPool.shared.below(local.count)]
        let socket = sockets[index]
        var query = query
        let deadline = (NIODeadline.now() + timeout).uptimeNanoseconds
        let key = pending.withLock { table -> Key in
            var draft = Key(socket: index, upstream: peer, id: 0)
            repeat {
                draft.id = RandomPool.shared.next16()
            } while table[draft] != nil
            table[draft] = Pending(
                completion: completion, question: query.questions[0], loop: loop, deadline: deadline,
                expiry: deadline + UInt64(max(late.nanoseconds, 0)))
            return draft
        }
        query.id = key.id
        let bytes = query.encoded()
        if socket.loop.inEventLoop {
            socket.send(bytes, to: peer)
        } else {
            socket.loop.execute { socket.send(bytes, to: peer) }
        }
    }

    /// A datagram arrived on socket `socket`: complete the matching query, or count a rejection.
    /// A plain positive reply (``PlainReply``) is matched on its bytes and handed on undecoded;
    /// anything else is decoded first.
    func deliver(socket: Int, from remote: DatagramPeer, bytes: UnsafeRawBufferPointer) {
        let copy = Array(bytes)
        let reply: UpstreamReply
        if let plain = PlainReply(copy) {
            reply = .plain(plain)
        } else if copy.count >= 12, let message = try? DNSMessage(decoding: copy), message.isResponse {
            reply = .message(message)
        } else {
            rejected.add(1, ordering: .relaxed)
            return
        }
        let key = Key(socket: socket, upstream: remote, id: reply.id)
        let entry = pending.withLock { table -> Pending? in
            guard let entry = table[key], reply.repliesTo(entry.question) else { return nil }
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

/// Lets the sockets' receivers reach the pool that owns them (set once after binding).
final class PoolBox: Sendable {
    let pool = Mutex<UpstreamSocketPool?>(nil)
}
