/// Responses as dnsfence shapes them, from a decoded query: the message renderer's building
/// blocks (the byte renderer writes the same bytes from the query's own).
extension DNSMessage {
    /// Our advertised and maximum UDP payload (DNS Flag Day 2020).
    public static let advertisedPayload = 1232

    /// The UDP payload limit for a client: 512 without EDNS (RFC 1035), else its advertised
    /// size clamped to 512…1232 (nil: no EDNS).
    @inlinable
    public static func udpLimit(payloadSize: UInt16?) -> Int {
        guard let payloadSize else { return 512 }
        return min(max(Int(payloadSize), 512), advertisedPayload)
    }

    /// A response skeleton: ID, opcode, RD and CD copied, the question echoed as asked, RA set,
    /// EDNS only for EDNS clients (RFC 6891 7), carrying `error` if given. NOTIMP (an opcode we
    /// do not implement) says nothing about recursion or DNSSEC: no RA, no CD.
    public static func response(to query: DNSMessage, rcode: DNSRCode, error: ExtendedDNSError? = nil) -> DNSMessage {
        let notImplemented = rcode == .notImp
        var message = DNSMessage(
            id: query.id, isResponse: true, opcode: query.opcode, recursionDesired: query.recursionDesired,
            recursionAvailable: !notImplemented, checkingDisabled: query.checkingDisabled && !notImplemented,
            rcode: rcode, questions: query.questions
        )
        if let edns = query.edns {
            message.edns = EDNS(
                udpPayloadSize: UInt16(advertisedPayload), dnssecOK: edns.dnssecOK,
                options: error.map { [$0.option] } ?? [])
        }
        return message
    }

    /// RFC 8482 section 4.2: a synthesized HINFO with CPU "RFC8482" and an empty OS.
    public static func rfc8482(to query: DNSMessage) -> DNSMessage {
        var message = response(to: query, rcode: .noError)
        let cpu = Array("RFC8482".utf8)
        message.answers = [
            DNSRecord(name: query.questions[0].name, type: .hinfo, ttl: 3600, rdata: [UInt8(cpu.count)] + cpu + [0])
        ]
        return message
    }

    /// FORMERR/NOTIMP for a message we could not decode: the header only, ID and opcode copied.
    public static func headerOnlyResponse(to bytes: UnsafeRawBufferPointer, rcode: DNSRCode) -> [UInt8] {
        let flags = UInt16(bytes[2] & 0x79) << 8 | 0x0080 | (rcode.rawValue & 0x0F)  // opcode + RD, RA
        return [bytes[0], bytes[1], UInt8(flags >> 8) | 0x80, UInt8(flags & 0xFF), 0, 0, 0, 0, 0, 0, 0, 0]
    }

    /// Encodes this message; if it exceeds `maxUDP`, the question with TC set instead, so the
    /// client retries over TCP (RFC 7766 section 5).
    public func encoded(fitting maxUDP: Int) -> [UInt8] {
        let bytes = encoded()
        guard bytes.count > maxUDP else { return bytes }
        var truncated = self
        truncated.truncated = true
        truncated.answers = []
        truncated.authorities = []
        truncated.additionals = []
        return truncated.encoded()
    }

    /// Whether a record is DNSSEC data that a client without DO does not get.
    public static func isDNSSEC(_ record: DNSRecord) -> Bool {
        switch record.type {
        case .rrsig, .nsec, .nsec3, .ds, .dnskey: return true
        default: return false
        }
    }

    /// RFC 8945 5.2 and 5.3.2: the unsigned TSIG of an answer to a query signed with a key we do
    /// not have: the query's key name, algorithm, time signed and fudge, no MAC, the original
    /// ID, error BADKEY (17). Nil when `tsig` is not a readable TSIG record.
    public static func badKeyTSIG(answering tsig: DNSRecord, originalID: UInt16) -> DNSRecord? {
        guard tsig.type == .tsig else { return nil }
        let rdata = tsig.rdata
        // Algorithm name (uncompressed in TSIG), then 6 bytes time signed and 2 bytes fudge.
        var end = 0
        while end < rdata.count, rdata[end] != 0 { end += 1 + Int(rdata[end]) }
        guard end < rdata.count, end + 1 + 8 <= rdata.count else { return nil }
        var out = Array(rdata[0...end])
        out += rdata[(end + 1)..<(end + 9)]
        out += [0, 0]  // MAC size 0, no MAC
        out += [UInt8(originalID >> 8), UInt8(originalID & 0xFF)]
        out += [0, 17]  // error BADKEY
        out += [0, 0]  // no other data
        return DNSRecord(name: tsig.name, type: .tsig, rrClass: .any, ttl: 0, rdata: out)
    }

    /// Seconds a stub may cache one of our NXDOMAIN or NODATA denials (RFC 2308): the TTL and
    /// MINIMUM of ``denialSOA``.
    public static let denialNegativeTTL: UInt32 = 60

    /// The SOA in the authority section of every NXDOMAIN and NODATA denial, so stub caches can
    /// cache them (RFC 2308 section 5): owned by the root (an ancestor of every name), with root
    /// MNAME and RNAME (no name to compress, so both renderers write the same bytes), serial 1,
    /// and ``denialNegativeTTL`` as TTL and MINIMUM.
    public static let denialSOA = DNSRecord(
        name: .root, type: .soa, ttl: denialNegativeTTL,
        rdata: [0, 0] + [0, 0, 0, 1] + [0, 0, 0x0E, 0x10] + [0, 0, 0x02, 0x58] + [0, 0x01, 0x51, 0x80]
            + [
                UInt8(denialNegativeTTL >> 24), UInt8(denialNegativeTTL >> 16 & 0xFF),
                UInt8(denialNegativeTTL >> 8 & 0xFF),
                UInt8(denialNegativeTTL & 0xFF),
            ])

    /// Whether a denial with `rcode` carries ``denialSOA`` (NXDOMAIN, and NODATA as NOERROR).
    @inlinable
    public static func denialCarriesSOA(_ rcode: DNSRCode) -> Bool {
        rcode.rawValue == DNSRCode.nxDomain.rawValue || rcode.rawValue == DNSRCode.noError.rawValue
    }

    /// ``denialSOA`` in wire form: root owner, type, class, TTL, RDLENGTH, RDATA.
    public static let denialSOABytes: [UInt8] = {
        let soa = denialSOA
        return [0, 0, 6, 0, 1] + [
            UInt8(soa.ttl >> 24), UInt8(soa.ttl >> 16 & 0xFF), UInt8(soa.ttl >> 8 & 0xFF), UInt8(soa.ttl & 0xFF),
        ]
            + [UInt8(soa.rdata.count >> 8), UInt8(soa.rdata.count & 0xFF)] + soa.rdata
    }()
}
