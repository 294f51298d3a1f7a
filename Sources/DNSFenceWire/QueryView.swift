/// A query parsed once (DESIGN.md, "One decision, rendered twice"): header fields, the
/// question's type, class and name as the client wrote it, and an EDNS summary. A plain query
/// (``PlainQuery``) is read in place with nothing allocated; anything else is decoded by ldns
/// once and the view reads the decoded message. Everything after parsing reads this view.
///
/// `bytes` is borrowed: a view is valid only during the call it was made in.
public struct QueryView {
    /// The query as received.
    public private(set) var bytes: UnsafeRawBufferPointer
    public let id: UInt16
    /// The header's flags word (bytes 2–3).
    public let flags: UInt16
    /// QDCOUNT as decoded (always 1 for a plain query).
    public let questionCount: Int
    /// The first question's type and class (0 without a question).
    public let type: DNSType
    public let rrClass: DNSClass
    /// The OPT record's payload size, or nil without EDNS.
    public let ednsPayload: UInt16?
    public let ednsVersion: UInt8
    /// The DO bit (false without EDNS).
    public let dnssecOK: Bool
    /// The offset just past the question (name, type, class) when the name is stored
    /// uncompressed at offset 12 and QDCOUNT is 1, else 0: such a question can be copied into
    /// an answer as the client wrote it.
    public let questionEnd: Int
    /// The decoded query, for queries that are not plain; nil for plain ones.
    @usableFromInline let decodedMessage: DecodedQuery?

    /// Why a datagram gets no view.
    public enum Rejection: Error, Hashable {
        /// Too short to carry an ID, or a response (answering responses lets two servers
        /// loop on each other): nothing is sent.
        case drop
        /// Undecodable: a header-only answer with this RCODE.
        case malformed(DNSRCode)
    }

    /// Parses `bytes`: the byte scanner for plain queries, ldns for the rest.
    @inlinable
    public init(_ bytes: UnsafeRawBufferPointer) throws(Rejection) {
        guard bytes.count >= 12, bytes[2] & 0x80 == 0 else { throw .drop }
        guard let plain = PlainQuery(bytes) else {
            self = try Self.decoding(bytes)
            return
        }
        self.init(
            bytes: bytes, id: plain.id, flags: plain.flags, questionCount: 1, type: DNSType(rawValue: plain.type),
            rrClass: DNSClass(rawValue: plain.rrClass), ednsPayload: plain.edns?.payloadSize,
            ednsVersion: plain.edns?.version ?? 0, dnssecOK: plain.dnssecOK ?? false, questionEnd: plain.nameEnd + 4,
            decodedMessage: nil)
    }

    @usableFromInline
    init(
        bytes: UnsafeRawBufferPointer, id: UInt16, flags: UInt16, questionCount: Int, type: DNSType,
        rrClass: DNSClass, ednsPayload: UInt16?, ednsVersion: UInt8, dnssecOK: Bool, questionEnd: Int,
        decodedMessage: DecodedQuery?
    ) {
        self.bytes = bytes
        self.id = id
        self.flags = flags
        self.questionCount = questionCount
        self.type = type
        self.rrClass = rrClass
        self.ednsPayload = ednsPayload
        self.ednsVersion = ednsVersion
        self.dnssecOK = dnssecOK
        self.questionEnd = questionEnd
        self.decodedMessage = decodedMessage
    }

    /// A query the byte scanner does not take, decoded by ldns.
    @inline(never) @usableFromInline
    static func decoding(_ bytes: UnsafeRawBufferPointer) throws(Rejection) -> QueryView {
        let message: DNSMessage
        do {
            message = try DNSMessage(decoding: Array(bytes))
        } catch {
            throw .malformed(error.responseCode)
        }
        var questionEnd = 0
        if message.questions.count == 1, let name = message.question?.name,
            bytes.count >= 12 + name.wire.count + 4, name.isStored(in: bytes, at: 12)
        {
            questionEnd = 12 + name.wire.count + 4
        }
        return QueryView(
            bytes: bytes, id: message.id, flags: message.flagsWord, questionCount: message.questions.count,
            type: message.question?.type ?? DNSType(rawValue: 0),
            rrClass: message.question?.rrClass ?? DNSClass(rawValue: 0),
            ednsPayload: message.edns?.udpPayloadSize, ednsVersion: message.edns?.version ?? 0,
            dnssecOK: message.edns?.dnssecOK ?? false, questionEnd: questionEnd, decodedMessage: DecodedQuery(message))
    }

    /// The same view over `bytes`, a copy of the bytes it was made from (a query that goes
    /// upstream keeps a copy and its view, and reads them again when the answer is back).
    public func rebased(on bytes: UnsafeRawBufferPointer) -> QueryView {
        precondition(bytes.count == self.bytes.count, "a view is rebased on a copy of its own bytes")
        var copy = self
        copy.bytes = bytes
        return copy
    }

    /// Whether the query came in the plain shape the byte scanner reads.
    public var isPlain: Bool { decodedMessage == nil }

    /// The opcode (bits 11–14 of the flags).
    public var opcode: DNSOpcode { DNSOpcode(rawValue: UInt8(flags >> 11 & 0x0F)) }

    /// The DO bit for an EDNS client, nil without EDNS.
    public var ednsDO: Bool? { ednsPayload == nil ? nil : dnssecOK }

    /// Checking Disabled.
    public var checkingDisabled: Bool { flags & 0x0010 != 0 }

    /// Whether a response may set AD: the client set AD or DO (RFC 6840 5.8).
    public var asksForAuthenticData: Bool { flags & 0x0020 != 0 || dnssecOK }

    /// The flags word of a response to this query.
    @inline(__always)
    public func responseFlags(rcode: DNSRCode, authenticData: Bool) -> UInt16 {
        DNSMessage.responseFlags(toQueryFlags: flags, rcode: rcode, authenticData: authenticData)
    }

    /// The question as the client wrote it (name, type, class), when stored at offset 12.
    public var questionBytes: UnsafeRawBufferPointer? {
        questionEnd == 0 ? nil : UnsafeRawBufferPointer(rebasing: bytes[12..<questionEnd])
    }

    /// Runs `body` on the question's name as wire bytes (letter case as asked, uncompressed,
    /// validated). Only for a view with exactly one question.
    @inlinable
    public func withName<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        if questionEnd != 0 { return body(UnsafeRawBufferPointer(rebasing: bytes[12..<(questionEnd - 4)])) }
        return decodedMessage!.message.questions[0].name.wire.withUnsafeBytes(body)
    }

    /// The question's name in wire form, lower-cased (cache keys, firewall reasons).
    public var lowercasedName: [UInt8] {
        withName { name in
            var lower = Array(name)
            DNSName.foldCase(&lower)
            return lower
        }
    }

    /// The question as a value (the query log, the upstream), with the name as asked.
    public var question: DNSQuestion {
        if let decodedMessage { return decodedMessage.message.questions[0] }
        return withName { DNSQuestion(name: DNSName(uncheckedWire: Array($0)), type: type, rrClass: rrClass) }
    }

    /// The query as a message (the message renderer): the one ldns decoded, or the plain
    /// query's fields read again without ldns.
    public var message: DNSMessage {
        decodedMessage?.message ?? DNSMessage(fastQuery: bytes)!
    }
}

/// A decoded query behind one reference, so a view stays small to copy.
@usableFromInline
final class DecodedQuery {
    @usableFromInline let message: DNSMessage
    init(_ message: DNSMessage) { self.message = message }
}
