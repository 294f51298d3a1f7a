import CoreMetrics
import DNSFenceConfig
import DNSFenceFirewall
import DNSFenceIO
import DNSFenceObserve
import DNSFenceResolve
import DNSFenceServe
import DNSFenceWire
import Metrics
import Prometheus
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The executable's side of observability: it alone bootstraps the metrics backend and wires
/// the query log and readiness checks (STYLE.md habit 14).
enum Observability {
    static let version = "0.1.0"
    /// `dnsfence --version`: the version and the commit it was built from.
    static let versionLine = "\(version) (commit \(buildCommit))"

    /// Prometheus as the swift-metrics backend, with histogram buckets that suit DNS latencies
    /// (the query latency histogram itself is the pipeline's own, lock-free).
    static func bootstrapMetrics() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
            .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
        ]
        MetricsSystem.bootstrap(factory)
        return registry
    }

    /// HELP text for every metric family (swift-metrics carries none); docs/metrics.md says more.
    static let help: [String: String] = [
        "dnsfence_build_info": "Build information; always 1.",
        "dnsfence_queries_total": "Queries received, by transport, query type, policy and action.",
        "dnsfence_responses_total": "Responses sent, by RCODE (dropped: no response).",
        "dnsfence_query_duration_seconds": "Time from receiving a query to its answer, by action.",
        "dnsfence_ede_total": "Extended DNS Errors sent, by INFO-CODE.",
        "dnsfence_upstream_queries_total":
            "Questions sent upstream, by the policy verdict that sent them; deny must stay 0.",
        "dnsfence_upstream_responses_total": "Upstream exchanges, by upstream and result.",
        "dnsfence_cache_hits_total": "Answers served from the cache.",
        "dnsfence_cache_misses_total": "Cache lookups that found nothing usable.",
        "dnsfence_cache_evictions_total": "Cache entries evicted to stay within max-entries.",
        "dnsfence_cache_entries": "Answers in the cache.",
        "dnsfence_nft_batches_total": "nftables transactions committed.",
        "dnsfence_nft_elements_total": "Set elements written (added or refreshed).",
        "dnsfence_nft_batch_duration_seconds": "Duration of one nftables transaction.",
        "dnsfence_nft_failures_total": "Publishes that failed, by reason; each answered SERVFAIL.",
        "dnsfence_nft_elements_revoked_total":
            "Set elements deleted by a reload because only names no longer allowed justified them.",
        "dnsfence_conntrack_entries_cut_total":
            "Conntrack entries of flows to revoked addresses deleted (firewall revoke: connections).",
        "dnsfence_policy_rules": "Rules in each policy.",
        "dnsfence_policy_reloads_total": "Policy reloads, by result.",
        "dnsfence_querylog_dropped_total": "Query log lines dropped because the writer fell behind.",
        "dnsfence_querylog_lines_total": "Query log lines written, held back by repeat-limit, or over the byte budget.",
        "dnsfence_udp_dropped_total": "UDP datagrams dropped by dnsfence, by reason.",
        "dnsfence_rate_limit_shed_total":
            "Datagrams from clients over their rate limit dropped in the kernel, before dnsfence read them.",
        "dnsfence_tcp_refused_total": "TCP connections refused because the descriptor table was full.",
    ]

    /// `# HELP name text\n` lines, as bytes, by family name.
    static let helpLines: [String: [UInt8]] = help.mapValues { _ in [] }.reduce(into: [:]) { out, entry in
        out[entry.key] = Array("# HELP \(entry.key) \(help[entry.key] ?? "")\n".utf8)
    }

    /// The registry's exposition (and `extra` families rendered elsewhere, such as the query
    /// latency histogram) with a `# HELP` line before each family's `# TYPE` line,
    /// worked on bytes (a scrape must stay cheap: it shares the CPU with DNS serving).
    static func exposition(_ registry: PrometheusCollectorRegistry, extra: String = "") -> [UInt8] {
        let text = registry.emitToBuffer() + Array(extra.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.count + 4096)
        let marker = Array("# TYPE ".utf8)
        var lineStart = 0
        while lineStart < text.count {
            var lineEnd = lineStart
            while lineEnd < text.count && text[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
            if lineEnd - lineStart > marker.count, text[lineStart..<(lineStart + marker.count)].elementsEqual(marker) {
                var nameEnd = lineStart + marker.count
                while nameEnd < lineEnd && text[nameEnd] != UInt8(ascii: " ") { nameEnd += 1 }
                let name = String(decoding: text[(lineStart + marker.count)..<nameEnd], as: UTF8.self)
                if let help = helpLines[name] { out.append(contentsOf: help) }
            }
            out.append(contentsOf: text[lineStart..<min(lineEnd + 1, text.count)])
            lineStart = lineEnd + 1
        }
        return out
    }

    /// `dnsfence_rate_limit_shed_total`: datagrams the rate limiter's kernel filter dropped
    /// (absent when the filter could not be loaded). Read from its map at each scrape; its
    /// `# HELP` line comes from ``help``, as for every family.
    static func shedExposition(_ shedder: KernelShedder?) -> String {
        guard let shedder else { return "" }
        return """
            # TYPE dnsfence_rate_limit_shed_total counter
            dnsfence_rate_limit_shed_total \(shedder.dropped)

            """
    }

    /// Gauges that describe the configuration that started.
    static func recordStartup(_ compiled: CompiledConfiguration) {
        Gauge(label: "dnsfence_build_info", dimensions: [("version", version), ("commit", buildCommit)]).record(1)
        recordPolicies(compiled)
        // Both series exist from the start, so alerts on failures can be written before one.
        _ = Counter(label: "dnsfence_policy_reloads_total", dimensions: [("result", "success")])
        _ = Counter(label: "dnsfence_policy_reloads_total", dimensions: [("result", "failure")])
    }

    /// The rule count of each policy now serving (at start and after each reload).
    static func recordPolicies(_ compiled: CompiledConfiguration) {
        for (name, entry) in compiled.selector.entries {
            Gauge(label: "dnsfence_policy_rules", dimensions: [("policy", name)]).record(entry.policy.rules.count)
        }
    }

    /// The query log sink for `mode`, writing JSON lines through `writer`.
    static func queryLog(_ mode: QueryLogMode, writer: QueryLogWriter) -> (any QueryLogSink)? {
        guard mode != .off else { return nil }
        return JSONQueryLog(writer: writer, deniedOnly: mode == .denied)
    }

    /// Why the server is not ready: listeners, sets, upstreams.
    static func readiness(ready: ReadyFlag, forwarder: UpstreamForwarder, firewalls: [String: FirewallBinding]) async
        -> [String]
    {
        var reasons: [String] = []
        if !ready.isSet { reasons.append("listeners not bound") }
        for (policy, binding) in firewalls.sorted(by: { $0.key < $1.key }) {
            guard let publisher = binding.publisher as? NftablesSetPublisher else { continue }
            let problems = await publisher.verify([binding.ipv4, binding.ipv6].compactMap { $0 })
            reasons += problems.map { "policy \(policy): \($0)" }
        }
        let answered = await forwarder.probe()
        if !answered.isEmpty && !answered.values.contains(true) { reasons.append("no upstream answers") }
        return reasons
    }
}

/// Set once the listeners are bound; cleared when stopping.
final class ReadyFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .relaxed) }
    func clear() { value.store(false, ordering: .relaxed) }
    var isSet: Bool { value.load(ordering: .relaxed) }
}
