/// Where the parts of a plain query sit in its bytes: one question with an uncompressed name,
/// no records but at most one OPT, options well formed. Read in place, nothing allocated; the
/// one definition of "plain" for ``DNSMessage/init(fastQuery:)`` and the server's byte-level
/// path.
public struct PlainQuery {
    public let id: UInt16
    /// The header's flags word (bytes 2–3).
    public let flags: UInt16
    /// The offset just past the name's root label (the name is `12..<nameEnd`).
    public let nameEnd: Int
    public let type: UInt16
    public let rrClass: UInt16
    /// The offset of the OPT record, if the query has one.
    public let opt: Int?
    /// The OPT record's fields: CLASS (payload size) and TTL (extended RCODE, version, flags).
    public let edns: (payloadSize: UInt16, extendedRCode: UInt8, version: UInt8, flags: UInt16)?

    /// The DO bit, or nil without EDNS.
    public var dnssecOK: Bool? { edns.map { $0.flags & 0x8000 != 0 } }

    /// Whether a response may set AD: the client set AD or DO (RFC 6840 5.8).
    public var asksForAuthenticData: Bool { flags & 0x0020 != 0 || dnssecOK == true }

    /// The flags word of a response to this query (as ``DNSMessage``'s).
    public func responseFlags(rcode: DNSRCode, authenticData: Bool) -> UInt16 {
        DNSMessage.responseFlags(toQueryFlags: flags, rcode: rcode, authenticData: authenticData)
    }

    public init?(_ bytes: UnsafeRawBufferPointer) {
        let n = bytes.count
        guard n >= 17, n <= 512 + 4096 else { return nil }
        // QR=0, opcode QUERY; QDCOUNT=1, ANCOUNT=0, NSCOUNT=0, ARCOUNT 0 or 1.
        guard bytes[2] & 0xF8 == 0, bytes[4] == 0, bytes[5] == 1, bytes[6] == 0, bytes[7] == 0, bytes[8] == 0,
            bytes[9] == 0, bytes[10] == 0, bytes[11] <= 1
        else { return nil }
        id = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
        flags = UInt16(bytes[2]) << 8 | UInt16(bytes[3])
        var pos = 12
        while true {
            guard pos < n else { return nil }
            let length = Int(bytes[pos])
            if length == 0 { break }
            guard length <= DNSName.maxLabelLength else { return nil }  // pointers, reserved types
            pos += 1 + length
        }
        nameEnd = pos + 1
        guard nameEnd - 12 <= DNSName.maxWireLength, nameEnd + 4 <= n else { return nil }
        type = UInt16(bytes[nameEnd]) << 8 | UInt16(bytes[nameEnd + 1])
        rrClass = UInt16(bytes[nameEnd + 2]) << 8 | UInt16(bytes[nameEnd + 3])
        pos = nameEnd + 4
        if bytes[11] == 1 {
            // OPT: root owner, type 41, CLASS = payload size, TTL = ext-rcode/version/flags; its
            // options end exactly where the message ends.
            guard pos + 11 <= n, bytes[pos] == 0, bytes[pos + 1] == 0, bytes[pos + 2] == 41 else { return nil }
            opt = pos
            edns = (
                UInt16(bytes[pos + 3]) << 8 | UInt16(bytes[pos + 4]), bytes[pos + 5], bytes[pos + 6],
                UInt16(bytes[pos + 7]) << 8 | UInt16(bytes[pos + 8])
            )
            let end = pos + 11 + (Int(bytes[pos + 9]) << 8 | Int(bytes[pos + 10]))
            guard end == n else { return nil }
            var option = pos + 11
            while option < end {
                guard option + 4 <= end else { return nil }
                option += 4 + (Int(bytes[option + 2]) << 8 | Int(bytes[option + 3]))
            }
            guard option == end else { return nil }
        } else {
            opt = nil
            edns = nil
            guard pos == n else { return nil }
        }
    }
}

/// The byte-level fast path for the common query (``PlainQuery``). It builds the same
/// ``DNSMessage`` the ldns decoder would (the golden-packet tests check that), without ldns or
/// the structural scan: ldns parsing costs ~0.5 µs of a budget of ~1 µs per query (DESIGN.md,
/// "Performance notes"). Anything unusual returns nil and takes the full decoder.
extension DNSMessage {
    /// Decodes a plain query, or returns nil when the full decoder must look at it.
    public init?(fastQuery bytes: UnsafeRawBufferPointer) {
        guard let plain = PlainQuery(bytes) else { return nil }
        let name = DNSName(uncheckedWire: Array(bytes[12..<plain.nameEnd]))
        var edns: EDNS? = nil
        if let pos = plain.opt, let opt = plain.edns {
            var options: [EDNSOption] = []
            var option = pos + 11
            while option < bytes.count {
                let code = UInt16(bytes[option]) << 8 | UInt16(bytes[option + 1])
                let length = Int(bytes[option + 2]) << 8 | Int(bytes[option + 3])
                options.append(EDNSOption(code: code, data: Array(bytes[(option + 4)..<(option + 4 + length)])))
                option += 4 + length
            }
            edns = EDNS(
                udpPayloadSize: opt.payloadSize, extendedRCode: opt.extendedRCode, version: opt.version,
                dnssecOK: opt.flags & 0x8000 != 0, z: opt.flags & 0x7FFF, options: options)
        }
        self.init(id: plain.id)
        setFlags(plain.flags)
        if let edns { rcode = DNSRCode(rawValue: UInt16(edns.extendedRCode) << 4 | (rcode.rawValue & 0x0F)) }
        questions = [
            DNSQuestion(name: name, type: DNSType(rawValue: plain.type), rrClass: DNSClass(rawValue: plain.rrClass))
        ]
        self.edns = edns
    }

    /// Decodes `bytes`, through the fast path when it applies.
    public init(decodingQuery bytes: [UInt8]) throws(WireError) {
        if let fast = bytes.withUnsafeBytes({ DNSMessage(fastQuery: $0) }) {
            self = fast
        } else {
            try self.init(decoding: bytes)
        }
    }
}
