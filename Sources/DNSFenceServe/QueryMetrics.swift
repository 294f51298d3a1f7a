import CoreMetrics
import DNSFenceWire

/// The serve layer's metrics, made with each snapshot, with fixed label sets (never a query name
/// or a client address as a label). Names follow Prometheus conventions; docs/metrics.md lists them.
final class QueryMetrics: Sendable {
    static let qtypes: [DNSType] = [.a, .aaaa, .cname, .https, .svcb, .txt, .mx, .ptr, .srv, .ns, .soa, .any]
    /// The action labels, in ``QueryAction/index`` order.
    static let actions = QueryAction.allCases.map(\.rawValue)
    static let rcodes: [DNSRCode] = [.noError, .formErr, .servFail, .nxDomain, .notImp, .refused, .badVers]
    static let edeCodes: [UInt16] = [0, 3, 14, 15, 17, 18, 22, 23]

    /// The query counters of this snapshot's policies (and "(none)", last), by position.
    private let queries: [QueryCounters.Block]
    private let policyNames: [String]
    /// Position by policy name, for when there are too many names to scan.
    private let policyIndex: [String: Int]
    /// Series index by query type for types below 256 (all the named ones): an array read, not
    /// a hash per query.
    private let typeIndex: [Int]
    /// By RCODE 0…15 (the other-counter where an RCODE has no series of its own).
    private let responses: [Counter]
    private let responsesOther: Counter
    private let dropped: Counter
    /// By action index.
    private let latency: [LatencyHistogram]
    /// Bucket bounds of `dnsfence_query_duration_seconds`: 50 µs … 2.5 s.
    static let latencyBounds: [Int64] = [
        50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000, 50_000_000,
        100_000_000, 250_000_000, 500_000_000, 1_000_000_000, 2_500_000_000,
    ]
    private let ede: [UInt16: Counter]
    private let edeOther: Counter
    /// Commits the pipeline gave up waiting for (the publisher counts its own failures).
    let publishTimeouts = Counter(label: "dnsfence_nft_failures_total", dimensions: [("reason", "timeout")])

    init(policies: [String]) {
        let policyNames = policies + [QueryCounters.noPolicy]
        queries = QueryCounters.shared.blocks(for: policyNames)
        policyIndex =
            policyNames.count > 8 ? Dictionary(zip(policyNames, policyNames.indices)) { first, _ in first } : [:]
        self.policyNames = policyNames
        var typeIndex = Array(repeating: Self.qtypes.count, count: 256)
        for (index, type) in Self.qtypes.enumerated() {
            precondition(type.rawValue < 256, "qtype series must be below 256")
            typeIndex[Int(type.rawValue)] = index
        }
        self.typeIndex = typeIndex
        let other = Counter(label: "dnsfence_responses_total", dimensions: [("rcode", "other")])
        var responses = Array(repeating: other, count: 16)
        for rcode in Self.rcodes where rcode.rawValue < 16 {
            responses[Int(rcode.rawValue)] = Counter(
                label: "dnsfence_responses_total", dimensions: [("rcode", rcode.description)])
        }
        self.responses = responses
        responsesOther = other
        dropped = Counter(label: "dnsfence_responses_total", dimensions: [("rcode", "dropped")])
        latency = Self.actions.map {
            LatencyHistogram(
                name: "dnsfence_query_duration_seconds", labels: "action=\"\($0)\"", bounds: Self.latencyBounds)
        }
        var ede: [UInt16: Counter] = [:]
        for code in Self.edeCodes {
            ede[code] = Counter(label: "dnsfence_ede_total", dimensions: [("code", String(code))])
        }
        self.ede = ede
        edeOther = Counter(label: "dnsfence_ede_total", dimensions: [("code", "other")])
    }

    /// Records one finished query with its response's RCODE (low four bits; nil: no response
    /// was sent).
    func record(
        transport: Transport, qtype: DNSType?, policy: String?, action: QueryAction, rcode: UInt8?, started: UInt64
    ) {
        let t = transport == .udp ? 0 : 1
        let q = qtype.map { $0.rawValue < 256 ? typeIndex[Int($0.rawValue)] : Self.qtypes.count } ?? Self.qtypes.count
        // Few policies: a scan of short strings beats hashing one.
        let p =
            policy.flatMap { name in
                policyIndex.isEmpty ? policyNames.firstIndex(of: name) : policyIndex[name]
            } ?? policyNames.count - 1
        let a = action.index
        queries[p].increment(transport: t, type: q, action: a)
        let now = QueryRecord.monotonicNow()
        latency[a].record(nanoseconds: Int64(now > started ? now - started : 0))
        guard let rcode else {
            dropped.increment()
            return
        }
        responses[Int(rcode & 0x0F)].increment()
    }

    /// `dnsfence_query_duration_seconds` and `dnsfence_queries_total` in Prometheus text (with
    /// their `# TYPE` lines).
    func exposition() -> String {
        var out = "# TYPE dnsfence_query_duration_seconds histogram\n"
        for histogram in latency { histogram.render(into: &out) }
        QueryCounters.shared.render(into: &out)
        return out
    }

    /// Counts an Extended DNS Error sent.
    func recordEDE(_ code: UInt16) {
        (ede[code] ?? edeOther).increment()
    }
}
