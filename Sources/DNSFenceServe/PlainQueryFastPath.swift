import DNSFencePolicy
import DNSFenceResolve
import DNSFenceWire

extension QueryPipeline {
    /// Where the byte-level path puts an answer: `count` bytes that `write` fills in place
    /// (straight into a socket's send buffer: no array per answer).
    public typealias Emit = (_ count: Int, _ write: (UnsafeMutableBufferPointer<UInt8>) -> Void) -> Void

    /// Handles one query given as the bytes the socket read: denials and cache hits of plain
    /// queries are answered at the byte level, everything else takes ``process(_:context:)``.
    public func process(bytes: UnsafeRawBufferPointer, context: QueryContext) -> ImmediateOutcome {
        var response: [UInt8] = []
        var forward: PendingForward? = nil
        let result = fastPath(
            bytes, context: context, emit: { count, write in response = Self.array(count, write) },
            forward: { forward = $0 })
        switch result {
        case .answered: return .respond(response)
        case .forwarded: return forward.map { .forward($0) } ?? .drop
        case .declined: return process(Array(bytes), context: context)
        }
    }

    /// What the byte-level path did with a query (a payload-free enum: the hot path returns it
    /// on every query, and an enum carrying the forward cost ~300 instructions per query).
    public enum FastPathResult {
        /// Answered through `emit`.
        case answered
        /// A cache miss of a name the policy passes, handed to `forward` as the forward the full
        /// path would make (to go upstream with ``complete(_:on:completion:)``).
        case forwarded
        /// Nothing done: take the full path.
        case declined
    }

    static func array(_ count: Int, _ write: (UnsafeMutableBufferPointer<UInt8>) -> Void) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { out, initialized in
            write(out)
            initialized = count
        }
    }

    /// The answer to a plain query that the policy denies or the cache holds, written from the
    /// query's bytes with no ``DNSMessage``, ``QueryRecord`` or outcome enum: on the hot and
    /// denied workloads these were most of the pipeline's cost. Byte for byte what
    /// ``process(_:context:)`` answers (tests compare the two). Nil, for the full path, for
    /// anything else: no policy, local data, a cache miss, an answer too big for the client, a
    /// query that is
    /// not a plain one (see ``DNSMessage/init(fastQuery:)``), an unusual class or type, EDNS
    /// version ≠ 0, `rpz-drop`, a cache hit whose addresses a firewall must commit first (or
    /// of a family it has no set for), or a cache hit when the query log records answered queries
    /// (denials are logged from here with the record the full path would make).
    func fastPath(_ bytes: UnsafeRawBufferPointer, context: QueryContext) -> [UInt8]? {
        var response: [UInt8]? = nil
        _ = fastPath(bytes, context: context, emit: { count, write in response = Self.array(count, write) }) { _ in }
        return response
    }

    /// The same, handing the answer to `emit` (called once, for `.answered` only). A cache miss
    /// goes to `forward` as the forward the full path would make (for `.forwarded` only): it has
    /// been looked up once, not again by the full path.
    public func fastPath(
        _ bytes: UnsafeRawBufferPointer, context: QueryContext, emit: Emit, forward: (PendingForward) -> Void
    ) -> FastPathResult {
        let started = QueryRecord.monotonicNow()
        guard let plain = PlainQuery(bytes) else { return .declined }
        let nameEnd = plain.nameEnd
        let type = DNSType(rawValue: plain.type)
        guard plain.rrClass == DNSClass.in.rawValue, type != .axfr, type != .ixfr, type != .opt, type != .any
        else { return .declined }
        // EDNS version 0 only (else BADVERS).
        guard plain.edns.map({ $0.version == 0 }) ?? true else { return .declined }
        guard
            let policy = selector.select(client: context.client, listenerPolicy: context.listenerPolicy)
        else { return .declined }
        let name = UnsafeRawBufferPointer(rebasing: bytes[12..<nameEnd])
        let question = UnsafeRawBufferPointer(rebasing: bytes[12..<(nameEnd + 4)])
        let decision = policy.quickDecision(wire: name, type: type)
        if case .pass(let rule)? = decision {
            // A log of answered queries needs the full record of each.
            if let queryLog, queryLog.logsAnswers { return .declined }
            return cacheHit(
                plain, bytes: bytes, name: name, question: question, type: type, policy: policy, rule: rule,
                context: context, started: started, emit: emit, forward: forward)
        }
        guard case .deny(let deny, let error, let rule)? = decision, let rcode = deny.rcode else { return .declined }
        let flags = plain.responseFlags(rcode: rcode, authenticData: false)
        let dnssecOK = plain.dnssecOK
        emit(Self.denialSize(question: question, dnssecOK: dnssecOK, error: error)) { out in
            Self.writeDenial(
                into: out, id: plain.id, flags: flags, question: question, dnssecOK: dnssecOK, error: error)
        }
        metrics.record(
            transport: context.transport, qtype: type, policy: policy.name, action: "deny",
            rcode: UInt8(rcode.rawValue), started: started)
        metrics.recordEDE(error.infoCode)
        if let queryLog {
            // The record the full path would log.
            var record = QueryRecord(
                started: started, client: context.client, transport: context.transport,
                listenerPolicy: context.listenerPolicy)
            record.policy = policy.name
            record.question = DNSQuestion(name: DNSName(uncheckedWire: Array(name)), type: type)
            record.action = "deny"
            record.rule = rule
            record.ede = error
            queryLog.record(record, rcode: UInt8(rcode.rawValue))
        }
        return .answered
    }

    /// A cache hit served from its template, or a miss forwarded, for a name the policy passes.
    private func cacheHit(
        _ plain: PlainQuery, bytes: UnsafeRawBufferPointer, name: UnsafeRawBufferPointer,
        question: UnsafeRawBufferPointer, type: DNSType, policy: Policy, rule: RuleID, context: QueryContext,
        started: UInt64, emit: Emit, forward: (PendingForward) -> Void
    ) -> FastPathResult {
        var lower = Array(name)
        DNSName.foldCase(&lower)
        let dnssecOK = plain.dnssecOK
        let key = CacheKey(
            policy: policy.name, lowercasedName: DNSName(uncheckedWire: lower), type: type,
            dnssecOK: dnssecOK ?? false, checkingDisabled: plain.flags & 0x0010 != 0)
        // Not counted here: a miss (or an answer this path cannot give) is looked up and
        // counted again by the full path.
        let maxSize = context.transport == .udp ? Self.udpLimit(payloadSize: plain.edns?.payloadSize) : 65535
        guard let (stored, elapsed) = cache.lookupEntry(key, counting: false) else {
            return miss(
                plain, bytes: bytes, key: key, policy: policy.name, rule: rule, maxSize: maxSize, context: context,
                started: started, forward: forward)
        }
        guard let template = stored.template else { return .declined }
        let flags = plain.responseFlags(
            rcode: template.rcode, authenticData: template.authenticData && plain.asksForAuthenticData)
        let size = template.size(edns: dnssecOK != nil)
        // Too big for this client: the full path truncates.
        guard size <= maxSize, question.count == template.questionLength else { return .declined }
        // Only when every address is in its set for long enough, as the full path checks
        // (otherwise the full path commits first), and never for a family without a set (the
        // full path's NODATA). Out of line: policies without a firewall do not pay for it.
        if !firewalls.isEmpty, !firewallAllowsHit(policy: policy.name, type: type, template: template, elapsed: elapsed)
        {
            return .declined
        }
        emit(size) { out in
            template.write(
                into: out, id: plain.id, flags: flags, question: question, dnssecOK: dnssecOK, elapsed: elapsed,
                ednsPayload: UInt16(Self.maxUDPPayload))
        }
        cache.recordHit()
        metrics.record(
            transport: context.transport, qtype: type, policy: policy.name, action: "pass",
            rcode: UInt8(template.rcode.rawValue & 0x0F), started: started)
        return .answered
    }

    /// A miss: the forward ``decide(_:context:record:)`` makes for it, from what was looked up
    /// here (policy, key) instead of decoding, deciding and looking up a second time. Declined
    /// when the policy's firewall has no set for the type (the full path's NODATA).
    @inline(never)
    private func miss(
        _ plain: PlainQuery, bytes: UnsafeRawBufferPointer, key: CacheKey, policy: String, rule: RuleID,
        maxSize: Int, context: QueryContext, started: UInt64, forward: (PendingForward) -> Void
    ) -> FastPathResult {
        let binding = firewall(for: policy)
        if let binding, binding.lacksSet(for: key.type) {
            return .declined
        }
        guard let query = DNSMessage(fastQuery: bytes), let question = query.question else { return .declined }
        cache.recordMiss()
        var record = QueryRecord(
            started: started, client: context.client, transport: context.transport,
            listenerPolicy: context.listenerPolicy)
        record.question = question
        record.policy = policy
        record.action = "pass"
        record.rule = rule
        forward(
            PendingForward(
                record: record, query: query, bytes: Array(bytes), question: question, key: key, maxUDPSize: maxSize,
                transport: context.transport, binding: binding))
        return .forwarded
    }
}
