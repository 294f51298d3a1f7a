import DNSFenceWire
import NIOCore

/// Splits a TCP byte stream into DNS messages (RFC 1035 4.2.2: two-byte length prefix). A
/// message must be complete within `messageTimeout` of its first byte: a client trickling bytes
/// (slowloris) keeps the idle timer from firing, and is closed by this instead.
struct DNSFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    struct SlowMessage: Error {}

    let messageTimeout: TimeAmount
    /// When the first byte of the message not yet complete arrived.
    var partialSince: NIODeadline? = nil

    init(messageTimeout: TimeAmount = .seconds(10)) {
        self.messageTimeout = messageTimeout
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self),
            buffer.readableBytes >= 2 + Int(length)
        else {
            if buffer.readableBytes > 0 {
                let now = NIODeadline.now()
                if let since = partialSince {
                    if now - since > messageTimeout { throw SlowMessage() }
                } else {
                    partialSince = now
                }
            }
            return .needMoreData
        }
        partialSince = nil
        buffer.moveReaderIndex(forwardBy: 2)
        context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: Int(length))!))
        return .continue
    }
}

/// Answers each framed query on a TCP connection. Several queries may be in flight at once and
/// answers go out as they are ready, in any order (RFC 7766 6.2.1.1). A client that pipelines
/// more than ``maxOutstanding`` queries is slowed, not cut off: reading stops, the frames
/// already read wait, and reading resumes as answers go out. Idle connections are closed by an
/// `IdleStateHandler` in front of this handler.
final class TCPQueryHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let pipeline: QueryPipeline
    let listenerPolicy: String?
    let registry: TCPConnectionRegistry
    /// Queries answered asynchronously and not yet written; bounded per connection.
    var outstanding = 0
    static let maxOutstanding = 64
    /// Frames read while `maxOutstanding` were in flight (at most one read's worth: reading
    /// stops until they are taken up).
    var waiting: [ByteBuffer] = []
    var paused = false

    init(pipeline: QueryPipeline, listenerPolicy: String?, registry: TCPConnectionRegistry) {
        self.pipeline = pipeline
        self.listenerPolicy = listenerPolicy
        self.registry = registry
    }

    func channelActive(context: ChannelHandlerContext) {
        guard let client = context.remoteAddress?.dnsfenceIP, registry.admit(context.channel, client: client) else {
            context.close(promise: nil)
            return
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        registry.remove(context.channel)
        context.fireChannelInactive()
    }

    static func frame(_ bytes: [UInt8]) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(bytes.count + 2)
        out.writeInteger(UInt16(bytes.count))
        out.writeBytes(bytes)
        return out
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard outstanding < Self.maxOutstanding else {
            waiting.append(frame)
            if !paused {
                paused = true
                context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
            }
            return
        }
        answer(frame, context: context)
    }

    /// Takes up waiting frames while there is room, and reads again once none wait.
    private func resume(context: ChannelHandlerContext) {
        while outstanding < Self.maxOutstanding, !waiting.isEmpty {
            answer(waiting.removeFirst(), context: context)
        }
        if paused, waiting.isEmpty {
            paused = false
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
        }
    }

    private func answer(_ frame: ByteBuffer, context: ChannelHandlerContext) {
        let bytes = Array(buffer: frame)
        guard let client = context.remoteAddress?.dnsfenceIP else {
            context.close(promise: nil)
            return
        }
        var response: [UInt8]? = nil
        let pending = bytes.withUnsafeBytes {
            pipeline.handle(
                $0, context: QueryContext(client: client, listenerPolicy: listenerPolicy, transport: .tcp),
                emit: { response = QueryPipeline.array($0, $1) })
        }
        if let pending {
            outstanding += 1
            registry.activity(context.channel, busyDelta: 1)
            let registry = self.registry
            let pipeline = self.pipeline
            let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
            pipeline.complete(pending, on: context.eventLoop) { response in
                let (handler, context) = bound.value
                handler.outstanding -= 1
                registry.activity(context.channel, busyDelta: -1)
                if let response {
                    context.writeAndFlush(handler.wrapOutboundOut(Self.frame(response)), promise: nil)
                }
                handler.resume(context: context)
            }
            return
        }
        registry.activity(context.channel, busyDelta: 0)
        if let response { context.writeAndFlush(wrapOutboundOut(Self.frame(response)), promise: nil) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent, outstanding == 0, waiting.isEmpty {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
