import Synchronization

/// A Prometheus histogram on integer nanoseconds with one atomic counter per bucket: recording
/// is a short scan of the bounds and two relaxed atomic adds, with no lock shared between the
/// UDP loops and no `Duration` arithmetic. (swift-prometheus's histogram takes a lock and
/// compares a `Duration` against every bucket on every answer.) Rendered by ``render(into:)``.
final class LatencyHistogram: @unchecked Sendable {
    // @unchecked Sendable: the counters are atomics, allocated once and never freed while
    // the histogram lives.

    let name: String
    let labels: String
    /// Upper bounds in nanoseconds, ascending.
    let bounds: [Int64]
    /// Per bucket (not cumulative), the last one past every bound (+Inf).
    private let counts: UnsafeMutablePointer<Atomic<Int>>
    private let sumNanoseconds = Atomic<Int>(0)

    /// `labels` is the rendered label set, e.g. `action="pass"`.
    init(name: String, labels: String, bounds: [Int64]) {
        precondition(bounds == bounds.sorted(), "histogram bounds must ascend")
        self.name = name
        self.labels = labels
        self.bounds = bounds
        counts = .allocate(capacity: bounds.count + 1)
        for index in 0...bounds.count { (counts + index).initialize(to: Atomic(0)) }
    }

    deinit {
        counts.deinitialize(count: bounds.count + 1)
        counts.deallocate()
    }

    func record(nanoseconds: Int64) {
        var index = 0
        while index < bounds.count && bounds[index] < nanoseconds { index += 1 }
        counts[index].add(1, ordering: .relaxed)
        sumNanoseconds.add(Int(max(0, nanoseconds)), ordering: .relaxed)
    }

    /// Cumulative bucket counts (the last is +Inf, i.e. the total) and the sum in nanoseconds.
    var snapshot: (cumulative: [Int], sumNanoseconds: Int) {
        var running = 0
        let cumulative = (0...bounds.count).map { index in
            running += counts[index].load(ordering: .relaxed)
            return running
        }
        return (cumulative, sumNanoseconds.load(ordering: .relaxed))
    }

    /// The Prometheus text lines for this label set (without `# TYPE`).
    func render(into out: inout String) {
        let (cumulative, sum) = snapshot
        for (index, bound) in bounds.enumerated() {
            out += "\(name)_bucket{\(labels),le=\"\(Double(bound) / 1e9)\"} \(cumulative[index])\n"
        }
        out += "\(name)_bucket{\(labels),le=\"+Inf\"} \(cumulative[bounds.count])\n"
        out += "\(name)_sum{\(labels)} \(Double(sum) / 1e9)\n"
        out += "\(name)_count{\(labels)} \(cumulative[bounds.count])\n"
    }
}
