import DNSFenceWire
import Logging
import NIOCore

/// Reads datagrams, runs the synchronous pipeline stage inline on the event loop, and writes
/// the answer; queries that must go upstream continue in a task and write when done.
final class UDPQueryHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    let pipeline: QueryPipeline
    let listenerPolicy: String?
    private var pendingFlush = false
    private var laterFlushScheduled = false

    init(pipeline: QueryPipeline, listenerPolicy: String?) {
        self.pipeline = pipeline
        self.listenerPolicy = listenerPolicy
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard let client = envelope.remoteAddress.dnsfenceIP else { return }
        let bytes = Array(buffer: envelope.data)
        let queryContext = QueryContext(client: client, listenerPolicy: listenerPolicy, transport: .udp)
        let outcome = pipeline.process(bytes, context: queryContext)
        switch outcome {
        case .drop:
            return
        case .respond(let response):
            // Written now, flushed once per read burst (channelReadComplete): NIO then sends the
            // whole burst with one sendmmsg instead of one sendmsg per answer.
            context.write(
                wrapOutboundOut(
                    AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: ByteBuffer(bytes: response))),
                promise: nil)
            pendingFlush = true
        case .forward, .publish:
            // Everything after this runs on this event loop (future callbacks, no task); answers
            // completed in one loop tick (one burst of upstream replies) leave in one flush.
            let remote = envelope.remoteAddress
            let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
            pipeline.complete(outcome, on: context.eventLoop) { response in
                guard let response else { return }
                let (handler, context) = bound.value
                context.write(
                    handler.wrapOutboundOut(
                        AddressedEnvelope(remoteAddress: remote, data: ByteBuffer(bytes: response))),
                    promise: nil)
                guard !handler.laterFlushScheduled else { return }
                handler.laterFlushScheduled = true
                context.eventLoop.assumeIsolated().execute {
                    handler.laterFlushScheduled = false
                    context.flush()
                }
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if pendingFlush {
            pendingFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP errors for earlier answers surface here; a UDP listener keeps listening.
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
