public import DNSFenceCore

/// An upstream reply of the common shape, read where it lies: a positive answer (NOERROR, not
/// truncated, one question, at least one answer) whose answer section holds only A, AAAA and
/// CNAME records of class IN, and whose other sections hold only NS, SOA, A, AAAA and an OPT
/// without extended RCODE bits. The structure is checked by ``WireScanner`` (pointers strictly
/// backward, names at most 255 bytes, RDATA names inside their RDATA) and the records by their
/// RDATA lengths, so such a reply is one ldns also accepts; anything else is decoded by
/// ``DNSMessage/init(decoding:)``.
///
/// The answer section can be copied as it is after any question of the same length at offset
/// 12: its compression pointers reach only backwards, into the question or earlier answers.
public struct PlainReply: Sendable {
    /// One answer record: where its owner name, TTL and RDATA sit.
    public struct Record: Sendable, Equatable {
        public var owner: Int
        public var type: DNSType
        public var ttlOffset: Int
        public var rdata: Int
        public var rdataLength: Int
    }

    public let bytes: [UInt8]
    /// The offset just past the question (the name starts at 12, uncompressed).
    public let questionEnd: Int
    /// The offset just past the answer section.
    public let answerEnd: Int
    public let answers: [Record]

    public var id: UInt16 { UInt16(bytes[0]) << 8 | UInt16(bytes[1]) }

    /// The targets of the answer section's CNAME records, in order, as uncompressed wire names
    /// (nil for one that cannot be read).
    public var cnameTargets: [[UInt8]?] {
        answers.filter { $0.type == .cname }.map { record in
            bytes.withUnsafeBytes { Self.name($0, at: record.rdata) }
        }
    }

    /// The name at `start`, following compression pointers (at most 64), uncompressed.
    static func name(_ b: UnsafeRawBufferPointer, at start: Int) -> [UInt8]? {
        var out: [UInt8] = []
        var pos = start
        var jumps = 0
        while pos < b.count {
            let length = Int(b[pos])
            if length & 0xC0 == 0xC0 {
                guard pos + 1 < b.count, jumps < 64 else { return nil }
                pos = (length & 0x3F) << 8 | Int(b[pos + 1])
                jumps += 1
                continue
            }
            guard length < 64 else { return nil }
            out.append(UInt8(length))
            if length == 0 { return out }
            guard pos + 1 + length <= b.count, out.count + length < 256 else { return nil }
            out.append(contentsOf: b[(pos + 1)..<(pos + 1 + length)])
            pos += 1 + length
        }
        return nil
    }
    public var authenticData: Bool { bytes[3] & 0x20 != 0 }

    public init?(_ bytes: [UInt8]) {
        guard bytes.count >= 12 else { return nil }
        // QR=1, opcode QUERY, TC=0; RCODE NOERROR; QDCOUNT=1, ANCOUNT≥1.
        guard bytes[2] & 0xFA == 0x80, bytes[3] & 0x0F == 0, bytes[4] == 0, bytes[5] == 1,
            bytes[6] != 0 || bytes[7] != 0
        else { return nil }
        let parsed = bytes.withUnsafeBytes { raw -> (Int, Int, [Record])? in
            guard let layout = try? WireScanner.scan(raw) else { return nil }
            let u16 = { (at: Int) in UInt16(raw[at]) << 8 | UInt16(raw[at + 1]) }
            let an = Int(u16(6))
            let others = Int(u16(8)) + Int(u16(10))
            var records: [Record] = []
            records.reserveCapacity(an)
            var pos = layout.questionEnd
            var answerEnd = pos
            for index in 0..<(an + others) {
                let owner = pos
                guard let afterName = try? WireScanner.skipName(raw, at: pos) else { return nil }
                let type = DNSType(rawValue: u16(afterName))
                let rrClass = u16(afterName + 2)
                let rdata = afterName + 10
                let length = Int(u16(afterName + 8))
                let fits: Bool
                switch type {
                case .a: fits = length == 4 && rrClass == DNSClass.in.rawValue
                case .aaaa: fits = length == 16 && rrClass == DNSClass.in.rawValue
                case .cname: fits = index < an && rrClass == DNSClass.in.rawValue
                case .ns, .soa: fits = index >= an && rrClass == DNSClass.in.rawValue
                // No extended RCODE bits (the scanner placed it in the additional section).
                case .opt: fits = raw[afterName + 4] == 0
                default: fits = false
                }
                guard fits else { return nil }
                if index < an {
                    records.append(
                        Record(owner: owner, type: type, ttlOffset: afterName + 4, rdata: rdata, rdataLength: length))
                }
                pos = rdata + length
                if index == an - 1 { answerEnd = pos }
            }
            return (layout.questionEnd, answerEnd, records)
        }
        guard let (questionEnd, answerEnd, answers) = parsed else { return nil }
        self.bytes = bytes
        self.questionEnd = questionEnd
        self.answerEnd = answerEnd
        self.answers = answers
    }

    /// Whether this replies to `question` (name compared without regard to case, type and
    /// class exactly): RFC 5452 section 4's question check, on the bytes.
    public func answers(_ question: DNSQuestion) -> Bool {
        let wire = question.name.wire
        guard questionEnd == 12 + wire.count + 4 else { return false }
        for (index, byte) in wire.enumerated() where DNSName.foldCase(bytes[12 + index]) != DNSName.foldCase(byte) {
            return false
        }
        let at = 12 + wire.count
        return UInt16(bytes[at]) << 8 | UInt16(bytes[at + 1]) == question.type.rawValue
            && UInt16(bytes[at + 2]) << 8 | UInt16(bytes[at + 3]) == question.rrClass.rawValue
    }

    /// The TTL of an answer record.
    public func ttl(of record: Record) -> UInt32 {
        let at = record.ttlOffset
        return UInt32(bytes[at]) << 24 | UInt32(bytes[at + 1]) << 16 | UInt32(bytes[at + 2]) << 8
            | UInt32(bytes[at + 3])
    }

    /// The address of an A or AAAA record.
    public func address(of record: Record) -> IPAddress? {
        guard record.type == .a || record.type == .aaaa else { return nil }
        return IPAddress(bytes: bytes[record.rdata..<(record.rdata + record.rdataLength)])
    }

    /// Whether the (possibly compressed) names at offsets `x` and `y` are the same name, without
    /// regard to ASCII case. The scanner has checked both: every pointer goes strictly backward.
    public func sameName(_ x: Int, _ y: Int) -> Bool {
        bytes.withUnsafeBufferPointer { b in
            var (i, j) = (x, y)
            while true {
                while b[i] & 0xC0 == 0xC0 { i = Int(b[i] & 0x3F) << 8 | Int(b[i + 1]) }
                while b[j] & 0xC0 == 0xC0 { j = Int(b[j] & 0x3F) << 8 | Int(b[j + 1]) }
                if i == j { return true }  // the same bytes from here on
                let length = Int(b[i])
                guard length == Int(b[j]) else { return false }
                if length == 0 { return true }
                for k in 1...length where DNSName.foldCase(b[i + k]) != DNSName.foldCase(b[j + k]) { return false }
                i += 1 + length
                j += 1 + length
            }
        }
    }
}
