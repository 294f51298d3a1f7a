/// Writes ``DNSMessage`` values to wire format with name compression (RFC 1035 4.1.4).
///
/// This is the byte-level fast path DESIGN.md allows: ldns' encoder costs ~1.7 µs per packet
/// here, too much to run on every answer. Owner names are compressed, and so are the names in
/// the RDATA of the well-known types RFC 3597 section 4 permits (CNAME, NS, PTR, MX, SOA).
/// The encoder never truncates: fitting an answer into a UDP size is the caller's job.
public struct DNSMessageEncoder {
    private(set) var bytes: [UInt8] = []
    /// Where each record's TTL was written (for ``ResponseTemplate``).
    private(set) var ttlOffsets: [Int] = []
    /// Names already written, lower-cased, with the offset where each was written.
    private var written: [(name: [UInt8], offset: Int)] = []

    public init() {}

    /// Encodes `message`.
    public static func encode(_ message: DNSMessage) -> [UInt8] {
        var encoder = DNSMessageEncoder()
        encoder.write(message)
        return encoder.bytes
    }

    mutating func write(_ m: DNSMessage) {
        bytes.reserveCapacity(512)
        var edns = m.edns
        if m.rcode.rawValue > 0x0F && edns == nil { edns = EDNS() }
        appendU16(m.id)
        appendU16(m.flagsWord)
        appendU16(UInt16(m.questions.count))
        appendU16(UInt16(m.answers.count))
        appendU16(UInt16(m.authorities.count))
        appendU16(UInt16(m.additionals.count + (edns == nil ? 0 : 1)))
        // A lone question has nothing to be compressed against or to compress later: it is
        // written as it is, with no suffix table (queries upstream, question-only answers).
        let lone = m.questions.count == 1 && m.answers.isEmpty && m.authorities.isEmpty && m.additionals.isEmpty
        for q in m.questions {
            if lone {
                bytes.append(contentsOf: q.name.wire)
            } else {
                writeName(q.name.wire, compress: true)
            }
            appendU16(q.type.rawValue)
            appendU16(q.rrClass.rawValue)
        }
        for r in m.answers { write(r) }
        for r in m.authorities { write(r) }
        for r in m.additionals { write(r) }
        if var edns {
            edns.extendedRCode = UInt8(m.rcode.rawValue >> 4)
            write(edns)
        }
    }

    mutating func write(_ r: DNSRecord) {
        writeName(r.name.wire, compress: true)
        appendU16(r.type.rawValue)
        appendU16(r.rrClass.rawValue)
        ttlOffsets.append(bytes.count)
        appendU32(r.ttl)
        let lengthAt = bytes.count
        appendU16(0)
        let start = bytes.count
        switch r.type {
        case .cname, .ns, .ptr:
            if let end = Self.nameEnd(r.rdata, 0), end == r.rdata.count {
                writeName(r.rdata, compress: true)
            } else {
                bytes.append(contentsOf: r.rdata)
            }
        case .mx where r.rdata.count > 2:
            if let end = Self.nameEnd(r.rdata, 2), end == r.rdata.count {
                bytes.append(contentsOf: r.rdata[0..<2])
                writeName(Array(r.rdata[2...]), compress: true)
            } else {
                bytes.append(contentsOf: r.rdata)
            }
        case .soa:
            if let m = Self.nameEnd(r.rdata, 0), let n = Self.nameEnd(r.rdata, m), n + 20 == r.rdata.count {
                writeName(Array(r.rdata[0..<m]), compress: true)
                writeName(Array(r.rdata[m..<n]), compress: true)
                bytes.append(contentsOf: r.rdata[n...])
            } else {
                bytes.append(contentsOf: r.rdata)
            }
        default:
            bytes.append(contentsOf: r.rdata)
        }
        let length = bytes.count - start
        bytes[lengthAt] = UInt8(length >> 8)
        bytes[lengthAt + 1] = UInt8(length & 0xFF)
    }

    mutating func write(_ e: EDNS) {
        bytes.append(0)
        appendU16(DNSType.opt.rawValue)
        appendU16(e.udpPayloadSize)
        bytes.append(e.extendedRCode)
        bytes.append(e.version)
        appendU16((e.dnssecOK ? 0x8000 : 0) | (e.z & 0x7FFF))
        let length = e.options.reduce(0) { $0 + 4 + $1.data.count }
        appendU16(UInt16(length))
        for option in e.options {
            appendU16(option.code)
            appendU16(UInt16(option.data.count))
            bytes.append(contentsOf: option.data)
        }
    }

    /// End offset of the uncompressed name starting at `start` in `data`, or nil.
    static func nameEnd(_ data: [UInt8], _ start: Int) -> Int? {
        var i = start
        while i < data.count {
            let len = Int(data[i])
            if len == 0 { return i + 1 }
            guard len <= 63 else { return nil }
            i += 1 + len
        }
        return nil
    }

    /// Writes a name, replacing its longest already-written suffix with a pointer.
    mutating func writeName(_ wire: [UInt8], compress: Bool) {
        var lower = wire
        DNSName.foldCase(&lower)
        var i = 0
        while lower[i] != 0 {
            if compress, let target = find(lower[i...]) {
                bytes.append(contentsOf: wire[0..<i])
                appendU16(0xC000 | UInt16(target))
                remember(lower, start: 0, at: bytes.count - i - 2, upTo: i)
                return
            }
            i += 1 + Int(lower[i])
        }
        let at = bytes.count
        bytes.append(contentsOf: wire)
        remember(lower, start: 0, at: at, upTo: wire.count - 1)
    }

    /// Records each suffix of `lower` that starts before `upTo`, if its offset fits a pointer.
    private mutating func remember(_ lower: [UInt8], start: Int, at offset: Int, upTo end: Int) {
        var i = start
        while i < end, lower[i] != 0 {
            let position = offset + i
            guard position < 0x3FFF else { return }
            written.append((Array(lower[i...]), position))
            i += 1 + Int(lower[i])
        }
    }

    private func find(_ suffix: ArraySlice<UInt8>) -> Int? {
        for entry in written where entry.name.count == suffix.count && entry.name[...].elementsEqual(suffix) {
            return entry.offset
        }
        return nil
    }

    private mutating func appendU16(_ v: UInt16) {
        bytes.append(UInt8(v >> 8))
        bytes.append(UInt8(v & 0xFF))
    }

    private mutating func appendU32(_ v: UInt32) {
        appendU16(UInt16(v >> 16))
        appendU16(UInt16(v & 0xFFFF))
    }
}

extension DNSMessage {
    /// Wire form (see ``DNSMessageEncoder``).
    public func encoded() -> [UInt8] { DNSMessageEncoder.encode(self) }
}
