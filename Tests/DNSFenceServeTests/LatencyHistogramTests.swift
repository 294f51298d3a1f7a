import Dispatch
import Testing

@testable import DNSFenceServe

@Suite("Latency histogram")
struct LatencyHistogramTests {
    @Test("values land in the first bucket whose bound they do not exceed; buckets render cumulative")
    func buckets() {
        let histogram = LatencyHistogram(name: "t_seconds", labels: #"action="pass""#, bounds: [50_000, 1_000_000])
        for value: Int64 in [0, 1_500, 50_000, 50_001, 1_000_000, 1_000_001, 7_000_000_000] {
            histogram.record(nanoseconds: value)
        }
        let (cumulative, sum) = histogram.snapshot
        #expect(cumulative == [3, 5, 7])
        #expect(sum == 7_002_101_502)
        var text = ""
        histogram.render(into: &text)
        #expect(
            text == """
                t_seconds_bucket{action="pass",le="5e-05"} 3
                t_seconds_bucket{action="pass",le="0.001"} 5
                t_seconds_bucket{action="pass",le="+Inf"} 7
                t_seconds_sum{action="pass"} 7.002101502
                t_seconds_count{action="pass"} 7

                """)
    }

    @Test("records from many threads at once are all counted")
    func concurrent() {
        let histogram = LatencyHistogram(name: "t", labels: #"a="b""#, bounds: QueryMetrics.latencyBounds)
        DispatchQueue.concurrentPerform(iterations: 8) { thread in
            for index in 0..<10_000 { histogram.record(nanoseconds: Int64(thread * 10_000 + index) * 1_000) }
        }
        let (cumulative, sum) = histogram.snapshot
        #expect(cumulative.last == 80_000)
        // 0 … 79,999 µs: 51 values ≤ 50 µs, 101 ≤ 100 µs, …, 50,001 ≤ 50 ms, all ≤ 100 ms.
        #expect(cumulative[0] == 51 && cumulative[1] == 101 && cumulative[9] == 50_001 && cumulative[10] == 80_000)
        #expect(sum == (0..<80_000).reduce(0) { $0 + $1 * 1_000 })
    }
}
