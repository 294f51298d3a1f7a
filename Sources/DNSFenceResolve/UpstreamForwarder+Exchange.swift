import DNSFenceWire
import NIOCore
import NIOPosix

extension UpstreamForwarder {
    struct UpstreamTimeout: Error {
        /// The exchange still takes a late reply (it reports it, or a final timeout, later).
        var stillListening = false
    }
    struct BadReply: Error {}

    /// Whether `reply` answers `query` (RFC 5452 section 4: ID and question must match).
    static func matches(_ reply: DNSMessage, _ query: DNSMessage) -> Bool {
        reply.isResponse && reply.id == query.id && query.questions.count == 1
            && UpstreamReply.message(reply).repliesTo(query.questions[0])
    }

    /// One UDP exchange on a fresh connected socket (the kernel picks a random ephemeral port
    /// and drops datagrams from any other address or port).
    func exchangeUDP(_ query: DNSMessage, with upstream: SocketAddress) async throws -> DNSMessage {
        let bind = upstream.protocol == .inet6 ? "::" : "0.0.0.0"
        let channel = try await DatagramBootstrap(group: group)
            .bind(host: bind, port: 0) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>(
                        wrappingChannelSynchronously: channel)
                }
            }
        let timeout = settings.timeout
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(
                AddressedEnvelope(remoteAddress: upstream, data: ByteBuffer(bytes: query.encoded())))
            return try await withThrowingTaskGroup(of: DNSMessage.self) { group in
                group.addTask {
                    for try await envelope in inbound {
                        guard envelope.remoteAddress == upstream else {
                            self.counters.withLock { $0.rejectedReplies += 1 }
                            continue
                        }
                        guard let reply = try? DNSMessage(decoding: Array(buffer: envelope.data)),
                            Self.matches(reply, query)
                        else {
                            self.counters.withLock { $0.rejectedReplies += 1 }
                            continue
                        }
                        return reply
                    }
                    throw BadReply()
                }
                group.addTask {
                    try await Task.sleep(nanoseconds: UInt64(timeout.nanoseconds))
                    throw UpstreamTimeout()
                }
                defer { group.cancelAll() }
                return try await group.next()!
            }
        }
    }

    /// One TCP exchange (RFC 7766 two-byte length framing).
    func exchangeTCP(_ query: DNSMessage, with upstream: SocketAddress) async throws -> DNSMessage {
        let timeout = settings.timeout
        return try await withThrowingTaskGroup(of: DNSMessage.self) { group in
            group.addTask {
                let channel = try await ClientBootstrap(group: self.group)
                    .connectTimeout(timeout)
                    .connect(to: upstream) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                        }
                    }
                return try await channel.executeThenClose { inbound, outbound in
                    let bytes = query.encoded()
                    var out = ByteBuffer()
                    out.writeInteger(UInt16(bytes.count))
                    out.writeBytes(bytes)
                    try await outbound.write(out)
                    var pending = ByteBuffer()
                    for try await chunk in inbound {
                        var chunk = chunk
                        pending.writeBuffer(&chunk)
                        while let length = pending.getInteger(at: pending.readerIndex, as: UInt16.self),
                            pending.readableBytes >= 2 + Int(length)
                        {
                            pending.moveReaderIndex(forwardBy: 2)
                            let frame = pending.readBytes(length: Int(length)) ?? []
                            if let reply = try? DNSMessage(decoding: frame), Self.matches(reply, query) { return reply }
                            self.counters.withLock { $0.rejectedReplies += 1 }
                        }
                    }
                    throw BadReply()
                }
            }
            group.addTask {
                try await Task.sleep(nanoseconds: UInt64(timeout.nanoseconds))
                throw UpstreamTimeout()
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }
}
