import DNSFenceCore
import DNSFenceResolve
import DNSFenceWire
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// A UDP upstream of our own that counts queries and answers each after a delay.
final class SlowUpstream: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>
    let count = Atomic<Int>(0)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        count.add(1, ordering: .relaxed)
        guard var query = try? DNSMessage(decoding: Array(buffer: envelope.data)) else { return }
        query.isResponse = true
        query.recursionAvailable = true
        query.answers = [DNSRecord(name: query.questions[0].name, ttl: 60, address: .v4(0xC000_0201))]
        let reply = AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: ByteBuffer(bytes: query.encoded()))
        let channel = context.channel
        context.eventLoop.scheduleTask(in: .milliseconds(300)) { channel.writeAndFlush(reply, promise: nil) }
    }
}

@Suite("Upstream forwarder")
struct UpstreamForwarderTests {
    @Test("identical questions in flight are coalesced into one upstream query")
    func coalescing() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let upstream = SlowUpstream()
        let server = try await DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(upstream) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let address = try #require(server.localAddress)
        let forwarder = UpstreamForwarder(
            settings: .init(upstreams: [address]), group: group, logger: Logger(label: "t"))
        let question = DNSQuestion(name: try DNSName("same.test"), type: .a)
        let key = CacheKey(policy: "p", name: question.name, type: .a, dnssecOK: false, checkingDisabled: false)
        let answers = try await withThrowingTaskGroup(of: DNSMessage.self) { tasks in
            for _ in 0..<20 { tasks.addTask { try await forwarder.resolve(question, key: key) } }
            return try await tasks.reduce(into: []) { $0.append($1) }
        }
        #expect(answers.count == 20)
        #expect(answers.allSatisfy { $0.answers.first?.address == IPAddress("192.0.2.1") })
        #expect(upstream.count.load(ordering: .relaxed) == 1)
        #expect(forwarder.statistics.coalesced == 19)
        try await server.close()
    }
}

@Suite("retransmission timeout")
struct RetransmissionTimeoutTests {
    @Test("starts at the configured timeout, doubles on a timeout, follows answers, within bounds")
    func learns() {
        var rto = RetransmissionTimeout(initial: .milliseconds(1500))
        #expect(rto.timeout == 1_500_000_000)
        rto.timedOut()
        #expect(rto.timeout == 3_000_000_000)
        rto.timedOut()
        rto.timedOut()
        #expect(rto.timeout == RetransmissionTimeout.maximum)
        rto.answered(after: 2_000_000_000)
        #expect(rto.smoothed == 2_000_000_000 && rto.timeout == RetransmissionTimeout.maximum)
        for _ in 0..<50 { rto.answered(after: 2_000_000_000) }
        #expect(rto.timeout > 2_000_000_000 && rto.timeout < 2_100_000_000)
        for _ in 0..<50 { rto.answered(after: 100_000) }
        #expect(rto.timeout == RetransmissionTimeout.minimum)
    }
}
