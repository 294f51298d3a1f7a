// The only file that imports ldns. ldns pointers never leave it: every function converts to
// Swift values and frees what it allocated before returning (STYLE.md, "ldns: what bites").

import CLDNS

#if canImport(Glibc)
    import Glibc
#endif

extension DNSMessage {
    /// Decodes a message: a structural scan first (``WireScanner``), then ldns for the records.
    ///
    /// Never crashes on hostile input; every rejection is a specific ``WireError``.
    public init(decoding bytes: [UInt8]) throws(WireError) {
        let layout = try WireScanner.scan(bytes)
        var packet: UnsafeMutablePointer<ldns_pkt>? = nil
        let status = bytes.withUnsafeBufferPointer { ldns_wire2pkt(&packet, $0.baseAddress, $0.count) }
        guard status == LDNS_STATUS_OK, let packet else {
            throw LDNSCodec.wireError(status)
        }
        defer { ldns_pkt_free(packet) }

        self.init(id: UInt16(bytes[0]) << 8 | UInt16(bytes[1]))
        setFlags(UInt16(bytes[2]) << 8 | UInt16(bytes[3]))
        questions = LDNSCodec.records(ldns_pkt_question(packet)).map {
            DNSQuestion(name: $0.name, type: $0.type, rrClass: $0.rrClass)
        }
        answers = LDNSCodec.records(ldns_pkt_answer(packet))
        authorities = LDNSCodec.records(ldns_pkt_authority(packet))
        additionals = LDNSCodec.records(ldns_pkt_additional(packet))
        if let tsig = ldns_pkt_tsig(packet) {
            additionals.append(LDNSCodec.record(tsig))
        }
        if layout.optOffset != nil {
            var edns = EDNS(
                udpPayloadSize: ldns_pkt_edns_udp_size(packet),
                extendedRCode: ldns_pkt_edns_extended_rcode(packet),
                version: ldns_pkt_edns_version(packet),
                dnssecOK: ldns_pkt_edns_do(packet) != 0,
                z: ldns_pkt_edns_z(packet) & 0x7FFF
            )
            if let data = ldns_pkt_edns_data(packet) {
                edns.options = try LDNSCodec.options(LDNSCodec.bytes(of: data))
            }
            self.edns = edns
            rcode = DNSRCode(rawValue: UInt16(edns.extendedRCode) << 4 | (rcode.rawValue & 0x0F))
        }
    }
}

/// Zone-file text read with ldns' zone parser, one record at a time so each record keeps its
/// line number (for rule ids and error messages).
public enum ZoneFileReader {
    /// A record and the line it ends on.
    public struct Entry: Sendable, Hashable {
        public var record: DNSRecord
        public var line: Int
    }

    /// A zone file could not be read; `line` is 1-based.
    public struct ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        public var file: String
        public var line: Int
        public var message: String
        public var description: String { "\(file):\(line): \(message)" }
    }

    /// Parses zone-file `text` (`$ORIGIN` and `$TTL` honoured, `$INCLUDE` refused: a policy
    /// must be readable from the files it names).
    public static func parse(_ text: String, file: String, origin: DNSName, defaultTTL: UInt32 = 3600)
        throws(ParseError)
        -> [Entry]
    {
        var bytes = Array(text.utf8)
        if bytes.last != UInt8(ascii: "\n") { bytes.append(UInt8(ascii: "\n")) }
        // Lines that ldns would keep reading as one token (a NUL) are refused up front.
        if let nul = bytes.firstIndex(of: 0) {
            let line = bytes[..<nul].filter { $0 == UInt8(ascii: "\n") }.count + 1
            throw ParseError(file: file, line: line, message: "NUL byte in zone text")
        }
        let result = bytes.withUnsafeMutableBytes { raw in
            Result { () throws(ParseError) -> [Entry] in
                guard let fp = fmemopen(raw.baseAddress, raw.count, "r") else {
                    throw ParseError(file: file, line: 0, message: "cannot open zone text in memory")
                }
                defer { fclose(fp) }
                var ttl = defaultTTL
                var originRDF: UnsafeMutablePointer<ldns_rdf>? = LDNSCodec.rdf(origin)
                var previous: UnsafeMutablePointer<ldns_rdf>? = nil
                defer {
                    if let originRDF { ldns_rdf_deep_free(originRDF) }
                    if let previous { ldns_rdf_deep_free(previous) }
                }
                var line: Int32 = 1
                var entries: [Entry] = []
                while feof(fp) == 0 {
                    var rr: UnsafeMutablePointer<ldns_rr>? = nil
                    let startLine = Int(line)
                    let status = ldns_rr_new_frm_fp_l(&rr, fp, &ttl, &originRDF, &previous, &line)
                    switch status {
                    case LDNS_STATUS_OK:
                        guard let rr else { continue }
                        defer { ldns_rr_free(rr) }
                        // ldns has counted the newline that ended the record.
                        entries.append(Entry(record: LDNSCodec.record(rr), line: max(startLine, Int(line) - 1)))
                    case LDNS_STATUS_SYNTAX_EMPTY, LDNS_STATUS_SYNTAX_TTL, LDNS_STATUS_SYNTAX_ORIGIN:
                        continue
                    case LDNS_STATUS_SYNTAX_INCLUDE:
                        throw ParseError(file: file, line: Int(line) - 1, message: "$INCLUDE is not supported")
                    default:
                        let reason = String(cString: ldns_get_errorstr_by_id(status))
                        let at = max(startLine, Int(line) - 1)
                        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
                        let quoted =
                            at >= 1 && at <= lines.count ? ": '\(lines[at - 1].trimmingCharacters(in: " \t\r"))'" : ""
                        throw ParseError(file: file, line: at, message: reason + quoted)
                    }
                }
                return entries
            }
        }
        return try result.get()
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> Substring {
        var s = self
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return s
    }
}

/// Conversions between ldns structures and Swift values.
enum LDNSCodec {
    static func wireError(_ status: ldns_status) -> WireError {
        .rejected(reason: String(cString: ldns_get_errorstr_by_id(status)))
    }

    static func bytes(of rdf: UnsafePointer<ldns_rdf>) -> [UInt8] {
        let size = ldns_rdf_size(rdf)
        guard size > 0, let data = ldns_rdf_data(rdf) else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: size))
    }

    /// A new ldns dname for `name`; the caller frees it.
    static func rdf(_ name: DNSName) -> UnsafeMutablePointer<ldns_rdf>? {
        name.wire.withUnsafeBufferPointer { buffer in
            ldns_rdf_new_frm_data(LDNS_RDF_TYPE_DNAME, buffer.count, buffer.baseAddress)
        }
    }

    static func record(_ rr: UnsafePointer<ldns_rr>) -> DNSRecord {
        let owner = ldns_rr_owner(rr).map { bytes(of: $0) } ?? [0]
        var rdata: [UInt8] = []
        for i in 0..<ldns_rr_rd_count(rr) {
            if let field = ldns_rr_rdf(rr, i) { rdata.append(contentsOf: bytes(of: field)) }
        }
        return DNSRecord(
            name: (try? DNSName(wire: owner)) ?? .root,
            type: DNSType(rawValue: UInt16(ldns_rr_get_type(rr).rawValue)),
            rrClass: DNSClass(rawValue: UInt16(ldns_rr_get_class(rr).rawValue)),
            ttl: ldns_rr_ttl(rr),
            rdata: rdata
        )
    }

    static func records(_ list: UnsafePointer<ldns_rr_list>?) -> [DNSRecord] {
        guard let list else { return [] }
        let count = ldns_rr_list_rr_count(list)
        var out: [DNSRecord] = []
        out.reserveCapacity(count)
        for i in 0..<count {
            if let rr = ldns_rr_list_rr(list, i) { out.append(record(rr)) }
        }
        return out
    }

    static func options(_ data: [UInt8]) throws(WireError) -> [EDNSOption] {
        var out: [EDNSOption] = []
        var i = 0
        while i < data.count {
            guard i + 4 <= data.count else { throw .badEDNSOption(at: i) }
            let code = UInt16(data[i]) << 8 | UInt16(data[i + 1])
            let length = Int(data[i + 2]) << 8 | Int(data[i + 3])
            guard i + 4 + length <= data.count else { throw .badEDNSOption(at: i) }
            out.append(EDNSOption(code: code, data: Array(data[(i + 4)..<(i + 4 + length)])))
            i += 4 + length
        }
        return out
    }
}
