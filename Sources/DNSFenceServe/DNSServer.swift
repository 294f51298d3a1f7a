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
    let channels = Mutex<[any Channel]>([])
    let datagramSockets = Mutex<[DatagramSocket]>([])

    /// TCP is served on `group`, UDP on `loops`.
    public init(group: any EventLoopGroup, loops: [DatagramLoop], pipeline: QueryPipeline, logger: Logger) {
        self.group = group
        self.loops = loops
        self.pipeline = pipeline
        self.logger = logger
    }

    /// What a listener's UDP socket runs for each datagram (for tools that bind their own).
    public static func udpReceiver(pipeline: QueryPipeline, listenerPolicy: String?) -> DatagramSocket.Receiver {
        UDPQueryHandler.receiver(pipeline: pipeline, listenerPolicy: listenerPolicy)
    }

    /// Binds every listener; throws (and closes what was bound) if any address cannot be bound.
    public func start(_ listeners: [Listener], limits: Limits = Limits()) async throws {
        let registry = TCPConnectionRegistry(
            limits: .init(
                maxConnections: limits.tcpMaxConnections,
                maxPerClient: limits.tcpMaxPerClient))
        do {
            for listener in listeners {
                let receiver = UDPQueryHandler.receiver(pipeline: pipeline, listenerPolicy: listener.policy)
                if let fd = listener.udpDescriptor {
                    let udp = try await DatagramSocket.adopt(fd, on: loops[0], receiver: receiver)
                    datagramSockets.withLock { $0.append(udp) }
                } else if listener.tcpDescriptor == nil {
                    for loop in loops {
                        let udp = try await DatagramSocket.bind(
                            listener.address, reusePort: true, on: loop, receiver: receiver)
                        datagramSockets.withLock { $0.append(udp) }
                    }
                }
                if listener.udpDescriptor != nil && listener.tcpDescriptor == nil {
                    logger.info("listening (socket activation, UDP)", metadata: ["address": "\(listener.address)"])
                    continue
                }
                var bootstrap = ServerBootstrap(group: group)
                if listener.address.protocol == .inet6 && listener.tcpDescriptor == nil {
                    // IPv6 listeners are IPv6 only, as the UDP sockets are.
                    bootstrap = bootstrap.serverChannelOption(
                        ChannelOptions.Types.SocketOption(level: .ipv6, name: .ipv6_v6only), value: 1)
                }
                let configured =
                    bootstrap
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .serverChannelOption(.backlog, value: limits.tcpBacklog)
                    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                    .childChannelInitializer { [pipeline] channel in
                        channel.eventLoop.makeCompletedFuture {
                            let sync = channel.pipeline.syncOperations
                            try sync.addHandler(IdleStateHandler(readTimeout: limits.tcpIdleTimeout))
                            try sync.addHandler(ByteToMessageHandler(DNSFrameDecoder()))
                            try sync.addHandler(
                                TCPQueryHandler(pipeline: pipeline, listenerPolicy: listener.policy, registry: registry)
                            )
                        }
                    }
                let tcp =
                    try await
                    (listener.tcpDescriptor.map { configured.withBoundSocket($0) }
                    ?? configured.bind(to: listener.address)).get()
                channels.withLock { $0.append(tcp) }
                logger.info(
                    "listening", metadata: ["address": "\(listener.address)", "policy": "\(listener.policy ?? "-")"])
            }
        } catch {
            await shutdown()
            throw error
        }
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
        let all = channels.withLock { channels in
            defer { channels = [] }
            return channels
        }
        for channel in all { try? await channel.close() }
        let sockets = datagramSockets.withLock { sockets in
            defer { sockets = [] }
            return sockets
        }
        for socket in sockets { socket.close() }
    }
}
