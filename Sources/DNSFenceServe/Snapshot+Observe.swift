import DNSFencePolicy
import DNSFenceWire

extension Snapshot {
    /// Metrics and the query log for a query answered (or dropped) at once: the one place a
    /// decision is counted and logged. The record is built only if the log wants it.
    /// `rcode`: the answer's RCODE (low four bits), nil when nothing was sent.
    @inline(__always)
    func observe(
        _ decision: borrowing QueryDecision, view: QueryView?, context: QueryContext, rcode: UInt8?, started: UInt64
    ) {
        count(
            transport: context.transport, qtype: view?.type, policy: decision.policy?.name, action: decision.action,
            ede: decision.ede, rcode: rcode, started: started)
        // Rate-limited queries are counted, never logged: a flood would fill the log.
        guard let queryLog, decision.action != .limited,
            decision.action != .pass && decision.action != .local || queryLog.logsAnswers
        else {
            return
        }
        queryLog.record(QueryRecord(decision, view: view, context: context, started: started), rcode: rcode)
    }

    /// The same for a query answered later (upstream, or after a commit), from its record.
    func observe(_ record: QueryRecord, rcode: UInt8?) {
        count(
            transport: record.transport, qtype: record.question?.type, policy: record.policy,
            action: QueryAction(rawValue: record.action) ?? .error, ede: record.ede, rcode: rcode,
            started: record.started)
        queryLog?.record(record, rcode: rcode)
    }

    @inline(__always)
    private func count(
        transport: Transport, qtype: DNSType?, policy: String?, action: QueryAction, ede: ExtendedDNSError?,
        rcode: UInt8?, started: UInt64
    ) {
        metrics.record(
            transport: transport, qtype: qtype, policy: policy, action: action, rcode: rcode, started: started)
        if let ede, rcode != nil { metrics.recordEDE(ede.infoCode) }
    }
}

extension QueryRecord {
    /// The record of a query from its decision (and its view, when it got one).
    init(_ decision: borrowing QueryDecision, view: QueryView?, context: QueryContext, started: UInt64) {
        self.init(
            started: started, client: context.client, transport: context.transport,
            listenerPolicy: context.listenerPolicy)
        if let view, view.questionCount == 1 { question = view.question }
        policy = decision.policy?.name
        action = decision.action.rawValue
        rule = decision.rule
        ede = decision.ede
        switch decision.verdict {
        case .hit(let hit) where !hit.truncated: published = hit.answer.addresses.map(\.address)
        case .localData(_, let addresses, _): published = addresses
        default: break
        }
    }
}
