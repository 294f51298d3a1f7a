public import DNSFenceWire

/// Why no upstream produced an answer.
public enum ForwardError: Error, Sendable, Hashable {
    /// Every upstream timed out or could not be reached (EDE 23, Network Error).
    case unreachable
    /// Every upstream answered, but with SERVFAIL, REFUSED or garbage (EDE 22, No Reachable Authority).
    case failed(DNSRCode)
}

/// An upstream's answer: a plain positive reply still in its bytes (``PlainReply``: a caller
/// can cache and answer from them without decoding), or a decoded message.
public enum UpstreamReply: Sendable {
    case plain(PlainReply)
    case message(DNSMessage)

    public var rcode: DNSRCode {
        switch self {
        case .plain: return .noError
        case .message(let message): return message.rcode
        }
    }

    public var truncated: Bool {
        switch self {
        case .plain: return false
        case .message(let message): return message.truncated
        }
    }

    public var id: UInt16 {
        switch self {
        case .plain(let plain): return plain.id
        case .message(let message): return message.id
        }
    }

    /// Whether this replies to `question`: its one question is that one, the name compared
    /// without regard to case (RFC 5452 section 4).
    public func repliesTo(_ question: DNSQuestion) -> Bool {
        switch self {
        case .plain(let plain): return plain.answers(question)
        case .message(let message): return message.questions == [question]
        }
    }

    /// The reply as a message (a plain reply is decoded now; its shape is one ldns accepts).
    public func decoded() throws(WireError) -> DNSMessage {
        switch self {
        case .plain(let plain): return try DNSMessage(decoding: plain.bytes)
        case .message(let message): return message
        }
    }
}
