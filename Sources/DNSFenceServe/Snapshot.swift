public import DNSFenceCore
public import DNSFenceFirewall
public import DNSFencePolicy
public import DNSFenceResolve
public import DNSFenceWire
import Synchronization

/// Everything a query is decided with, in one immutable value: policies and the client
/// selector, firewall bindings, the answer cache (partitioned by policy name in its keys), the
/// upstreams, metrics and the query log. The loops read it once per query; a reload builds a new one off
/// the loops and swaps it in with one store (``SnapshotStore``): queries in flight finish on
/// the one they read.
public final class Snapshot: Sendable {
    public let selector: ClientPolicySelector
    public let cache: AnswerCache
    public let queryLog: (any QueryLogSink)?
    /// Where passed names are forwarded (a query in flight keeps the forwarder it started with).
    public let forwarder: UpstreamForwarder
    let metrics: QueryMetrics
    /// Bindings by policy name, and the same as two lists for a scan when there are few
    /// (cheaper than hashing the policy name on every answer).
    public let firewalls: [String: FirewallBinding]
    /// Policies whose firewall cannot be used (namespace or sets missing) or whose transferred
    /// zone has nothing to serve (not transferred yet, expired), and why: they fail closed alone, answering SERVFAIL with this EDE where they would hand out addresses.
    public let unavailable: [String: ExtendedDNSError]
    /// What each reason on the firewall's elements stands for: one registry handed from
    /// snapshot to snapshot, so that a reload can tell which elements the new policies keep.
    public let reasons: ReasonRegistry
    /// What clients spent of the tunnel budgets: one ledger handed from snapshot to snapshot.
    public let ledger: TunnelLedger
    /// Per-client UDP rate limits (nil: off).
    public let rateLimiter: RateLimiter?
    /// Answers a NOTIFY (the query's bytes, the client) for the zones kept from primaries; nil
    /// (or a nil answer): NOTIMP.
    public let notify: (@Sendable ([UInt8], IPAddress) -> [UInt8]?)?
    private let firewallPolicies: [String]
    private let firewallBindings: [FirewallBinding]

    public init(
        selector: ClientPolicySelector, cache: AnswerCache, forwarder: UpstreamForwarder,
        firewalls: [String: FirewallBinding] = [:], unavailable: [String: String] = [:],
        queryLog: (any QueryLogSink)? = nil, reasons: ReasonRegistry = ReasonRegistry(),
        ledger: TunnelLedger = TunnelLedger(), rateLimiter: RateLimiter? = nil,
        notify: (@Sendable ([UInt8], IPAddress) -> [UInt8]?)? = nil
    ) {
        self.rateLimiter = rateLimiter
        self.notify = notify
        self.reasons = reasons
        self.ledger = ledger
        self.unavailable = unavailable.mapValues { reason in
            ExtendedDNSError(ExtendedDNSError.otherError, "dnsfence: \(reason)")
        }
        self.selector = selector
        self.forwarder = forwarder
        self.cache = cache
        self.queryLog = queryLog
        self.firewalls = firewalls
        let sorted = firewalls.sorted { $0.key < $1.key }
        firewallPolicies = sorted.map(\.key)
        firewallBindings = sorted.map(\.value)
        metrics = QueryMetrics(policies: selector.entries.keys.sorted())
    }

    /// The firewall binding of the policy named `policy`, if it has one.
    @inline(__always)
    func firewall(for policy: String) -> FirewallBinding? {
        if firewallPolicies.isEmpty { return nil }
        if firewallPolicies.count <= 8 { return firewallPolicies.firstIndex(of: policy).map { firewallBindings[$0] } }
        return firewalls[policy]
    }
}

/// The current snapshot behind a lock: one load per query, one store per swap.
public final class SnapshotStore: Sendable {
    private let current: Mutex<Snapshot>

    public init(_ snapshot: Snapshot) { current = Mutex(snapshot) }

    /// The snapshot to decide the next query with.
    @inline(__always)
    public func load() -> Snapshot { current.withLock { $0 } }

    /// Makes `snapshot` the one the next query reads; returns the one it replaces.
    @discardableResult
    public func swap(_ snapshot: Snapshot) -> Snapshot {
        current.withLock { old in
            defer { old = snapshot }
            return old
        }
    }
}
