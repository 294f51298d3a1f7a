/// A cached answer already in wire form: the sections that follow the question, encoded once
/// when the answer is stored, so a cache hit is a copy and a few patches instead of building and
/// encoding a message (DESIGN.md, "Performance notes": wire-level cache hits).
///
/// The sections were encoded after a question of `questionLength` bytes at offset 12, so their
/// compression pointers (into the question name, or between records) stay valid after any copy
/// of that question — whatever its letter case, which a client's 0x20 bits may vary.
public struct ResponseTemplate: Sendable, Hashable {
    /// Question name wire length + 4 (type and class).
    public var questionLength: Int { Int(questionBytes) }
    private let questionBytes: UInt16
    public let rcode: DNSRCode
    public let authenticData: Bool
    public let answerCount: UInt16
    public let authorityCount: UInt16
    public let additionalCount: UInt16

    /// Answer, authority and additional records (no OPT), then the offset of each record's
    /// TTL in them (two bytes each): one allocation per cached answer.
    let storage: [UInt8]
    var sectionsLength: Int { Int(sectionsBytes) }
    private let sectionsBytes: UInt16

    public var recordCount: Int { Int(answerCount) + Int(authorityCount) + Int(additionalCount) }

    /// Bytes of the response made from this template, with or without an OPT record.
    public func size(edns: Bool) -> Int {
        12 + questionLength + sectionsLength + (edns ? 11 : 0)
    }

    /// The template for `message`'s records after its single question; nil for messages it
    /// cannot stand for (not one question, an OPT, an extended RCODE, over 65,535 bytes).
    public init?(_ message: DNSMessage) {
        guard message.questions.count == 1, message.edns == nil, message.rcode.rawValue <= 0x0F else { return nil }
        var encoder = DNSMessageEncoder()
        encoder.write(message)
        let start = 12 + message.questions[0].name.wire.count + 4
        guard encoder.bytes.count <= 65535, encoder.bytes.count >= start else { return nil }
        questionBytes = UInt16(start - 12)
        rcode = message.rcode
        authenticData = message.authenticData
        answerCount = UInt16(message.answers.count)
        authorityCount = UInt16(message.authorities.count)
        additionalCount = UInt16(message.additionals.count)
        var storage = Array(encoder.bytes[start...])
        sectionsBytes = UInt16(storage.count)
        for offset in encoder.ttlOffsets {
            storage.append(UInt8((offset - start) >> 8))
            storage.append(UInt8((offset - start) & 0xFF))
        }
        self.storage = storage
    }

    /// The template for an answer section kept as it lies in a reply: `sections` holds the
    /// answer records (compression pointers valid after a question of `questionLength` bytes
    /// at offset 12, as in a ``PlainReply``), `ttlOffsets` where each record's TTL sits in them.
    public init?(
        questionLength: Int, rcode: DNSRCode, authenticData: Bool, answerCount: Int, sections: [UInt8],
        ttlOffsets: [Int]
    ) {
        guard rcode.rawValue <= 0x0F, answerCount <= 0xFFFF, 12 + questionLength + sections.count <= 65535,
            ttlOffsets.allSatisfy({ $0 >= 0 && $0 + 4 <= sections.count })
        else { return nil }
        questionBytes = UInt16(questionLength)
        self.rcode = rcode
        self.authenticData = authenticData
        self.answerCount = UInt16(answerCount)
        authorityCount = 0
        additionalCount = 0
        var storage = sections
        sectionsBytes = UInt16(sections.count)
        storage.reserveCapacity(sections.count + 2 * ttlOffsets.count)
        for offset in ttlOffsets {
            storage.append(UInt8(offset >> 8))
            storage.append(UInt8(offset & 0xFF))
        }
        self.storage = storage
    }

    /// The response to `query` (whose bytes are `bytes`): ID, RD and CD from the query, RA set,
    /// AD only for clients that asked for it (RFC 6840 5.8), the question copied as asked, TTLs
    /// reduced by `elapsed`, and an OPT record (payload `ednsPayload`, DO echoed) for EDNS
    /// clients. Nil when the query's question is not stored uncompressed at offset 12 with this
    /// length, or the response would exceed `maxSize` (the caller truncates the slow way).
    public func response(to query: DNSMessage, bytes: [UInt8], elapsed: UInt32, maxSize: Int, ednsPayload: UInt16)
        -> [UInt8]?
    {
        bytes.withUnsafeBytes {
            response(to: query, bytes: $0, elapsed: elapsed, maxSize: maxSize, ednsPayload: ednsPayload)
        }
    }

    /// The same for the query's bytes in place.
    public func response(
        to query: DNSMessage, bytes: UnsafeRawBufferPointer, elapsed: UInt32, maxSize: Int, ednsPayload: UInt16
    ) -> [UInt8]? {
        guard let question = query.questions.first, query.questions.count == 1,
            question.name.wire.count + 4 == questionLength, bytes.count >= 12 + questionLength,
            question.name.isStored(in: bytes, at: 12)
        else { return nil }
        let flags = query.responseFlags(rcode: rcode, authenticData: authenticData && query.asksForAuthenticData)
        return response(
            id: query.id, flags: flags, question: UnsafeRawBufferPointer(rebasing: bytes[12..<(12 + questionLength)]),
            dnssecOK: query.edns?.dnssecOK, elapsed: elapsed, maxSize: maxSize, ednsPayload: ednsPayload)
    }

    /// The same from raw parts: the response's ID and flags (AD already decided), the question
    /// as the client sent it (name, type, class: `questionLength` bytes) and, for an EDNS
    /// client, its DO bit. Nil when the response would exceed `maxSize`.
    public func response(
        id: UInt16, flags: UInt16, question: UnsafeRawBufferPointer, dnssecOK: Bool?, elapsed: UInt32, maxSize: Int,
        ednsPayload: UInt16
    ) -> [UInt8]? {
        let total = size(edns: dnssecOK != nil)
        guard question.count == questionLength, total <= maxSize else { return nil }
        return [UInt8](unsafeUninitializedCapacity: total) { out, count in
            write(
                into: out, id: id, flags: flags, question: question, dnssecOK: dnssecOK, elapsed: elapsed,
                ednsPayload: ednsPayload)
            count = total
        }
    }

    /// Writes that response into `out`, which holds exactly ``size(edns:)`` bytes (with `edns`
    /// true when `dnssecOK` is not nil); `question` holds ``questionLength`` bytes.
    public func write(
        into out: UnsafeMutableBufferPointer<UInt8>, id: UInt16, flags: UInt16, question: UnsafeRawBufferPointer,
        dnssecOK: Bool?, elapsed: UInt32, ednsPayload: UInt16
    ) {
        let additional = additionalCount + (dnssecOK == nil ? 0 : 1)
        let base = 12 + questionLength
        out.storeHeader(id: id, flags: flags, counts: (1, answerCount, authorityCount, additional))
        UnsafeMutableRawBufferPointer(start: out.baseAddress! + 12, count: questionLength).copyMemory(from: question)
        out.storeBytes(of: storage, from: 0, count: sectionsLength, at: base)
        if elapsed > 0 {
            for index in stride(from: sectionsLength, to: storage.count, by: 2) {
                let at = base + (Int(storage[index]) << 8 | Int(storage[index + 1]))
                let ttl = out.loadBigEndian32(at: at)
                out.storeBigEndian(ttl > elapsed ? ttl - elapsed : 0, at: at)
            }
        }
        if let dnssecOK {
            _ = out.storeOPT(at: base + sectionsLength, payloadSize: ednsPayload, dnssecOK: dnssecOK, rdataLength: 0)
        }
    }
}
