public import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The operators' control socket (as `unbound-control` talks to Unbound): a Unix stream socket
/// that takes one command line per connection (`reload`, `status`), runs it, writes the reply
/// and closes. Only root (the socket is mode 0600) or whoever owns the process may connect.
public final class ControlServer: Sendable {
    /// Runs one command line (without its newline); the reply's text is written back.
    public typealias Handler = @Sendable (String) async -> String

    let group: any EventLoopGroup
    let handler: Handler
    private let channel = Mutex<(any Channel)?>(nil)

    public init(group: any EventLoopGroup, handler: @escaping Handler) {
        self.group = group
        self.handler = handler
    }

    /// Binds `path` (its directory is created; a stale socket file is replaced) with mode 0600.
    public func start(at path: String) async throws {
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if !directory.isEmpty { mkdir(directory, 0o755) }
        let handler = self.handler
        let bound = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ControlConnectionHandler(handler: handler))
                }
            }
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
        chmod(path, 0o600)
        channel.withLock { $0 = bound }
    }

    /// Closes the socket (the file stays until the next start replaces it).
    public func shutdown() async {
        let bound = channel.withLock { channel in
            defer { channel = nil }
            return channel
        }
        try? await bound?.close()
    }
}

/// Reads one command line, answers it, closes the connection.
final class ControlConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let handler: ControlServer.Handler
    private var line: [UInt8] = []
    private var answered = false

    init(handler: @escaping ControlServer.Handler) { self.handler = handler }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        let buffer = unwrapInboundIn(data)
        line.append(contentsOf: buffer.readableBytesView)
        guard let end = line.firstIndex(of: UInt8(ascii: "\n")) ?? (line.count > 1024 ? line.count : nil) else {
            return
        }
        answered = true
        let command = String(decoding: line[..<end], as: UTF8.self).trimmingCharacters(in: " \r\t")
        let handler = self.handler
        let promise = context.eventLoop.makePromise(of: String.self)
        promise.completeWithTask { await handler(command) }
        promise.futureResult.assumeIsolated().whenSuccess { reply in
            let text = reply.hasSuffix("\n") ? reply : reply + "\n"
            context.writeAndFlush(NIOAny(ByteBuffer(string: text))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

extension String {
    fileprivate func trimmingCharacters(in characters: String) -> String {
        var text = Substring(self)
        while let first = text.first, characters.contains(first) { text = text.dropFirst() }
        while let last = text.last, characters.contains(last) { text = text.dropLast() }
        return String(text)
    }
}
