public import DNSFenceCore
public import DNSFenceFirewall
public import DNSFencePolicy
public import DNSFenceResolve
public import DNSFenceWire

/// What happens to one query: the one value ``Snapshot/decide(_:context:)`` makes per query,
/// which both renderers (``ByteRenderer``, ``MessageRenderer``) consume and from which the
/// metrics and the query record are written (``Snapshot/observe(_:view:context:rcode:started:)``).
/// Renderers never decide: whatever they write was settled here.
public struct QueryDecision: Sendable, ~Copyable {
    public enum Verdict: Sendable {
        /// Send nothing (a runt, a response, `rpz-drop` or the `drop` deny mode).
        case drop
        /// Undecodable: a header-only answer with this RCODE.
        case malformed(DNSRCode)
        /// A protocol refusal with the question echoed and no EDE: NOTIMP, FORMERR, BADVERS,
        /// REFUSED for a class or type that is never answered.
        case refuse(DNSRCode)
        /// A denial with this RCODE (SERVFAIL, NXDOMAIN, NODATA as NOERROR, REFUSED) and the
        /// decision's ``QueryDecision/ede``.
        case deny(DNSRCode)
        /// Local data (the rule's records, renamed to the name as asked by the renderer);
        /// empty: NODATA. `published`: the addresses the firewall holds for it (empty: none, or
        /// the policy has no firewall or publishes no local data); `commit`: the elements to
        /// commit before the answer is released.
        case localData([DNSRecord], published: [IPAddress], commit: [SetElement])
        /// RFC 8482's answer to ANY for a name that the policy answers.
        case any
        /// Over a client rate limit: TC=1 with the question and no records, so that a real
        /// client retries over TCP (a spoofed one gets no amplification).
        case slip
        /// An answer from the cache (or an upstream's, just stored).
        case hit(CacheHit)
        /// A cache miss of a name the policy passes: ask an upstream under this key.
        case forward(CacheKey)
        /// An answer made elsewhere, sent as it is (a NOTIFY's, by the zone transfers).
        case message([UInt8])
    }

    public var verdict: Verdict
    /// The policy that decided (nil: none selected, or refused before policy). Not retained:
    /// a decision never outlives the snapshot it was made with, which holds the policy (a
    /// pending query keeps its snapshot).
    public var policy: Policy? { policyReference?.takeUnretainedValue() }
    private var policyReference: Unmanaged<Policy>?
    public var action: QueryAction
    public var rule: RuleID?
    /// The Extended DNS Error the answer carries.
    public var ede: ExtendedDNSError?
    /// The firewall binding the policy publishes through, for hits and forwards.
    public var binding: FirewallBinding?
    /// Whether the answer must wait: a forward, or a hit or local data whose addresses need a commit.
    public var waits: Bool

    @inline(__always)
    public init(
        _ verdict: Verdict, policy: Policy? = nil, action: QueryAction = .error, rule: RuleID? = nil,
        ede: ExtendedDNSError? = nil, binding: FirewallBinding? = nil
    ) {
        self.verdict = verdict
        self.policyReference = policy.map { Unmanaged.passUnretained($0) }
        self.action = action
        self.rule = rule
        self.ede = ede
        self.binding = binding
        self.waits = false
    }

    /// A forward: it waits for an upstream.
    static func forward(_ key: CacheKey, policy: Policy, rule: RuleID?, binding: FirewallBinding?) -> QueryDecision {
        var decision = QueryDecision(.forward(key), policy: policy, action: .pass, rule: rule, binding: binding)
        decision.waits = true
        return decision
    }

    /// A hit (or a fresh answer released as one): it waits when its addresses need a commit.
    static func hit(
        _ hit: CacheHit, policy: Policy?, action: QueryAction, rule: RuleID?, ede: ExtendedDNSError?,
        binding: FirewallBinding?
    ) -> QueryDecision {
        let waits = !hit.commit.isEmpty
        var decision = QueryDecision(.hit(hit), policy: policy, action: action, rule: rule, ede: ede, binding: binding)
        decision.waits = waits
        return decision
    }
}

/// The bounded action label of metrics and the query log.
public enum QueryAction: String, Sendable, CaseIterable {
    case pass
    case local
    case deny
    /// Malformed, or refused before policy.
    case error
    /// Would have been denied; answered as allowed because the policy is in audit mode.
    case audit
    /// Over a client rate limit: dropped, or answered TC=1.
    case limited
    /// A NOTIFY for a zone kept from primaries (RFC 1996), answered by the zone transfers.
    case notify

    /// Position among ``allCases`` (the metrics' series index).
    var index: Int {
        switch self {
        case .pass: return 0
        case .local: return 1
        case .deny: return 2
        case .error: return 3
        case .audit: return 4
        case .limited: return 5
        case .notify: return 6
        }
    }
}

/// A cache hit as decided: what answers, and what must be committed before it may go.
public struct CacheHit: Sendable {
    /// The entry: with a usable template, as stored (``elapsed`` is patched into its TTLs);
    /// answered from records, already aged and guarded.
    public var entry: CacheEntry
    public var answer: CachedAnswer { entry.answer }
    public var elapsed: UInt32
    /// Whether the answer is the entry's template (the query's question is stored at offset 12
    /// with the template's length); else its records.
    public var viaTemplate: Bool
    /// Too big for the client's UDP size: TC with no records (RFC 7766 section 5).
    public var truncated: Bool
    /// Elements to commit before the answer is released (empty: it may go now).
    public var commit: [SetElement]
}
