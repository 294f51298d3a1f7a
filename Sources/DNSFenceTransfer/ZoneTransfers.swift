import CLDNS
public import DNSFenceCore
public import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The secondaries of a running server, one per zone, and the NOTIFY responder in front of
/// them. A reload hands it the zones configured now: new ones start (from their cache file),
/// gone ones stop, unchanged ones keep their state.
public final class ZoneTransfers: ZoneProvider {
    private struct Running {
        var zone: SecondaryZone
        var task: Task<Void, Never>?
    }

    private let zones = Mutex<[String: Running]>([:])
    /// Secondaries made for a compile before ``configure(_:)`` (a start's first load, a reload
    /// adding a zone): their cache file is read once, and ``configure(_:)`` takes them over.
    private let prepared = Mutex<[String: SecondaryZone]>([:])
    private let applier = Mutex<ZoneApply?>(nil)
    private let notifies = Mutex<(second: Int, count: Int)>((0, 0))

    private let logger: Logger

    public init(logger: Logger) { self.logger = logger }

    /// The zones configured now (before the policies are compiled from ``state(of:)``).
    public func configure(_ sources: [ZoneTransferSource]) {
        let apply = applier.withLock { $0 }
        zones.withLock { running in
            let wanted = Dictionary(sources.map { ($0.zone, $0) }, uniquingKeysWith: { first, _ in first })
            for (zone, entry) in running where wanted[zone] != entry.zone.source {
                entry.zone.stop()
                entry.task?.cancel()
                running[zone] = nil
            }
            let ready = prepared.withLock { prepared in
                defer { prepared = [:] }
                return prepared
            }
            for (zone, source) in wanted where running[zone] == nil {
                let secondary =
                    ready[zone].flatMap { $0.source == source ? $0 : nil }
                    ?? SecondaryZone(source: source, logger: logger)
                running[zone] = Running(zone: secondary, task: apply.map { secondary.run(apply: $0) })
            }
        }
    }

    /// Starts refreshing every zone; `apply` puts a transfer into service.
    public func start(apply: @escaping ZoneApply) {
        applier.withLock { $0 = apply }
        zones.withLock { running in
            for (zone, entry) in running where entry.task == nil {
                running[zone]?.task = entry.zone.run(apply: apply)
            }
        }
    }

    public func stop() {
        zones.withLock { running in
            for entry in running.values {
                entry.zone.stop()
                entry.task?.cancel()
            }
            running = [:]
        }
    }

    /// What a zone gives its policies now. A zone not configured yet gets its secondary made
    /// (from its cache file), kept for ``configure(_:)``.
    public func state(of source: ZoneTransferSource) -> ZoneState {
        if let zone = zones.withLock({ $0[source.zone]?.zone }), zone.source == source { return zone.current }
        let zone = prepared.withLock { prepared in
            if let zone = prepared[source.zone], zone.source == source { return zone }
            let zone = SecondaryZone(source: source, logger: logger)
            prepared[source.zone] = zone
            return zone
        }
        return zone.current
    }

    /// `zone` as held with `delta` applied (a copy), or nil.
    public func preview(_ zone: String, _ delta: ZoneDelta) -> ZoneContent? {
        zones.withLock { $0[zone]?.zone }?.preview(delta)
    }

    /// Zone → serial held, for `/readyz` and logs.
    public var serials: [String: UInt32?] { zones.withLock { $0.mapValues { $0.zone.serial } } }

    /// The answer to a NOTIFY (RFC 1996 3.7): accepted from a configured primary of a zone we
    /// keep (signed with the zone's key when it has one and the NOTIFY is signed), answered
    /// with the header and question and AA; REFUSED from anyone else, NOTAUTH for a zone we do
    /// not keep or a bad signature. Nil for what is not a NOTIFY query at all.
    public func answerNotify(_ wire: [UInt8], from client: IPAddress) -> [UInt8]? {
        var packet: UnsafeMutablePointer<ldns_pkt>? = nil
        guard wire.withUnsafeBufferPointer({ ldns_wire2pkt(&packet, $0.baseAddress, $0.count) }) == LDNS_STATUS_OK,
            let packet
        else { return nil }
        defer { ldns_pkt_free(packet) }
        guard ldns_pkt_qr(packet) == 0, ldns_pkt_get_opcode(packet) == LDNS_PACKET_NOTIFY,
            ldns_pkt_qdcount(packet) == 1, let question = ldns_rr_list_rr(ldns_pkt_question(packet), 0)
        else { return nil }
        let zoneName = ldns_rdf2str(ldns_rr_owner(question)).map { p in
            defer { free(p) }
            return String(cString: p).lowercased()
        }
        let zone = zoneName.flatMap { name in zones.withLock { $0[name]?.zone } }
        var rcode = LDNS_RCODE_NOERROR
        var session: TSIGSession? = nil
        if ldns_rr_get_type(question) != LDNS_RR_TYPE_SOA {
            rcode = LDNS_RCODE_FORMERR
        } else if let zone {
            if !zone.source.primaries.contains(where: { $0.address == client }) {
                rcode = LDNS_RCODE_REFUSED
            } else if ldns_pkt_tsig(packet) != nil {
                if let key = zone.source.key {
                    session = TSIGSession(key: key)
                    if !session!.verifyRequest(packet, wire: wire) {
                        session = nil
                        rcode = LDNS_RCODE_NOTAUTH
                    }
                } else {
                    rcode = LDNS_RCODE_NOTAUTH
                }
            }
        } else {
            rcode = LDNS_RCODE_NOTAUTH
        }
        if rcode == LDNS_RCODE_NOERROR, let zone, admitNotify() { zone.notified() }
        return Self.notifyAnswer(to: packet, question: question, rcode: rcode, session: session)
    }

    /// At most 20 NOTIFYs a second set refreshes going (a flood of them costs one refresh).
    private func admitNotify() -> Bool {
        let second = Int(time(nil))
        return notifies.withLock { n in
            if n.second != second { n = (second, 0) }
            n.count += 1
            return n.count <= 20
        }
    }

    private static func notifyAnswer(
        to query: UnsafeMutablePointer<ldns_pkt>, question: UnsafeMutablePointer<ldns_rr>, rcode: ldns_pkt_rcode,
        session: TSIGSession?
    ) -> [UInt8]? {
        guard let answer = ldns_pkt_new() else { return nil }
        defer { ldns_pkt_free(answer) }
        ldns_pkt_set_id(answer, ldns_pkt_id(query))
        ldns_pkt_set_qr(answer, 1)
        ldns_pkt_set_aa(answer, rcode == LDNS_RCODE_NOERROR ? 1 : 0)
        ldns_pkt_set_opcode(answer, LDNS_PACKET_NOTIFY)
        ldns_pkt_set_rcode(answer, UInt8(rcode.rawValue))
        ldns_pkt_push_rr(answer, LDNS_SECTION_QUESTION, ldns_rr_clone(question))
        if let session, !session.signAnswer(answer) { return nil }
        var buffer: UnsafeMutablePointer<UInt8>? = nil
        var size = 0
        guard ldns_pkt2wire(&buffer, answer, &size) == LDNS_STATUS_OK, let buffer else { return nil }
        defer { free(buffer) }
        return Array(UnsafeBufferPointer(start: buffer, count: size))
    }
}
