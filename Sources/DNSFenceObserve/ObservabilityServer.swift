// DNSFenceObserve: the HTTP endpoint for metrics and health, the control socket and systemd's
// notifications. Knows nothing about DNS.

public import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The operators' HTTP endpoint: `GET /metrics` (Prometheus text), `GET /healthz` (alive) and
/// `GET /readyz` (200, or 503 with a JSON list of reasons). It runs on its own event loop so a
/// scrape never stalls DNS serving.
public final class ObservabilityServer: Sendable {
    /// The Prometheus exposition text.
    public typealias MetricsSource = @Sendable () -> [UInt8]
    /// Why the server is not ready (empty: ready).
    public typealias ReadinessCheck = @Sendable () async -> [String]
    /// More members for `/readyz`'s JSON object (already encoded, e.g. `"reload":{…}`), or "".
    public typealias Details = @Sendable () -> String

    let group: any EventLoopGroup
    let metrics: MetricsSource
    let readiness: ReadinessCheck
    let details: Details
    private let channel: NIOLockedChannel

    public init(
        group: any EventLoopGroup, metrics: @escaping MetricsSource, readiness: @escaping ReadinessCheck,
        details: @escaping Details = { "" }
    ) {
        self.group = group
        self.metrics = metrics
        self.readiness = readiness
        self.details = details
        self.channel = NIOLockedChannel()
    }

    /// Binds `address`; returns the bound address (port 0 picks one).
    @discardableResult
    public func start(at address: SocketAddress) async throws -> SocketAddress? {
        let metrics = self.metrics
        let readiness = self.readiness
        let details = self.details
        let bound = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPHandler(metrics: metrics, readiness: readiness, details: details))
                }
            }
            .bind(to: address).get()
        channel.set(bound)
        return bound.localAddress
    }

    public func shutdown() async {
        try? await channel.get()?.close()
    }
}

/// Holds the listening channel.
final class NIOLockedChannel: Sendable {
    private let channel = Mutex<(any Channel)?>(nil)

    func set(_ channel: any Channel) { self.channel.withLock { $0 = channel } }
    func get() -> (any Channel)? { channel.withLock { $0 } }
}

final class HTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let metrics: ObservabilityServer.MetricsSource
    let readiness: ObservabilityServer.ReadinessCheck
    let details: ObservabilityServer.Details
    var head: HTTPRequestHead?

    init(
        metrics: @escaping ObservabilityServer.MetricsSource, readiness: @escaping ObservabilityServer.ReadinessCheck,
        details: @escaping ObservabilityServer.Details
    ) {
        self.metrics = metrics
        self.readiness = readiness
        self.details = details
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            route(context: context, head: head)
        }
    }

    func route(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
        guard head.method == .GET || head.method == .HEAD else {
            respond(
                context: context, head: head, status: .methodNotAllowed, type: "text/plain",
                body: Array("GET only\n".utf8))
            return
        }
        switch path {
        case "/metrics":
            respond(
                context: context, head: head, status: .ok, type: "text/plain; version=0.0.4; charset=utf-8",
                body: metrics())
        case "/healthz":
            respond(context: context, head: head, status: .ok, type: "text/plain", body: Array("ok\n".utf8))
        case "/readyz":
            let readiness = self.readiness
            let promise = context.eventLoop.makePromise(of: [String].self)
            promise.completeWithTask { await readiness() }
            let extra = details()
            let more = extra.isEmpty ? "" : "," + extra
            promise.futureResult.assumeIsolated().whenSuccess { reasons in
                if reasons.isEmpty {
                    self.respond(
                        context: context, head: head, status: .ok, type: "application/json",
                        body: Array("{\"status\":\"ready\"\(more)}\n".utf8))
                } else {
                    let list = reasons.map { "\"" + $0.replacingQuotes() + "\"" }.joined(separator: ",")
                    self.respond(
                        context: context, head: head, status: .serviceUnavailable, type: "application/json",
                        body: Array("{\"status\":\"not ready\",\"reasons\":[\(list)]\(more)}\n".utf8))
                }
            }
        default:
            respond(
                context: context, head: head, status: .notFound, type: "text/plain", body: Array("not found\n".utf8))
        }
    }

    func respond(
        context: ChannelHandlerContext, head: HTTPRequestHead, status: HTTPResponseStatus, type: String,
        body: [UInt8]
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: String(body.count))
        if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
            promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
        }
        let keepAlive = head.isKeepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

extension String {
    func replacingQuotes() -> String {
        String(map { $0 == "\"" || $0 == "\\" ? "'" : $0 })
    }
}
