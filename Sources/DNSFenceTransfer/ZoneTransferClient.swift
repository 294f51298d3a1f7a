import CLDNS
import DNSFenceCore

/// What one transfer brought.
public enum TransferOutcome: Sendable {
    /// The primary has no newer serial than ours.
    case upToDate(serial: UInt32)
    /// The zone, whole (AXFR, or an IXFR answered with the whole zone).
    case full(ZoneContent)
    /// The primary's changes to the zone held (IXFR), not yet applied; how many records they
    /// add and remove; and each owner they touch with its records once they are applied.
    case incremental(ZoneDelta, added: Int, removed: Int, owners: [String: [String]])

    /// `axfr`, `ixfr` or `none`, for metrics and logs.
    public var kind: String {
        switch self {
        case .upToDate: "none"
        case .full: "axfr"
        case .incremental: "ixfr"
        }
    }
}

/// Asks one primary for a zone over TCP: IXFR from the serial held (RFC 1995), else AXFR
/// (RFC 5936), signed with the zone's TSIG key if it has one, every message of the answer
/// verified. The answer is applied to a copy: the content held is never touched.
public struct ZoneTransferClient: Sendable {
    public var zone: String
    public var key: TSIGKey?
    /// Seconds any one connect, send or receive may take.
    public var timeout: Int

    public init(zone: String, key: TSIGKey?, timeout: Int = 10) {
        self.zone = zone.absoluteLowercased
        self.key = key
        self.timeout = timeout
    }

    /// IXFR when `current` is given (falling back to AXFR when the primary cannot answer it
    /// or its answer does not apply), AXFR otherwise.
    public func fetch(from primary: TransferPrimary, current: ZoneContent?) throws(TransferError) -> TransferOutcome {
        guard let current else { return try exchange(primary, ixfrFrom: nil) }
        do {
            return try exchange(primary, ixfrFrom: current)
        } catch .refused(let why) where !why.contains("NOTAUTH") {
            return try exchange(primary, ixfrFrom: nil)
        } catch .incoherent {
            return try exchange(primary, ixfrFrom: nil)
        }
    }

    private func exchange(_ primary: TransferPrimary, ixfrFrom current: ZoneContent?) throws(TransferError)
        -> TransferOutcome
    {
        let session = key.map(TSIGSession.init(key:))
        let (request, id) = try self.request(ixfrFrom: current, session: session)
        let connection = try TransferConnection(to: primary, timeout: timeout)
        try connection.send(request)
        var reader = TransferReader(zone: zone, current: current)
        var messages = 0
        while !reader.isComplete {
            guard let wire = try connection.receive() else {
                throw .network(
                    "\(primary) closed the connection after \(messages) message(s), \(reader.records) record(s): "
                        + "transfer incomplete")
            }
            messages += 1
            var packet: UnsafeMutablePointer<ldns_pkt>? = nil
            let status = wire.withUnsafeBufferPointer { ldns_wire2pkt(&packet, $0.baseAddress, $0.count) }
            guard status == LDNS_STATUS_OK, let packet else {
                throw .malformed(
                    "message \(messages) from \(primary): \(String(cString: ldns_get_errorstr_by_id(status)))")
            }
            defer { ldns_pkt_free(packet) }
            guard ldns_pkt_id(packet) == id, ldns_pkt_qr(packet) != 0 else {
                throw .malformed("message \(messages) from \(primary) does not answer our request")
            }
            let rcode = ldns_pkt_get_rcode(packet).rawValue
            if rcode != 0 {
                var why = "\(primary) answered \(Self.rcodeName(rcode)) to \(current == nil ? "AXFR" : "IXFR")"
                if let tsig = ldns_pkt_tsig(packet), let error = ldns_rr_rdf(tsig, 5),
                    ldns_rdf2native_int16(error) != 0
                {
                    why +=
                        " (TSIG \(TSIGSession.errorName(ldns_rdf2native_int16(error))) for key \(key?.description ?? "-"))"
                }
                throw .refused(why)
            }
            try session?.verify(packet, wire: wire)
            let answers = ldns_pkt_answer(packet)
            for i in 0..<(answers.map { ldns_rr_list_rr_count($0) } ?? 0) {
                guard let rr = ldns_rr_list_rr(answers, i) else { continue }
                try reader.take(rr)
            }
            if !reader.isComplete { try reader.endOfMessage() }
        }
        return try reader.outcome()
    }

    static func rcodeName(_ rcode: UInt32) -> String {
        let names = [
            "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
            "NXRRSET", "NOTAUTH", "NOTZONE",
        ]
        return rcode < names.count ? names[Int(rcode)] : "RCODE \(rcode)"
    }

    /// The request's wire form (signed if there is a key) and its ID.
    private func request(ixfrFrom current: ZoneContent?, session: TSIGSession?) throws(TransferError) -> (
        [UInt8], UInt16
    ) {
        let owner = ldns_dname_new_frm_str(zone)
        guard
            let packet = ldns_pkt_query_new(
                owner, current == nil ? LDNS_RR_TYPE_AXFR : LDNS_RR_TYPE_IXFR,
                LDNS_RR_CLASS_IN, 0)
        else { throw .malformed("cannot build a request for zone \(zone)") }
        defer { ldns_pkt_free(packet) }
        ldns_pkt_set_random_id(packet)
        if let current {
            var soa: UnsafeMutablePointer<ldns_rr>? = nil
            guard ldns_rr_new_frm_str(&soa, current.soaLine, 0, nil, nil) == LDNS_STATUS_OK, let soa else {
                throw .malformed("cannot read the zone's SOA '\(current.soaLine)'")
            }
            ldns_pkt_push_rr(packet, LDNS_SECTION_AUTHORITY, soa)
        }
        try session?.sign(packet)
        var buffer: UnsafeMutablePointer<UInt8>? = nil
        var size = 0
        guard ldns_pkt2wire(&buffer, packet, &size) == LDNS_STATUS_OK, let buffer else {
            throw .malformed("cannot encode the request for zone \(zone)")
        }
        defer { free(buffer) }
        return (Array(UnsafeBufferPointer(start: buffer, count: size)), ldns_pkt_id(packet))
    }
}

/// Follows the records of an AXFR or IXFR answer (RFC 5936 2.2, RFC 1995 4) and builds the
/// zone they describe: for an AXFR, every record between the opening and closing SOA; for an
/// IXFR, each difference sequence (old SOA, deletions, new SOA, additions) applied in order to
/// a copy of the zone held.
struct TransferReader {
    private enum Phase {
        case start
        /// Saw the opening SOA; the next record tells AXFR from IXFR.
        case opened
        case full
        case deleting
        case adding
        case done
    }

    /// The most records a transfer may carry (a policy of 10 million names is far beyond any
    /// seen; what is beyond it is a fault or an attack on memory).
    static let maxRecords = 20_000_000

    let zone: String
    let current: ZoneContent?
    private var phase = Phase.start
    private var newSerial: UInt32 = 0
    private var newSOA = ""
    /// The version the IXFR's current difference sequence leads to.
    private var version: UInt32 = 0
    private var content: ZoneContent? = nil
    /// An IXFR's changes to `current`.
    private var delta: ZoneDelta? = nil
    private(set) var records = 0
    private var added = 0
    private var removed = 0
    private var upToDate = false
    private var incremental = false
    /// Owners of the records an IXFR added or deleted.
    private var owners: Set<String> = []

    init(zone: String, current: ZoneContent?) {
        self.zone = zone
        self.current = current
    }

    var isComplete: Bool { phase == .done || upToDate }

    mutating func take(_ rr: UnsafeMutablePointer<ldns_rr>) throws(TransferError) {
        guard let text = ldns_rr2str(rr) else { throw .malformed("an unprintable record") }
        defer { free(text) }
        try take(TransferRecord(line: String(cString: text)))
    }

    mutating func take(_ record: TransferRecord) throws(TransferError) {
        guard phase != .done else { throw .malformed("records after the closing SOA") }
        records += 1
        guard records <= Self.maxRecords else {
            throw .malformed("more than \(Self.maxRecords) records: not taken (memory)")
        }
        let line = record.line
        let isSOA = record.soa != nil
        let serial = record.soa?.serial ?? 0
        if isSOA || phase == .start {
            guard record.owner == zone else {
                throw .malformed("a record of '\(record.owner)' in a transfer of \(zone)")
            }
        }
        do {
            switch phase {
            case .start:
                guard isSOA else { throw TransferError.malformed("the answer does not start with the zone's SOA") }
                newSerial = serial
                newSOA = line
                phase = .opened
            case .opened:
                if isSOA, let current, serial == current.soa.serial, serial != newSerial {
                    delta = ZoneDelta(soaLine: current.soaLine, serial: serial)
                    version = serial
                    incremental = true
                    phase = .deleting
                } else if isSOA {
                    // AXFR of an empty zone, or "nothing newer" answered as SOA SOA.
                    guard serial == newSerial else {
                        throw TransferError.malformed("an SOA of serial \(serial) in an AXFR")
                    }
                    content = try ZoneContent(origin: zone, soaLine: newSOA)
                    phase = .done
                } else {
                    content = try ZoneContent(origin: zone, soaLine: newSOA)
                    try content!.add(line)
                    phase = .full
                }
            case .full:
                if isSOA {
                    guard serial == newSerial else {
                        throw TransferError.malformed("an SOA of serial \(serial) in an AXFR")
                    }
                    phase = .done
                } else {
                    try content!.add(line)
                }
            case .deleting:
                if isSOA {
                    version = serial
                    try delta!.setSOA(line)
                    phase = .adding
                } else {
                    try delta!.remove(line, from: current!)
                    owners.insert(record.owner)
                    removed += 1
                }
            case .adding:
                if isSOA {
                    if serial == newSerial && version == newSerial {
                        phase = .done
                    } else {
                        guard serial == version else {
                            throw TransferError.incoherent(
                                "IXFR sequence from serial \(serial) does not follow \(version)")
                        }
                        phase = .deleting
                    }
                } else {
                    if try delta!.add(line, to: current!) { added += 1 }
                    owners.insert(record.owner)
                }
            case .done:
                break
            }
        } catch let error as ZoneContent.Incoherent {
            throw .incoherent(error.description)
        } catch let error as TransferError {
            throw error
        } catch {
            throw .malformed("\(error)")
        }
    }

    /// A message ended: an IXFR answered with the SOA alone is "nothing newer" (RFC 1995 4).
    mutating func endOfMessage() throws(TransferError) {
        guard phase == .opened, let current else { return }
        guard !ZoneContent.isNewer(newSerial, than: current.soa.serial) else {
            throw .refused("the primary answered IXFR with its SOA alone (serial \(newSerial)): asking for AXFR")
        }
        upToDate = true
    }

    func outcome() throws(TransferError) -> TransferOutcome {
        if upToDate { return .upToDate(serial: newSerial) }
        guard phase == .done else { throw .malformed("the transfer ended early") }
        do throws(ZoneContent.Incoherent) {
            if incremental, var delta, let current {
                try delta.setSOA(newSOA)
                let lines = Dictionary(uniqueKeysWithValues: owners.map { ($0, delta.lines(of: $0, in: current)) })
                return .incremental(delta, added: added, removed: removed, owners: lines)
            }
            guard var content else { throw ZoneContent.Incoherent(description: "the transfer ended early") }
            try content.setSOA(newSOA)
            return .full(content)
        } catch {
            throw .malformed(error.description)
        }
    }
}

/// One record of a transfer as ldns prints it (`owner<TAB>TTL<TAB>CLASS<TAB>TYPE<TAB>data`).
struct TransferRecord {
    var line: String
    /// Lowercased.
    var owner: String
    /// Its fields, when it is an SOA.
    var soa: ZoneContent.SOA?

    init(line: String) {
        var line = line
        while line.last == "\n" { line.removeLast() }
        self.line = line
        let fields = line.split(separator: "\t", maxSplits: 4, omittingEmptySubsequences: false)
        owner = fields.first.map { $0.lowercased() } ?? ""
        soa = fields.count == 5 && fields[3] == "SOA" ? ZoneContent.SOA(line: line) : nil
    }
}
