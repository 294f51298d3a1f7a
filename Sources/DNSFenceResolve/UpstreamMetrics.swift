import CoreMetrics
import NIOCore

/// Upstream metrics with fixed labels: the configured upstream addresses and a few results
/// (found by a short search per query: no string is hashed).
final class UpstreamMetrics: Sendable {
    static let results = ["noerror", "nxdomain", "servfail", "refused", "other", "timeout", "error"]
    private let verdicts: [(label: String, counter: Counter)]
    /// Per upstream, one counter per entry of `results`.
    private let responses: [[Counter]]

    init(upstreams: [String]) {
        verdicts = ["pass", "deny", "local", "audit"].map {
            ($0, Counter(label: "dnsfence_upstream_queries_total", dimensions: [("verdict", $0)]))
        }
        responses = upstreams.map { upstream in
            Self.results.map {
                Counter(
                    label: "dnsfence_upstream_responses_total", dimensions: [("upstream", upstream), ("result", $0)])
            }
        }
    }

    func queries(verdict: String) { verdicts.first { $0.label == verdict }?.counter.increment() }

    func response(upstream: Int, result: String) {
        guard let index = Self.results.firstIndex(of: result) else { return }
        responses[upstream][index].increment()
    }
}
