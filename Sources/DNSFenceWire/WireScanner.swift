/// Byte-level structural check of a DNS message, run before ldns sees the bytes.
///
/// ldns decodes RDATA well but is lenient about structure (it follows forward compression
/// pointers, for instance). The scanner enforces the structure this server relies on:
/// size 12…65535, counts that fit the data, names with strictly backward pointers and at most
/// 255 bytes, records inside the message, at most one OPT (in the additional section, owned
/// by the root, with well-formed options), and no trailing bytes.
public enum WireScanner {
    /// What the scan learned, for callers that want offsets without decoding.
    public struct Layout: Sendable, Equatable {
        /// Offset just past the first question (or 12 when there is none).
        public var questionEnd: Int
        /// Offset of the OPT record's owner name, if any.
        public var optOffset: Int?
    }

    /// Header field: counts.
    @inline(__always)
    static func u16(_ b: UnsafeRawBufferPointer, _ i: Int) -> Int {
        Int(b[i]) << 8 | Int(b[i + 1])
    }

    /// Checks `bytes`; throws the first problem found.
    public static func scan(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> Layout {
        let n = bytes.count
        guard n >= 12 else { throw .tooShort(length: n) }
        guard n <= 65535 else { throw .tooLong(length: n) }
        let qd = u16(bytes, 4), an = u16(bytes, 6), ns = u16(bytes, 8), ar = u16(bytes, 10)
        // A question needs at least 5 bytes (root name + type + class), a record 11.
        let minimum = qd * 5 + (an + ns + ar) * 11
        guard minimum <= n - 12 else { throw .countsExceedData(declaredMinimum: minimum, available: n - 12) }

        var pos = 12
        var layout = Layout(questionEnd: 12, optOffset: nil)
        for q in 0..<qd {
            pos = try skipName(bytes, at: pos)
            guard pos + 4 <= n else { throw .truncated(at: pos, needed: pos + 4 - n) }
            pos += 4
            if q == 0 { layout.questionEnd = pos }
        }
        for section in 0..<3 {
            let count = section == 0 ? an : section == 1 ? ns : ar
            for _ in 0..<count {
                let start = pos
                pos = try skipName(bytes, at: pos)
                guard pos + 10 <= n else { throw .truncated(at: pos, needed: pos + 10 - n) }
                let type = u16(bytes, pos)
                let rdlength = u16(bytes, pos + 8)
                let rdataStart = pos + 10
                guard rdataStart + rdlength <= n else {
                    throw .truncated(at: rdataStart, needed: rdataStart + rdlength - n)
                }
                if type == DNSType.opt.rawValue {
                    guard section == 2, bytes[start] == 0 else { throw .misplacedOPT(at: start) }
                    guard layout.optOffset == nil else { throw .multipleOPT(at: start) }
                    layout.optOffset = start
                    try checkOptions(bytes, from: rdataStart, to: rdataStart + rdlength)
                } else {
                    try checkRDataNames(bytes, type: type, from: rdataStart, length: rdlength)
                }
                pos = rdataStart + rdlength
            }
        }
        guard pos == n else { throw .trailingData(at: pos, count: n - pos) }
        return layout
    }

    /// Convenience over an array.
    public static func scan(_ bytes: [UInt8]) throws(WireError) -> Layout {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(WireError) -> Layout in try scan(raw) }
        }
        return try result.get()
    }

    /// Walks a possibly compressed name starting at `start`; returns the offset just past it
    /// in the message (after the first pointer, or after the root label).
    public static func skipName(_ b: UnsafeRawBufferPointer, at start: Int) throws(WireError) -> Int {
        var pos = start
        var end: Int? = nil
        var limit = start  // every pointer must go strictly below this
        var length = 0
        while true {
            guard pos < b.count else { throw .truncated(at: pos, needed: 1) }
            let len = b[pos]
            switch len & 0xC0 {
            case 0x00:
                length += Int(len) + 1
                guard length <= DNSName.maxWireLength else { throw .nameTooLong(at: start) }
                if len == 0 { return end ?? pos + 1 }
                guard pos + 1 + Int(len) <= b.count else {
                    throw .truncated(at: pos, needed: pos + 1 + Int(len) - b.count)
                }
                pos += 1 + Int(len)
            case 0xC0:
                guard pos + 1 < b.count else { throw .truncated(at: pos, needed: 1) }
                let target = Int(len & 0x3F) << 8 | Int(b[pos + 1])
                guard target < limit, target >= 12 else { throw .badCompressionPointer(at: pos, target: target) }
                if end == nil { end = pos + 2 }
                limit = target
                pos = target
            case 0x40:
                throw .labelTooLong(at: pos, length: Int(len))
            default:
                throw .reservedLabelType(at: pos, byte: len)
            }
        }
    }

    /// EDNS options: code(2) length(2) data, exactly filling the RDATA (RFC 6891 6.1.2).
    static func checkOptions(_ b: UnsafeRawBufferPointer, from: Int, to: Int) throws(WireError) {
        var pos = from
        while pos < to {
            guard pos + 4 <= to else { throw .badEDNSOption(at: pos) }
            let length = u16(b, pos + 2)
            guard pos + 4 + length <= to else { throw .badEDNSOption(at: pos) }
            pos += 4 + length
        }
    }

    /// Checks the names inside RDATA for the types whose RDATA holds names at known places,
    /// so a hostile pointer in a CNAME target is caught like one in an owner name.
    static func checkRDataNames(_ b: UnsafeRawBufferPointer, type: Int, from: Int, length: Int) throws(WireError) {
        let end = from + length
        func name(at pos: Int) throws(WireError) -> Int {
            let after = try skipName(b, at: pos)
            guard after <= end else { throw .truncated(at: pos, needed: after - end) }
            return after
        }
        switch DNSType(rawValue: UInt16(type)) {
        case .cname, .ns, .ptr, .dname:
            guard try name(at: from) == end else {
                throw .badRData(type: DNSType(rawValue: UInt16(type)), at: from, reason: "RDATA longer than its name")
            }
        case .mx:
            guard length >= 3 else { throw .badRData(type: .mx, at: from, reason: "RDATA too short") }
            guard try name(at: from + 2) == end else {
                throw .badRData(type: .mx, at: from, reason: "RDATA longer than its name")
            }
        case .soa:
            let afterMName = try name(at: from)
            let afterRName = try name(at: afterMName)
            guard afterRName + 20 == end else {
                throw .badRData(type: .soa, at: from, reason: "SOA RDATA must end with five 32-bit fields")
            }
        default:
            break
        }
    }
}
