import CoreMetrics
public import DNSFenceIO
public import Logging
public import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Binds UDP and TCP on every listener address, and serves until ``shutdown()``: UDP with one
/// socket per ``DatagramLoop`` sharing the port (SO_REUSEPORT, so the kernel spreads clients
/// over the loops), TCP on NIO's loops.
public final class DNSServer: Sendable {
    public struct Listener: Sendable {
        public var address: SocketAddress
        public var policy: String?
        /// Sockets already bound for this address (systemd socket activation): used instead of
        /// binding. A UDP descriptor is served by one loop.
        public var udpDescriptor: Int32?
        public var tcpDescriptor: Int32?

        /// What identifies a listener across reloads: its address and policy.
        var key: String { "\(address)|\(policy ?? "")" }

        public init(address: SocketAddress, policy: String?, udpDescriptor: Int32? = nil, tcpDescriptor: Int32? = nil) {
            self.address = address
            self.policy = policy
            self.udpDescriptor = udpDescriptor
            self.tcpDescriptor = tcpDescriptor
        }
    }

    public struct Limits: Sendable {
        /// Idle TCP connections are closed after this long (RFC 7766 6.2.3 suggests seconds).
        public var tcpIdleTimeout: TimeAmount = .seconds(10)
        /// Pending connections the kernel queues before accept.
        public var tcpBacklog: Int32 = 1024
        /// Open TCP connections at most (all listeners); the idlest is closed to admit a new one.
        public var tcpMaxConnections = 1024
        /// Open TCP connections per client address at most; likewise.
        public var tcpMaxPerClient = 256

        public init() {}
    }

    let group: any EventLoopGroup
    let loops: [DatagramLoop]
    let pipeline: QueryPipeline
    let logger: Logger
    /// The rate limiter's kernel filter, attached to every UDP socket a listener binds or adopts.
    let shedder: KernelShedder?
    /// What each listener has bound, by ``Listener/key``.
    private let bound = Mutex<[String: Bound]>([:])
    /// The limits and connection registry of ``start(_:limits:)``, for listeners added later.
    private let setup = Mutex<(limits: Limits, registry: TCPConnectionRegistry)?>(nil)

    /// The sockets of one listener.
    struct Bound: Sendable {
        var udp: [DatagramSocket] = []
        var tcp: (any Channel)?
    }

    /// TCP is served on `group`, UDP on `loops`.
    public init(
        group: any EventLoopGroup, loops: [DatagramLoop], pipeline: QueryPipeline, logger: Logger,
        shedder: KernelShedder? = nil
    ) {
        self.group = group
        self.loops = loops
        self.pipeline = pipeline
        self.logger = logger
        self.shedder = shedder
    }

    /// What a listener's UDP socket runs for each datagram (for tools that bind their own).
    public static func udpReceiver(pipeline: QueryPipeline, listenerPolicy: String?) -> DatagramSocket.Receiver {
        UDPQueryHandler.receiver(pipeline: pipeline, listenerPolicy: listenerPolicy)
    }

    /// Binds every listener; throws (and closes what was bound) if any address cannot be bound.
    public func start(_ listeners: [Listener], limits: Limits = Limits()) async throws {
        let registry = TCPConnectionRegistry(
            limits: .init(maxConnections: limits.tcpMaxConnections, maxPerClient: limits.tcpMaxPerClient))
        setup.withLock { $0 = (limits, registry) }
        do {
            for listener in listeners { try await bind(listener) }
        } catch {
            await shutdown()
            throw error
        }
    }

    /// Makes the bound listeners `listeners` (a reload): closes those no longer listed (or whose
    /// policy changed), then binds the new ones. Returns a message for each listener that could
    /// not be bound (the others serve).
    public func update(to listeners: [Listener]) async -> [String] {
        let wanted = Set(listeners.map(\.key))
        let gone = bound.withLock { bound in
            let keys = bound.keys.filter { !wanted.contains($0) }
            return keys.compactMap { bound.removeValue(forKey: $0) }
        }
        for sockets in gone { await close(sockets) }
        var problems: [String] = []
        for listener in listeners where bound.withLock({ $0[listener.key] == nil }) {
            do {
                try await bind(listener)
            } catch {
                problems.append("listener \(listener.address) (policy \(listener.policy ?? "-")): \(error)")
            }
        }
        return problems
    }

    /// Binds one listener's UDP sockets (one per loop) and TCP socket, or adopts the sockets it
    /// was handed; on failure closes what it bound and throws.
    private func bind(_ listener: Listener) async throws {
        guard let (limits, registry) = setup.withLock({ $0 }) else { return }
        var sockets = Bound()
        do {
            let receiver = UDPQueryHandler.receiver(pipeline: pipeline, listenerPolicy: listener.policy)
            if let fd = listener.udpDescriptor {
                sockets.udp.append(try await DatagramSocket.adopt(fd, on: loops[0], receiver: receiver))
            } else if listener.tcpDescriptor == nil {
                for loop in loops {
                    sockets.udp.append(
                        try await DatagramSocket.bind(listener.address, reusePort: true, on: loop, receiver: receiver))
                }
            }
            if let shedder {
                // Without the filter the rate limiter still drops in user space: not fatal.
                do {
                    for socket in sockets.udp { try shedder.attach(to: socket) }
                } catch {
                    logger.warning(
                        "rate limits on \(listener.address) are enforced by dnsfence alone",
                        metadata: ["reason": "\(error)"])
                }
            }
            if listener.udpDescriptor == nil || listener.tcpDescriptor != nil {
                sockets.tcp = try await bindTCP(listener, limits: limits, registry: registry)
            }
        } catch {
            await close(sockets)
            throw error
        }
        bound.withLock { $0[listener.key] = sockets }
        logger.info("listening", metadata: ["address": "\(listener.address)", "policy": "\(listener.policy ?? "-")"])
    }

    private func bindTCP(_ listener: Listener, limits: Limits, registry: TCPConnectionRegistry) async throws
        -> any Channel
    {
        let bootstrap = ServerBootstrap(group: group)
        let pipeline = self.pipeline
        let configured =
            bootstrap
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(readTimeout: limits.tcpIdleTimeout))
                    try sync.addHandler(ByteToMessageHandler(DNSFrameDecoder(messageTimeout: limits.tcpIdleTimeout)))
                    try sync.addHandler(
                        TCPQueryHandler(pipeline: pipeline, listenerPolicy: listener.policy, registry: registry))
                }
            }
        StreamListener.reserveSpare()
        let descriptor = try listener.tcpDescriptor ?? StreamListener.bind(listener.address, backlog: limits.tcpBacklog)
        do {
            return try await configured.serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptShedder(listener: descriptor))
                }
            }.withBoundSocket(descriptor).get()
        } catch {
            if listener.tcpDescriptor == nil { Glibc.close(descriptor) }
            throw error
        }
    }

    private func close(_ sockets: Bound) async {
        try? await sockets.tcp?.close()
        for socket in sockets.udp { socket.close() }
    }

    /// Waits (up to `timeout`) for queries in flight upstream to be answered, then closes every
    /// socket: a SIGTERM does not cut off answers that are on their way.
    public func drainAndShutdown(timeout: Duration = .seconds(3)) async {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while pipeline.inflightCount > 0 && clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        // Let the last answers reach their sockets before closing them.
        try? await Task.sleep(for: .milliseconds(20))
        await shutdown()
    }

    /// Closes every listening socket.
    public func shutdown() async {
        let all = bound.withLock { bound in
            defer { bound = [:] }
            return Array(bound.values)
        }
        for sockets in all { await close(sockets) }
    }
}

/// On a TCP listener: when accept fails for want of descriptors, refuses what waits (see
/// ``StreamListener/shed(_:)``) instead of letting SwiftNIO retry the accept in a loop.
final class AcceptShedder: ChannelInboundHandler, Sendable {
    typealias InboundIn = Any
    let listener: Int32
    private let shedCounter = Counter(label: "dnsfence_tcp_refused_total", dimensions: [("reason", "descriptors")])

    init(listener: Int32) { self.listener = listener }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let failure = error as? IOError, [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(failure.errnoCode) else {
            context.fireErrorCaught(error)
            return
        }
        shedCounter.increment(by: StreamListener.shed(listener))
    }
}
