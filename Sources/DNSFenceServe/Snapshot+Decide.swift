import DNSFenceCore
import DNSFenceFirewall
import DNSFencePolicy
import DNSFenceRelease
import DNSFenceResolve
public import DNSFenceWire

extension Snapshot {
    /// The one decision for one query: the client's rate limit, validation, client → policy, the policy's verdict, the
    /// firewall's family check and the cache, in that order. Every path asks this, once per
    /// query; renderers and the upstream stage only carry it out.
    @inline(__always)
    public func decide(_ view: QueryView, context: QueryContext) -> QueryDecision {
        if let rateLimiter, context.transport == .udp {
            switch rateLimiter.check(context.client) {
            case .admit: break
            case .drop: return QueryDecision(.drop, action: .limited)
            case .slip: return QueryDecision(.slip, action: .limited)
            }
        }
        guard view.opcode == .query else {
            // RFC 1996: a NOTIFY for a zone kept from primaries; NOTIMP for any other opcode.
            if view.opcode == .notify, let notify, let answer = notify(Array(view.bytes), context.client) {
                return QueryDecision(.message(answer), action: .notify)
            }
            return QueryDecision(.refuse(.notImp))
        }
        guard view.questionCount == 1 else { return QueryDecision(.refuse(.formErr)) }
        // RFC 8945 5.2: signed with a key we do not have (we have none): NOTAUTH/BADKEY, and the
        // query is never answered, let alone forwarded, as if it were unsigned.
        if !view.isPlain, view.message.additionals.contains(where: { $0.type == .tsig }) {
            return QueryDecision(.refuse(.notAuth))
        }
        // RFC 6891 6.1.3: BADVERS, with our highest version (0) in the OPT record.
        if view.ednsPayload != nil, view.ednsVersion != 0 { return QueryDecision(.refuse(.badVers)) }
        let type = view.type
        guard view.rrClass == .in, type != .axfr, type != .ixfr, type != .opt else {
            return QueryDecision(.refuse(.refused))
        }
        guard let policy = selector.select(client: context.client, listenerPolicy: context.listenerPolicy) else {
            return QueryDecision(.deny(.refused), ede: Self.noPolicy)
        }
        // RFC 8482: ANY is asked as if for A. A passed name is answered with its A records
        // (one RRset, section 4.1), asked upstream as A, so that a name that does not exist gets
        // NXDOMAIN; local data gets the synthesized HINFO (section 4.2); a denial is a denial.
        let asked = type == .any ? DNSType.a : type
        switch view.withName({ policy.decide(wire: $0, type: asked) }) {
        case .deny(let response, let error, let rule):
            if policy.audits(rule) {
                // Audit mode: answered as allowed (and published), recorded as a would-be
                // denial under the rule (or the default) that would have denied it.
                var decision = passed(view, as: asked, context: context, policy: policy, rule: rule, budget: nil)
                if decision.action == .pass { decision.action = .audit }
                return decision
            }
            return Self.denial(response, policy: policy, rule: rule, ede: error)
        case .localData(let records, let rule):
            if type == .any { return QueryDecision(.any, policy: policy, action: .local, rule: rule) }
            return local(records, view: view, policy: policy, rule: rule)
        case .pass(let rule, let budget):
            return passed(view, as: asked, context: context, policy: policy, rule: rule, budget: budget)
        }
    }

    /// A name the policy passes: NODATA for a family its firewall has no set for, else the
    /// cache's answer, or a forward if the rule's tunnel budget allows it (a cache hit carries
    /// nothing out, so it costs nothing).
    @inline(__always)
    private func passed(
        _ view: QueryView, as type: DNSType, context: QueryContext, policy: Policy, rule: RuleID?, budget: RuleBudget?
    ) -> QueryDecision {
        // Fail closed: a policy whose sets cannot be used hands out no address.
        if !unavailable.isEmpty, let ede = unavailable[policy.name] {
            return QueryDecision(.deny(.servFail), policy: policy, action: .pass, rule: rule, ede: ede)
        }
        let binding = firewall(for: policy.name)
        if let binding, (type == .a && binding.ipv4 == nil) || (type == .aaaa && binding.ipv6 == nil) {
            // Address-family coherence: never hand out a family the firewall has no set for.
            return QueryDecision(
                .deny(.noError), policy: policy, action: .pass, rule: rule, ede: Self.noSet(policy, type))
        }
        let key = CacheKey(
            policy: policy.name, lowercasedName: DNSName(uncheckedWire: view.lowercasedName), type: type,
            dnssecOK: view.dnssecOK, checkingDisabled: view.checkingDisabled)
        if let (entry, elapsed) = cache.lookupEntry(key),
            let (hit, ede) = Self.hit(
                entry, elapsed: elapsed, view: view, transport: context.transport, binding: binding)
        {
            return .hit(hit, policy: policy, action: .pass, rule: rule, ede: ede, binding: binding)
        }
        if let budget,
            let limit = ledger.charge(budget, policy: policy.name, client: context.client, name: key.name.wire)
        {
            return overBudget(budget, limit, policy: policy, rule: rule)
        }
        return .forward(key, policy: policy, rule: rule, binding: binding)
    }

    /// A forward the tunnel budget refuses: the policy's denial, with EDE 15 naming the budget.
    @inline(never)
    private func overBudget(_ budget: RuleBudget, _ limit: BudgetLimit, policy: Policy, rule: RuleID?) -> QueryDecision
    {
        let ede = ExtendedDNSError(ExtendedDNSError.blocked, policy.budgetText(budget, limit))
        return Self.denial(policy.denyResponse, policy: policy, rule: rule, ede: ede)
    }

    /// A denial answered with `response` (nothing at all for `drop`).
    @inline(__always)
    private static func denial(_ response: DenyResponse, policy: Policy, rule: RuleID?, ede: ExtendedDNSError)
        -> QueryDecision
    {
        guard let rcode = response.rcode else {
            return QueryDecision(.drop, policy: policy, action: .deny, rule: rule, ede: ede)
        }
        return QueryDecision(.deny(rcode), policy: policy, action: .deny, rule: rule, ede: ede)
    }

    /// Local data: under a firewall that publishes it (`publish-local`, the default), its
    /// addresses are committed to the sets before the answer goes, like an upstream's, with the
    /// rewrite as their reason (so a reload that changes or removes it revokes them); a policy
    /// whose sets cannot be used answers SERVFAIL. Records are never given a TTL above the
    /// binding's max-ttl.
    @inline(never)
    private func local(_ records: [DNSRecord], view: QueryView, policy: Policy, rule: RuleID) -> QueryDecision {
        if !unavailable.isEmpty, let ede = unavailable[policy.name] {
            return QueryDecision(.deny(.servFail), policy: policy, action: .local, rule: rule, ede: ede)
        }
        guard let binding = firewall(for: policy.name), binding.publishesLocal else {
            return QueryDecision(
                .localData(records, published: [], commit: []), policy: policy, action: .local, rule: rule)
        }
        var records = records
        var addresses: [AnswerAddress] = []
        for i in records.indices {
            records[i].ttl = min(records[i].ttl, binding.maxTTL)
            if let address = records[i].address, binding.target(ipv6: !address.isIPv4) != nil {
                addresses.append(AnswerAddress(address: address, ttl: records[i].ttl))
            }
        }
        let published = addresses.map(\.address)
        guard !addresses.isEmpty else {
            return QueryDecision(
                .localData(records, published: [], commit: []), policy: policy, action: .local, rule: rule)
        }
        let reason = reasons.reason(
            policy: policy.name, name: view.lowercasedName, local: published.sorted(),
            now: QueryRecord.monotonicNow() / 1_000_000_000)
        let commit =
            binding.allowsRelease(of: addresses, elapsed: 0, reason: reason)
            ? [] : binding.elements(of: addresses, elapsed: 0, reason: reason)
        var decision = QueryDecision(
            .localData(records, published: published, commit: commit), policy: policy, action: .local, rule: rule,
            binding: binding)
        decision.waits = !commit.isEmpty
        return decision
    }

    /// How `entry`, `elapsed` seconds after it was stored, answers `view` under `binding`:
    /// the cache hit (and the EDE it carries, if the firewall withheld addresses), or nil when
    /// the entry cannot answer this query (kept in wire form only, and the query's question is
    /// not where the template can copy it). Also how a fresh upstream answer is released,
    /// with `elapsed` 0: hits and fresh answers take the same decision.
    static func hit(
        _ entry: CacheEntry, elapsed: UInt32, view: QueryView, transport: Transport, binding: FirewallBinding?
    ) -> (CacheHit, ExtendedDNSError?)? {
        // The template, without copying the rest of the entry.
        if let template = entry.answer.template {
            let maxSize = transport == .udp ? DNSMessage.udpLimit(payloadSize: view.ednsPayload) : 65535
            if template.size(edns: view.ednsPayload != nil) > maxSize {
                return (CacheHit(entry: entry, elapsed: elapsed, viaTemplate: true, truncated: true, commit: []), nil)
            }
            if view.questionEnd - 12 == template.questionLength {
                var commit: [SetElement] = []
                let reason = entry.answer.reason
                if let binding, !binding.allowsRelease(of: entry.answer.addresses, elapsed: elapsed, reason: reason) {
                    commit = binding.elements(of: entry.answer.addresses, elapsed: elapsed, reason: reason)
                }
                return (
                    CacheHit(entry: entry, elapsed: elapsed, viaTemplate: true, truncated: false, commit: commit), nil
                )
            }
            // Kept in wire form only and not usable for this query: ask upstream again.
            let stored = entry.answer
            if stored.answers.isEmpty && stored.authorities.isEmpty && stored.additionals.isEmpty
                && template.recordCount > 0
            {
                return nil
            }
        }
        return recordsHit(entry, elapsed: elapsed, view: view, binding: binding)
    }

    /// A hit answered from the entry's records (aged; guarded under a firewall).
    @inline(never)
    private static func recordsHit(
        _ entry: CacheEntry, elapsed: UInt32, view: QueryView, binding: FirewallBinding?
    ) -> (CacheHit, ExtendedDNSError?)? {
        let stored = entry.answer
        let aged = elapsed == 0 ? stored : stored.aged(by: elapsed)
        guard let binding else {
            return (
                CacheHit(entry: CacheEntry(aged), elapsed: 0, viaTemplate: false, truncated: false, commit: []), nil
            )
        }
        // The records, guarded: only what the firewall lets through, and what it must hold first.
        let query = view.message
        let plan = AnswerGuard.plan(aged.response(to: query), binding: binding)
        var guarded = aged
        guarded.answers = plan.message.answers
        guarded.authorities = plan.message.authorities
        guarded.additionals = plan.message.additionals
        guarded.template = nil
        guarded.addresses = plan.addresses
        var ede: ExtendedDNSError? = nil
        if plan.withheld > 0, guarded.answers.allSatisfy({ $0.type == .cname }), view.ednsPayload != nil {
            ede = ExtendedDNSError(
                ExtendedDNSError.filtered, "dnsfence: \(plan.withheld) address(es) withheld by the firewall policy")
        }
        let elements = binding.elements(of: plan.addresses, elapsed: 0, reason: stored.reason)
        let commit = elements.isEmpty || !binding.publisher.needsCommit(elements) ? [] : elements
        return (
            CacheHit(entry: CacheEntry(guarded), elapsed: 0, viaTemplate: false, truncated: false, commit: commit), ede
        )
    }

    private static let noPolicy = ExtendedDNSError(ExtendedDNSError.prohibited, "dnsfence: no policy for this client")

    private static func noSet(_ policy: Policy, _ type: DNSType) -> ExtendedDNSError {
        ExtendedDNSError(
            ExtendedDNSError.filtered, "dnsfence: policy \(policy.name) has no \(type == .a ? "IPv4" : "IPv6") set")
    }
}
