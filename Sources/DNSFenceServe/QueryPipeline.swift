// DNSFenceServe: the query pipeline (decode → policy → deny | local data | cache → forward)
// and the UDP/TCP listeners that feed it.

public import DNSFenceCore
import DNSFenceFirewall
public import DNSFencePolicy
public import DNSFenceResolve
public import DNSFenceWire
public import Logging
public import NIOCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Where a query arrived.
public enum Transport: String, Sendable {
    case udp
    case tcp
}

/// What the pipeline needs to know about one query besides its bytes.
public struct QueryContext: Sendable {
    public var client: IPAddress
    public var listenerPolicy: String?
    public var transport: Transport

    public init(client: IPAddress, listenerPolicy: String?, transport: Transport) {
        self.client = client
        self.listenerPolicy = listenerPolicy
        self.transport = transport
    }
}

/// The synchronous part's verdict: answer now, say nothing, or go upstream.
public enum ImmediateOutcome: Sendable {
    case respond([UInt8])
    case drop
    case forward(PendingForward)
    /// A cache hit whose addresses must be (re)committed before it is released.
    case publish(PendingPublish)
}

/// An answer waiting for its addresses to be committed. An object: it is handed to the publish
/// batch and back to its loop by reference (as a struct, each closure on the way held a copy of
/// it, and each copy retained and released a dozen references).
public final class PendingPublish: Sendable {
    let record: QueryRecord
    let elements: [SetElement]
    /// The answer to release once committed: a message to encode, or bytes already made.
    let answer: Answer
    /// Where to commit, and for how long the answer may wait.
    let binding: FirewallBinding
    let query: DNSMessage
    let maxUDPSize: Int

    init(
        record: QueryRecord, elements: [SetElement], answer: Answer, binding: FirewallBinding, query: DNSMessage,
        maxUDPSize: Int
    ) {
        self.record = record
        self.elements = elements
        self.answer = answer
        self.binding = binding
        self.query = query
        self.maxUDPSize = maxUDPSize
    }
}

/// What a pending publish releases.
enum Answer: Sendable {
    case message(DNSMessage)
    case bytes([UInt8])
}

/// A guarded answer and what to commit first.
struct AnswerPlan: Sendable {
    var message: DNSMessage
    var elements: [SetElement]
}

/// A query that passed policy and missed the cache.
public struct PendingForward: Sendable {
    var record: QueryRecord
    var query: DNSMessage
    /// The query as the client sent it (the answer copies its question from here).
    var bytes: [UInt8]
    var question: DNSQuestion
    var key: CacheKey
    var maxUDPSize: Int
    var transport: Transport
    let binding: FirewallBinding?
}

/// The query pipeline of DESIGN.md. Decisions are made synchronously where no I/O is needed
/// (malformed input, denials, local data, cache hits); only upstream forwarding is async.
public final class QueryPipeline: Sendable {
    /// Our advertised and maximum UDP payload (DNS Flag Day 2020).
    public static let maxUDPPayload = 1232

    let selector: ClientPolicySelector
    let cache: AnswerCache
    let forwarder: UpstreamForwarder
    let logger: Logger
    let firewalls: [String: FirewallBinding]
    /// The same as two lists, for a scan when there are few (cheaper than hashing the policy
    /// name on every answer; a list of tuples would be copied through generic value witnesses).
    private let firewallPolicies: [String]
    private let firewallBindings: [FirewallBinding]
    let metrics: QueryMetrics
    let queryLog: (any QueryLogSink)?
    private let inflight = Atomic<Int>(0)
    private let batcher = PublishBatcher()

    /// Queries waiting for an upstream right now.
    public var inflightCount: Int { inflight.load(ordering: .relaxed) }

    public init(
        selector: ClientPolicySelector, cache: AnswerCache, forwarder: UpstreamForwarder, logger: Logger,
        firewalls: [String: FirewallBinding] = [:], queryLog: (any QueryLogSink)? = nil
    ) {
        self.firewalls = firewalls
        let sorted = firewalls.sorted { $0.key < $1.key }
        self.firewallPolicies = sorted.map(\.key)
        self.firewallBindings = sorted.map(\.value)
        self.queryLog = queryLog
        self.metrics = QueryMetrics(policies: selector.entries.keys.sorted())
        self.selector = selector
        self.cache = cache
        self.forwarder = forwarder
        self.logger = logger
    }

    /// Handles one query end to end; nil means send nothing.
    public func answer(_ bytes: [UInt8], context: QueryContext) async -> [UInt8]? {
        await complete(process(bytes, context: context))
    }

    /// The asynchronous stage for whatever the synchronous one left open.
    public func complete(_ outcome: ImmediateOutcome) async -> [UInt8]? {
        let loop = forwarder.group.next()
        return await withCheckedContinuation { continuation in
            complete(outcome, on: loop) { continuation.resume(returning: $0) }
        }
    }

    /// The asynchronous stage on `loop`: upstream replies, publish completions and timers all
    /// continue there as plain callbacks (no task, no future chain, no executor hop), and
    /// `completion` runs once, on `loop`, so a listener there writes the answer directly.
    public func complete(
        _ outcome: ImmediateOutcome, on loop: any EventLoop, completion: @escaping @Sendable ([UInt8]?) -> Void
    ) {
        let done: @Sendable (QueryRecord, [UInt8]) -> Void = { record, response in
            self.finish(record, response)
            if loop.inEventLoop {
                completion(response)
            } else {
                loop.execute { completion(response) }
            }
        }
        switch outcome {
        case .respond(let response): completion(response)
        case .drop: completion(nil)
        case .forward(let pending): forward(pending, on: loop, done: done)
        case .publish(let pending): publish(pending, on: loop, done: done)
        }
    }

    /// The firewall binding of the policy named `policy`, if it has one.
    func firewall(for policy: String) -> FirewallBinding? {
        if firewallPolicies.isEmpty { return nil }
        if firewallPolicies.count <= 8 { return firewallPolicies.firstIndex(of: policy).map { firewallBindings[$0] } }
        return firewalls[policy]
    }

    /// Whether a hit for `policy` may go out now under its firewall (true without one): see
    /// ``FirewallBinding/allowsHit(type:template:elapsed:)``.
    @inline(never)
    func firewallAllowsHit(policy: String, type: DNSType, template: ResponseTemplate, elapsed: UInt32) -> Bool {
        firewall(for: policy)?.allowsHit(type: type, template: template, elapsed: elapsed) ?? true
    }

    /// Metric families kept outside swift-metrics (the query latency histogram), in Prometheus
    /// text, for the `/metrics` endpoint to append.
    public func metricsExposition() -> String { metrics.latencyExposition() }

    /// Metrics and the query log, once per query, when its answer (or silence) is known.
    func finish(_ record: QueryRecord, _ response: [UInt8]?) {
        let rcode = response.flatMap { $0.count >= 12 ? $0[3] & 0x0F : nil }
        metrics.record(
            transport: record.transport, qtype: record.question?.type, policy: record.policy, action: record.action,
            rcode: rcode, started: record.started)
        if let ede = record.ede { metrics.recordEDE(ede.infoCode) }
        queryLog?.record(record, rcode: rcode)
    }

    /// The synchronous stage: answers what needs no I/O, hands the rest on.
    public func process(_ bytes: [UInt8], context: QueryContext) -> ImmediateOutcome {
        var record = QueryRecord(
            started: QueryRecord.monotonicNow(), client: context.client, transport: context.transport,
            listenerPolicy: context.listenerPolicy)
        let outcome = decide(bytes, context: context, record: &record)
        switch outcome {
        case .respond(let response): finish(record, response)
        case .drop: finish(record, nil)
        case .forward, .publish: break
        }
        return outcome
    }

    func decide(_ bytes: [UInt8], context: QueryContext, record: inout QueryRecord) -> ImmediateOutcome {
        // Fewer than 12 bytes cannot carry an ID to answer to; a response is never answered
        // (answering responses lets two servers loop on each other).
        guard bytes.count >= 12 else { return .drop }
        guard bytes[2] & 0x80 == 0 else { return .drop }

        let query: DNSMessage
        do {
            query = try DNSMessage(decodingQuery: bytes)
        } catch {
            logger.debug("malformed query", metadata: ["client": "\(context.client)", "error": "\(error)"])
            return .respond(Self.headerOnlyResponse(to: bytes, rcode: error.responseCode))
        }
        let maxUDP = context.transport == .udp ? Self.udpLimit(query.edns) : 65535
        func respond(_ message: DNSMessage) -> ImmediateOutcome {
            .respond(Self.fit(message, maxUDP: maxUDP))
        }

        guard query.opcode == .query else { return respond(Self.response(to: query, rcode: .notImp)) }
        guard query.questions.count == 1, let question = query.question else {
            return respond(Self.response(to: query, rcode: .formErr))
        }
        record.question = question
        if let edns = query.edns, edns.version != 0 {
            // RFC 6891 6.1.3: BADVERS, with our highest version (0) in the OPT record.
            return respond(Self.response(to: query, rcode: .badVers))
        }
        guard question.rrClass == .in else { return respond(Self.response(to: query, rcode: .refused)) }
        if question.type == .axfr || question.type == .ixfr || question.type == .opt {
            return respond(Self.response(to: query, rcode: .refused))
        }
        guard let policy = selector.select(client: context.client, listenerPolicy: context.listenerPolicy) else {
            record.ede = ExtendedDNSError(ExtendedDNSError.prohibited, "dnsfence: no policy for this client")
            return respond(Self.response(to: query, rcode: .refused, error: record.ede))
        }
        record.policy = policy.name

        // RFC 8482: ANY is answered with a synthesized HINFO, never forwarded, for names the
        // policy allows; the policy is asked as if for A.
        let asked = question.type == .any ? DNSQuestion(name: question.name, type: .a) : question
        let decision = policy.decide(asked)
        record.action = decision.actionLabel
        record.rule = decision.rule
        switch decision {
        case .deny(let deny, let error, _):
            record.ede = error
            guard let rcode = deny.rcode else { return .drop }
            // Denials are synthesised from the question bytes when the question sits
            // uncompressed at offset 12 (always, for the fast path): no message is built.
            if let fast = Self.denial(bytes: bytes, query: query, rcode: rcode, error: error) { return .respond(fast) }
            return respond(Self.response(to: query, rcode: rcode, error: error))
        case .localData(let records, _):
            if question.type == .any { return respond(Self.rfc8482(to: query)) }
            var message = Self.response(to: query, rcode: .noError)
            message.authoritative = true
            message.answers = records
            return respond(message)
        case .pass:
            if question.type == .any { return respond(Self.rfc8482(to: query)) }
            let binding = firewall(for: policy.name)
            if let binding, binding.lacksSet(for: question.type) {
                // Address-family coherence: never hand out a family the firewall has no set for.
                let family = question.type == .a ? "IPv4" : "IPv6"
                record.ede = ExtendedDNSError(
                    ExtendedDNSError.filtered, "dnsfence: policy \(policy.name) has no \(family) set")
                return respond(Self.response(to: query, rcode: .noError, error: record.ede))
            }
            let key = CacheKey(
                policy: policy.name, name: question.name, type: question.type,
                dnssecOK: query.edns?.dnssecOK ?? false, checkingDisabled: query.checkingDisabled)
            var hit = cache.lookupEntry(key)
            if let (stored, elapsed) = hit, let template = stored.template {
                // Wire-level hit: the stored sections after a copy of the question, TTLs patched.
                if let fast = template.response(
                    to: query, bytes: bytes, elapsed: elapsed, maxSize: maxUDP, ednsPayload: UInt16(Self.maxUDPPayload))
                {
                    guard let binding else { return .respond(fast) }
                    return Self.release(
                        fast, of: template, elapsed: elapsed, binding: binding, record: &record, query: query,
                        maxUDPSize: maxUDP)
                }
                if template.size(edns: query.edns != nil) > maxUDP {
                    // Too big for this client's UDP size: TC, no records (RFC 7766 section 5).
                    var truncated = Self.response(to: query, rcode: template.rcode)
                    truncated.truncated = true
                    truncated.authenticData = template.authenticData && query.asksForAuthenticData
                    return .respond(truncated.encoded())
                }
                // Kept in wire form only and not usable for this query: ask upstream again.
                if stored.answers.isEmpty && stored.authorities.isEmpty && stored.additionals.isEmpty
                    && template.recordCount > 0
                {
                    hit = nil
                }
            }
            if let (stored, elapsed) = hit {
                let cached = elapsed == 0 ? stored : stored.aged(by: elapsed)
                let message = Self.response(to: query, from: cached)
                guard let binding else { return respond(message) }
                let plan = Self.guarded(message, binding: binding)
                record.published = plan.elements.map(\.address)
                if plan.elements.isEmpty || !binding.publisher.needsCommit(plan.elements) {
                    return respond(plan.message)
                }
                return .publish(
                    PendingPublish(
                        record: record, elements: plan.elements, answer: .message(plan.message), binding: binding,
                        query: query, maxUDPSize: maxUDP))
            }
            return .forward(
                PendingForward(
                    record: record, query: query, bytes: bytes, question: question, key: key, maxUDPSize: maxUDP,
                    transport: context.transport, binding: binding))
        }
    }

    /// The asynchronous stage: ask upstream, cache, publish, answer.
    func forward(
        _ pending: PendingForward, on loop: any EventLoop, done: @escaping @Sendable (QueryRecord, [UInt8]) -> Void
    ) {
        var asked = pending.record
        asked.upstream = true
        let record = asked
        inflight.add(1, ordering: .relaxed)
        let finished: @Sendable (QueryRecord, [UInt8]) -> Void = { record, response in
            done(record, response)
            self.inflight.subtract(1, ordering: .relaxed)
        }
        forwarder.resolve(pending.question, key: pending.key, verdict: record.action, on: loop) { result in
            switch result {
            case .success(let reply):
                // A plain positive reply is cached and answered from its bytes.
                if case .plain(let plain) = reply, !pending.key.dnssecOK,
                    let (template, lifetime) = Self.template(
                        for: plain, limits: self.cache.limits, binding: pending.binding)
                {
                    self.cache.store(template, lifetime: lifetime, for: pending.key)
                    if self.answer(pending, record: record, from: template, on: loop, done: finished) { return }
                }
                do {
                    self.answer(pending, record: record, with: try reply.decoded(), on: loop, done: finished)
                } catch {
                    self.fail(pending, record: record, error: .failed(.formErr), done: finished)
                }
            case .failure(let error):
                self.fail(pending, record: record, error: error as? ForwardError ?? .unreachable, done: finished)
            }
        }
    }

    /// Caches an upstream's decoded answer and answers the client with it.
    private func answer(
        _ pending: PendingForward, record: QueryRecord, with reply: DNSMessage, on loop: any EventLoop,
        done finished: @escaping @Sendable (QueryRecord, [UInt8]) -> Void
    ) {
        // Minimal responses (as Unbound's minimal-responses): a positive answer keeps its
        // answer section only; the NS and glue an authoritative server adds are of no use
        // to a stub and cost cache memory and bytes on every hit. Negative answers keep
        // their SOA (RFC 2308), and DNSSEC-aware clients get everything (wildcard proofs).
        let minimal = reply.rcode == .noError && !reply.answers.isEmpty && !pending.key.dnssecOK
        let cached = CachedAnswer(
            rcode: reply.rcode, authenticData: reply.authenticData, answers: reply.answers,
            authorities: minimal ? [] : reply.authorities, additionals: minimal ? [] : reply.additionals)
        let question = pending.question
        // A hit needs only the wire form (guarded, with its addresses, under a firewall).
        let binding = pending.binding
        let template = cache.store(cached, for: pending.key, keepRecords: false) { stored in
            Self.template(for: stored, question: question, dnssecOK: pending.key.dnssecOK, binding: binding)
        }
        if let template, answer(pending, record: record, from: template, on: loop, done: finished) { return }
        let message = Self.response(to: pending.query, from: cached)
        guard let binding = pending.binding else {
            return finished(record, Self.fit(message, maxUDP: pending.maxUDPSize))
        }
        let plan = Self.guarded(message, binding: binding)
        var publishing = record
        publishing.published = plan.elements.map(\.address)
        publish(
            PendingPublish(
                record: publishing, elements: plan.elements, answer: .message(plan.message), binding: binding,
                query: pending.query, maxUDPSize: pending.maxUDPSize),
            on: loop, done: finished)
    }

    /// Answers the client from the template just stored, as a hit on it would (no second guard
    /// pass, no message built and encoded), publishing the addresses it lists first. False:
    /// the template cannot answer this query (too big for the client's UDP size, or a
    /// compressed question); answer from the message instead.
    private func answer(
        _ pending: PendingForward, record: QueryRecord, from template: ResponseTemplate, on loop: any EventLoop,
        done finished: @escaping @Sendable (QueryRecord, [UInt8]) -> Void
    ) -> Bool {
        guard
            let response = template.response(
                to: pending.query, bytes: pending.bytes, elapsed: 0, maxSize: pending.maxUDPSize,
                ednsPayload: UInt16(Self.maxUDPPayload))
        else { return false }
        guard let binding = pending.binding else {
            finished(record, response)
            return true
        }
        var publishing = record
        let outcome = Self.release(
            response, of: template, elapsed: 0, binding: binding, record: &publishing, query: pending.query,
            maxUDPSize: pending.maxUDPSize)
        if case .publish(let waiting) = outcome {
            publish(waiting, on: loop, done: finished)
        } else {
            finished(publishing, response)
        }
        return true
    }

    /// How `response`, made from `template` `elapsed` seconds after it was stored, may leave
    /// under `binding`: at once when its addresses are all in their sets for long enough, else
    /// after they are committed. `record` gets the addresses.
    static func release(
        _ response: [UInt8], of template: ResponseTemplate, elapsed: UInt32, binding: FirewallBinding,
        record: inout QueryRecord, query: DNSMessage, maxUDPSize: Int
    ) -> ImmediateOutcome {
        let elements = binding.elements(of: template, elapsed: elapsed)
        record.published = elements.map(\.address)
        if elements.isEmpty || !binding.publisher.needsCommit(elements) { return .respond(response) }
        return .publish(
            PendingPublish(
                record: record, elements: elements, answer: .bytes(response), binding: binding, query: query,
                maxUDPSize: maxUDPSize))
    }

    /// SERVFAIL with the EDE that says why no upstream answer could be used.
    private func fail(
        _ pending: PendingForward, record: QueryRecord, error: ForwardError,
        done finished: @escaping @Sendable (QueryRecord, [UInt8]) -> Void
    ) {
        let ede: ExtendedDNSError
        switch error {
        case .failed(let rcode):
            ede = ExtendedDNSError(ExtendedDNSError.noReachableAuthority, "dnsfence: every upstream answered \(rcode)")
        case .unreachable:
            ede = ExtendedDNSError(ExtendedDNSError.networkError, "dnsfence: no upstream answered")
        }
        var failed = record
        failed.ede = ede
        finished(
            failed, Self.fit(Self.response(to: pending.query, rcode: .servFail, error: ede), maxUDP: pending.maxUDPSize)
        )
    }

    /// Commits the plan's elements (bounded by the binding's timeout), then releases the
    /// answer; on failure the client gets SERVFAIL and never the addresses (fail closed).
    func publish(
        _ pending: PendingPublish, on loop: any EventLoop, done: @escaping @Sendable (QueryRecord, [UInt8]) -> Void
    ) {
        // The batch's timer bounds the wait (conclude runs once, with .timedOut if it fires).
        let binding = pending.binding
        batcher.submit(pending.elements, to: binding.publisher, timeout: binding.commitTimeout, on: loop) { error in
            self.conclude(pending, error: error, done: done)
        }
    }

    /// Releases a pending answer once its commit succeeded, or answers SERVFAIL instead.
    private func conclude(
        _ pending: PendingPublish, error: PublishError?, done: @Sendable (QueryRecord, [UInt8]) -> Void
    ) {
        guard let error else {
            switch pending.answer {
            case .message(let message): return done(pending.record, Self.fit(message, maxUDP: pending.maxUDPSize))
            case .bytes(let bytes): return done(pending.record, bytes)
            }
        }
        logger.warning("publish failed; answering SERVFAIL", metadata: ["error": "\(error)"])
        let ede = ExtendedDNSError(
            ExtendedDNSError.otherError, "dnsfence: firewall update failed (\(error.reasonLabel))")
        var record = pending.record
        record.ede = ede
        record.published = []
        if error == .timedOut { metrics.publishTimeouts.increment() }
        done(
            record, Self.fit(Self.response(to: pending.query, rcode: .servFail, error: ede), maxUDP: pending.maxUDPSize)
        )
    }

    /// The wire form of `stored` as `response(to:from:)` shapes it for a client with this DO
    /// bit (header and OPT are made per query).
    public static func template(
        for stored: CachedAnswer, question: DNSQuestion, dnssecOK: Bool, binding: FirewallBinding? = nil
    ) -> ResponseTemplate? {
        let query = DNSMessage(id: 0, questions: [question], edns: dnssecOK ? EDNS(dnssecOK: true) : nil)
        var message = response(to: query, from: stored)
        message.edns = nil
        message.authenticData = stored.authenticData
        guard let binding else { return ResponseTemplate(message) }
        // Under a firewall the template is the guarded answer; an answer the guard withheld
        // addresses from keeps the message path (it may carry an EDE saying so).
        let plan = AnswerGuard.plan(message, binding: binding)
        guard plan.withheld == 0 else { return nil }
        let published = plan.message.answers.compactMap { record -> PublishedAddress? in
            guard record.type == .a || record.type == .aaaa, let address = record.address else { return nil }
            return PublishedAddress(address: address, ttl: record.ttl)
        }
        return ResponseTemplate(plan.message, published: published)
    }

    static func guarded(_ message: DNSMessage, binding: FirewallBinding) -> AnswerPlan {
        let plan = AnswerGuard.plan(message, binding: binding)
        var out = plan.message
        if plan.withheld > 0, out.answers.allSatisfy({ $0.type == .cname }), out.edns != nil {
            out.edns?.options.append(
                ExtendedDNSError(
                    ExtendedDNSError.filtered, "dnsfence: \(plan.withheld) address(es) withheld by the firewall policy"
                ).option)
        }
        return AnswerPlan(message: out, elements: plan.elements)
    }

    // MARK: Building responses

    /// The UDP payload limit for a client: 512 without EDNS (RFC 1035), else its advertised
    /// size clamped to 512…1232.
    static func udpLimit(_ edns: EDNS?) -> Int { udpLimit(payloadSize: edns?.udpPayloadSize) }

    /// The same from the advertised payload size (nil: no EDNS).
    static func udpLimit(payloadSize: UInt16?) -> Int {
        guard let payloadSize else { return 512 }
        return min(max(Int(payloadSize), 512), maxUDPPayload)
    }

    /// A response skeleton: ID, opcode, RD and CD copied, the question echoed as asked, RA set,
    /// EDNS only for EDNS clients (RFC 6891 7).
    /// The bytes `response(to:rcode:error:)` would encode for a question-only answer, written
    /// directly: header, the question copied verbatim from the query (case as asked), and for
    /// EDNS clients an OPT record with the EDE. Nil when the question is not stored
    /// uncompressed at offset 12.
    static func denial(bytes: [UInt8], query: DNSMessage, rcode: DNSRCode, error: ExtendedDNSError) -> [UInt8]? {
        guard let question = query.questions.first, query.questions.count == 1 else { return nil }
        let questionEnd = 12 + question.name.wire.count + 4
        guard bytes.count >= questionEnd, question.name.isStored(in: bytes, at: 12) else { return nil }
        return bytes.withUnsafeBytes { raw in
            denialBytes(
                id: query.id, flags: query.responseFlags(rcode: rcode, authenticData: false),
                question: UnsafeRawBufferPointer(rebasing: raw[12..<questionEnd]), dnssecOK: query.edns?.dnssecOK,
                error: error)
        }
    }

    /// A denial written in place: the header, `question` (name, type and class as the client
    /// sent them), and for EDNS clients (`dnssecOK` not nil) an OPT record carrying the EDE.
    static func denialBytes(
        id: UInt16, flags: UInt16, question: UnsafeRawBufferPointer, dnssecOK: Bool?, error: ExtendedDNSError
    ) -> [UInt8] {
        let total = denialSize(question: question, dnssecOK: dnssecOK, error: error)
        return [UInt8](unsafeUninitializedCapacity: total) { out, count in
            writeDenial(into: out, id: id, flags: flags, question: question, dnssecOK: dnssecOK, error: error)
            count = total
        }
    }

    /// The size of that denial.
    static func denialSize(question: UnsafeRawBufferPointer, dnssecOK: Bool?, error: ExtendedDNSError) -> Int {
        12 + question.count + (dnssecOK == nil ? 0 : 11 + 4 + 2 + error.extraText.utf8.count)
    }

    /// Writes that denial into `out`, which holds exactly ``denialSize(question:dnssecOK:error:)``
    /// bytes.
    static func writeDenial(
        into out: UnsafeMutableBufferPointer<UInt8>, id: UInt16, flags: UInt16, question: UnsafeRawBufferPointer,
        dnssecOK: Bool?, error: ExtendedDNSError
    ) {
        var text = error.extraText
        let textLength = text.utf8.count
        let optionLength = 2 + textLength  // INFO-CODE + EXTRA-TEXT
        let questionEnd = 12 + question.count
        out.storeHeader(id: id, flags: flags, counts: (1, 0, 0, dnssecOK == nil ? 0 : 1))
        UnsafeMutableRawBufferPointer(start: out.baseAddress! + 12, count: question.count).copyMemory(from: question)
        if let dnssecOK {
            var at = out.storeOPT(
                at: questionEnd, payloadSize: UInt16(maxUDPPayload), dnssecOK: dnssecOK,
                rdataLength: UInt16(4 + optionLength))
            out.storeBigEndian(EDNSOption.extendedErrorCode, at: at)
            out.storeBigEndian(UInt16(optionLength), at: at + 2)
            out.storeBigEndian(error.infoCode, at: at + 4)
            at += 6
            if textLength > 0 {
                text.withUTF8 { utf8 in _ = memcpy(out.baseAddress! + at, utf8.baseAddress!, textLength) }
            }
        }
    }

    static func response(to query: DNSMessage, rcode: DNSRCode, error: ExtendedDNSError? = nil) -> DNSMessage {
        var message = DNSMessage(
            id: query.id, isResponse: true, opcode: query.opcode, recursionDesired: query.recursionDesired,
            recursionAvailable: true, checkingDisabled: query.checkingDisabled, rcode: rcode, questions: query.questions
        )
        if let edns = query.edns {
            message.edns = EDNS(
                udpPayloadSize: UInt16(maxUDPPayload), dnssecOK: edns.dnssecOK,
                options: error.map { [$0.option] } ?? [])
        }
        return message
    }

    static func response(to query: DNSMessage, from cached: CachedAnswer) -> DNSMessage {
        var message = response(to: query, rcode: cached.rcode)
        message.answers = cached.answers
        message.authorities = cached.authorities
        message.additionals = cached.additionals
        // AD only to clients that asked for DNSSEC-aware answers (RFC 6840 5.8).
        message.authenticData = cached.authenticData && query.asksForAuthenticData
        if query.edns?.dnssecOK != true {
            // Checked first: removing nothing would still copy a shared array.
            if message.answers.contains(where: isDNSSEC) { message.answers.removeAll(where: isDNSSEC) }
            if message.authorities.contains(where: isDNSSEC) { message.authorities.removeAll(where: isDNSSEC) }
            if message.additionals.contains(where: isDNSSEC) { message.additionals.removeAll(where: isDNSSEC) }
        }
        return message
    }

    /// Whether a record is DNSSEC data that a client without DO does not get.
    static func isDNSSEC(_ record: DNSRecord) -> Bool {
        switch record.type {
        case .rrsig, .nsec, .nsec3, .ds, .dnskey: return true
        default: return false
        }
    }

    /// RFC 8482 section 4.2: a synthesized HINFO with CPU "RFC8482" and an empty OS.
    static func rfc8482(to query: DNSMessage) -> DNSMessage {
        var message = response(to: query, rcode: .noError)
        let cpu = Array("RFC8482".utf8)
        message.answers = [
            DNSRecord(
                name: query.questions[0].name, type: .hinfo, ttl: 3600,
                rdata: [UInt8(cpu.count)] + cpu + [0])
        ]
        return message
    }

    /// FORMERR/NOTIMP for a message we could not decode: the header only, ID and opcode copied.
    static func headerOnlyResponse(to bytes: [UInt8], rcode: DNSRCode) -> [UInt8] {
        let flags = UInt16(bytes[2] & 0x79) << 8 | 0x0080 | (rcode.rawValue & 0x0F)  // opcode + RD, RA
        return [bytes[0], bytes[1], UInt8(flags >> 8) | 0x80, UInt8(flags & 0xFF), 0, 0, 0, 0, 0, 0, 0, 0]
    }

    /// Encodes `message`; if it exceeds `maxUDP`, sends the question with TC set instead so the
    /// client retries over TCP (RFC 7766 section 5).
    static func fit(_ message: DNSMessage, maxUDP: Int) -> [UInt8] {
        let bytes = message.encoded()
        guard bytes.count > maxUDP else { return bytes }
        var truncated = message
        truncated.truncated = true
        truncated.answers = []
        truncated.authorities = []
        truncated.additionals = []
        return truncated.encoded()
    }
}

/// Lets exactly one of several racing callers through.
final class Once: Sendable {
    private let taken = Atomic<Bool>(false)

    func claim() -> Bool {
        taken.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
    }
}
