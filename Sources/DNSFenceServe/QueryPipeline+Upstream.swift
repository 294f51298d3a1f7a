import DNSFenceFirewall
import DNSFencePolicy
import DNSFenceRelease
import DNSFenceResolve
import DNSFenceWire
import NIOCore

/// A query that passed policy and missed the cache, on its way upstream. It keeps a copy of the
/// query's bytes and its view, to render the answer when it is back.
public final class PendingForward: Sendable {
    let record: QueryRecord
    let decision: QueryDecision
    let bytes: [UInt8]
    /// The view the query was decided with; its `bytes` are rebased on ``bytes`` before use.
    private let staleView: UnsafeView
    let key: CacheKey
    let snapshot: Snapshot
    let transport: Transport

    init(
        record: QueryRecord, decision: consuming QueryDecision, view: QueryView, key: CacheKey, snapshot: Snapshot,
        transport: Transport
    ) {
        self.record = record
        self.decision = decision
        self.bytes = Array(view.bytes)
        self.staleView = UnsafeView(view)
        self.key = key
        self.snapshot = snapshot
        self.transport = transport
    }

    /// Runs `body` with the query's view over the kept bytes.
    func withView<R>(_ body: (QueryView) -> R) -> R {
        bytes.withUnsafeBytes { body(staleView.view.rebased(on: $0)) }
    }
}

/// A view whose bytes pointer is never read until rebased on a live copy of the same bytes.
struct UnsafeView: @unchecked Sendable {
    // @unchecked Sendable: the view's only reference-like field is the borrowed pointer, which
    // PendingForward never dereferences before rebasing it on its own immutable copy; the
    // decoded message it may hold is an immutable object.
    let view: QueryView
    init(_ view: QueryView) { self.view = view }
}

extension QueryPipeline {
    /// Asks upstream, caches, then releases the answer as a hit on it would be released.
    func forward(
        _ pending: PendingForward, on loop: any EventLoop,
        done: @escaping @Sendable (Snapshot, QueryRecord, [UInt8]) -> Void
    ) {
        var asked = pending.record
        asked.upstream = true
        let record = asked
        inflight.add(1, ordering: .relaxed)
        let finished: @Sendable (Snapshot, QueryRecord, [UInt8]) -> Void = { snapshot, record, response in
            done(snapshot, record, response)
            self.inflight.subtract(1, ordering: .relaxed)
        }
        // Asked as the key says (ANY is asked as A).
        var question = record.question!
        question.type = pending.key.type
        pending.snapshot.forwarder.resolve(question, key: pending.key, verdict: record.action, on: loop) { result in
            switch result {
            case .success(let reply):
                switch self.store(reply, for: pending) {
                case .answer(let answer):
                    self.release(answer, for: pending, record: record, on: loop, done: finished)
                case .undecodable:
                    self.fail(pending, record: record, error: .failed(.formErr), done: finished)
                case .refused(let rcode, let ede, let rule):
                    self.refuse(pending, record: record, rcode: rcode, ede: ede, rule: rule, done: finished)
                }
            case .failure(let error):
                if let stale = pending.snapshot.cache.stale(pending.key),
                    let entry = self.staleEntry(stale, for: pending)
                {
                    self.release(entry, for: pending, record: record, on: loop, ede: Self.staleAnswer, done: finished)
                } else {
                    self.fail(pending, record: record, error: error as? ForwardError ?? .unreachable, done: finished)
                }
            }
        }
    }

    /// What became of an upstream's reply.
    private enum Stored {
        case answer(CacheEntry)
        case undecodable
        /// Its CNAME chain ran into a name the policy denies (the denial, for that name's rule)
        /// or was broken (SERVFAIL): nothing of it is cached or handed out.
        case refused(DNSRCode, ExtendedDNSError, RuleID?)
    }

    /// The policy's verdict on a reply's CNAME chain (see ``Policy/judgeChain``); nil: follow it.
    private func chainRefusal(_ targets: [[UInt8]?], for pending: PendingForward) -> Stored? {
        guard !targets.isEmpty, let policy = pending.decision.policy else { return nil }
        switch policy.judgeChain(question: pending.key.name.wire, targets: targets, type: pending.key.type) {
        case .follow:
            return nil
        case .denied(let response, let ede, let rule):
            if policy.audits(rule) { return nil }
            return .refused(response.rcode ?? .nxDomain, ede, rule)
        case .broken(let why):
            return .refused(.servFail, ExtendedDNSError(ExtendedDNSError.otherError, "dnsfence: \(why)"), nil)
        }
    }

    /// Caches an upstream's reply and returns the answer to release: a plain positive reply is
    /// cached and answered from its bytes, anything else decoded first. A reply whose CNAME
    /// chain the policy refuses is neither cached nor released.
    private func store(_ reply: UpstreamReply, for pending: PendingForward) -> Stored {
        let cache = pending.snapshot.cache
        let binding = pending.decision.binding
        // Under a firewall, the addresses carry why they are handed out (for revocation).
        let reason =
            binding == nil
            ? 0
            : reasons.reason(
                policy: pending.key.policy, name: pending.key.name.wire,
                now: QueryRecord.monotonicNow() / 1_000_000_000)
        if case .plain(let plain) = reply, plain.answers.contains(where: { $0.type == .cname }),
            let refused = chainRefusal(plain.cnameTargets, for: pending)
        {
            return refused
        }
        if case .plain(let plain) = reply, !pending.key.dnssecOK, pending.withView({ $0.questionEnd != 0 }),
            let (wire, lifetime) = WireAnswerBuilder.wire(for: plain, limits: cache.limits, binding: binding)
        {
            // Not cached (a cache of size 0): released all the same.
            return .answer(
                cache.store(wire, lifetime: lifetime, for: pending.key, reason: reason)
                    ?? CacheEntry(CachedAnswer(wire: wire, reason: reason)))
        }
        guard let message = try? reply.decoded() else { return .undecodable }
        if case .message = reply,
            let refused = chainRefusal(
                message.answers.filter { $0.type == .cname }.map { $0.target?.wire }, for: pending)
        {
            return refused
        }
        // Minimal responses (as Unbound's minimal-responses): a positive answer keeps its
        // answer section only; the NS and glue an authoritative server adds are of no use
        // to a stub and cost cache memory and bytes on every hit. Negative answers keep
        // their SOA (RFC 2308), and DNSSEC-aware clients get everything (wildcard proofs).
        let minimal = message.rcode == .noError && !message.answers.isEmpty && !pending.key.dnssecOK
        var answer = CachedAnswer(
            rcode: message.rcode, authenticData: message.authenticData, answers: message.answers,
            authorities: minimal ? [] : message.authorities, additionals: minimal ? [] : message.additionals)
        answer.reason = reason
        let question = pending.record.question!
        // A hit needs only the wire form (guarded, with its addresses, under a firewall).
        let wire = cache.store(answer, for: pending.key, keepRecords: false) { stored in
            WireAnswerBuilder.wire(for: stored, question: question, dnssecOK: pending.key.dnssecOK, binding: binding)
        }
        answer.template = wire?.template
        answer.addresses = wire?.addresses ?? []
        return .answer(CacheEntry(answer))
    }

    /// Releases a fresh answer: the decision a hit on it would take (``Snapshot/hit``), rendered,
    /// after a commit where the firewall needs one.
    private func release(
        _ answer: CacheEntry, for pending: PendingForward, record: QueryRecord, on loop: any EventLoop,
        ede extra: ExtendedDNSError? = nil, done: @escaping @Sendable (Snapshot, QueryRecord, [UInt8]) -> Void
    ) {
        let snapshot = pending.snapshot
        let waiting: PendingPublish? = pending.withView { view in
            let binding = pending.decision.binding
            var released = record
            guard
                let (hit, withheld) = Snapshot.hit(
                    answer, elapsed: 0, view: view, transport: pending.transport, binding: binding)
            else {
                let maxSize = Self.maxSize(view, pending.transport)
                done(
                    snapshot, record,
                    MessageRenderer.render(QueryDecision(.refuse(.servFail)), view: view, maxSize: maxSize) ?? [])
                return nil
            }
            let ede = withheld ?? extra
            let decision = QueryDecision.hit(
                hit, policy: pending.decision.policy, action: pending.decision.action, rule: pending.decision.rule,
                ede: ede, binding: binding)
            released.ede = ede
            if decision.binding != nil { released.published = hit.answer.addresses.map(\.address) }
            let response = render(decision, view: view, transport: pending.transport)
            guard let binding = decision.binding, !hit.commit.isEmpty else {
                done(snapshot, released, response)
                return nil
            }
            return PendingPublish(
                record: released, elements: hit.commit, response: response, binding: binding,
                origin: .forward(pending), snapshot: snapshot, transport: pending.transport)
        }
        if let waiting { publish(waiting, on: loop, done: done) }
    }

    static let staleAnswer = ExtendedDNSError(
        ExtendedDNSError.staleAnswer, "dnsfence: every upstream failed; an expired answer (RFC 8767)")

    /// Serve-stale (RFC 8767): the expired answer as a fresh one whose records all have TTL 30,
    /// kept as records (so that it carries EDE 3 and its addresses are guarded and published
    /// like any answer's, for 30 s), not cached. Nil if its wire form cannot be read back.
    private func staleEntry(_ stale: CachedAnswer, for pending: PendingForward) -> CacheEntry? {
        var message = DNSMessage(
            id: 0, isResponse: true, rcode: stale.rcode, questions: [], answers: stale.answers,
            authorities: stale.authorities, additionals: stale.additionals)
        if stale.answers.isEmpty, let template = stale.template {
            // Kept in wire form only: read the records back from the answer it makes.
            let bytes = pending.withView { view in
                template.response(
                    to: view.message, bytes: Array(view.bytes), elapsed: 0, maxSize: 65535,
                    ednsPayload: UInt16(DNSMessage.advertisedPayload))
            }
            guard let bytes, let decoded = try? DNSMessage(decoding: bytes) else { return nil }
            message = decoded
        }
        func fresh(_ records: [DNSRecord]) -> [DNSRecord] {
            records.filter { $0.type != .opt }.map {
                var record = $0
                record.ttl = 30
                return record
            }
        }
        var answer = CachedAnswer(
            rcode: .noError, authenticData: false, answers: fresh(message.answers),
            authorities: fresh(message.authorities), additionals: fresh(message.additionals))
        if pending.decision.binding != nil {
            answer.reason = reasons.reason(
                policy: pending.key.policy, name: pending.key.name.wire, now: QueryRecord.monotonicNow() / 1_000_000_000
            )
        }
        return CacheEntry(answer)
    }

    /// Answers a forward whose reply the policy refused: its denial (or SERVFAIL), recorded as a
    /// denial under the rule that refused it.
    private func refuse(
        _ pending: PendingForward, record: QueryRecord, rcode: DNSRCode, ede: ExtendedDNSError, rule: RuleID?,
        done: @escaping @Sendable (Snapshot, QueryRecord, [UInt8]) -> Void
    ) {
        var refused = record
        refused.action = QueryAction.deny.rawValue
        refused.rule = rule
        answer(pending, record: refused, rcode: rcode, ede: ede, done: done)
    }

    /// SERVFAIL with the EDE that says why no upstream answer could be used; remembered for
    /// the cache's failure time.
    private func fail(
        _ pending: PendingForward, record: QueryRecord, error: ForwardError,
        done: @escaping @Sendable (Snapshot, QueryRecord, [UInt8]) -> Void
    ) {
        let ede: ExtendedDNSError
        switch error {
        case .failed(let rcode):
            ede = ExtendedDNSError(ExtendedDNSError.noReachableAuthority, "dnsfence: every upstream answered \(rcode)")
        case .unreachable:
            ede = ExtendedDNSError(ExtendedDNSError.networkError, "dnsfence: no upstream answered")
        }
        // Client retries within the next seconds are answered from the cache (RFC 9520).
        pending.snapshot.cache.storeFailure(for: pending.key)
        answer(pending, record: record, rcode: .servFail, ede: ede, done: done)
    }

    /// Answers a forward with `rcode` and `ede` instead of its upstream's answer.
    private func answer(
        _ pending: PendingForward, record: QueryRecord, rcode: DNSRCode, ede: ExtendedDNSError,
        done: @escaping @Sendable (Snapshot, QueryRecord, [UInt8]) -> Void
    ) {
        var answered = record
        answered.ede = ede
        let response = pending.withView { view in
            MessageRenderer.render(
                QueryDecision(.deny(rcode), ede: ede), view: view, maxSize: Self.maxSize(view, pending.transport))
        }
        done(pending.snapshot, answered, response ?? [])
    }
}
