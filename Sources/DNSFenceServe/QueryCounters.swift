import Synchronization

/// `dnsfence_queries_total`: per policy name, one block of relaxed atomic counters (transport ×
/// query type × action), made on the first snapshot that names the policy and kept for the
/// life of the process, so a reload keeps counting. Rendered by ``render(into:)``, only the
/// series that are not zero: a thousand policies would otherwise be 270,000 lines of zeros a
/// scrape, and making them through swift-prometheus copies its registry for every one (start-up
/// grew with the square of the number of policies).
final class QueryCounters: Sendable {
    static let shared = QueryCounters()
    /// The policy label of queries no policy decided.
    static let noPolicy = "(none)"
    static let typeNames = QueryMetrics.qtypes.map(\.description) + ["other"]
    static let transports = ["udp", "tcp"]

    /// The counters of one policy.
    final class Block: @unchecked Sendable {
        // @unchecked Sendable: the counters are atomics, allocated once and never freed while
        // the block lives.
        let policy: String
        private let counts: UnsafeMutablePointer<Atomic<Int>>
        static let count = QueryCounters.transports.count * QueryCounters.typeNames.count * QueryMetrics.actions.count

        init(policy: String) {
            self.policy = policy
            counts = .allocate(capacity: Self.count)
            for index in 0..<Self.count { (counts + index).initialize(to: Atomic(0)) }
        }

        deinit {
            counts.deinitialize(count: Self.count)
            counts.deallocate()
        }

        /// The counter of one transport, query type and action (indices into the label lists).
        @inline(__always)
        private func slot(_ transport: Int, _ type: Int, _ action: Int) -> Int {
            (transport * QueryCounters.typeNames.count + type) * QueryMetrics.actions.count + action
        }

        @inline(__always)
        func increment(transport: Int, type: Int, action: Int) {
            counts[slot(transport, type, action)].add(1, ordering: .relaxed)
        }

        func value(transport: Int, type: Int, action: Int) -> Int {
            counts[slot(transport, type, action)].load(ordering: .relaxed)
        }
    }

    private let blocks = Mutex<[String: Block]>([:])

    /// The blocks of `policies`, in their order, made where missing.
    func blocks(for policies: [String]) -> [Block] {
        blocks.withLock { known in
            policies.map { name in
                if let block = known[name] { return block }
                let block = Block(policy: name)
                known[name] = block
                return block
            }
        }
    }

    /// The non-zero series, in policy-name order, after the `# TYPE` line.
    func render(into out: inout String) {
        out += "# TYPE dnsfence_queries_total counter\n"
        let all = blocks.withLock { $0.values.sorted { $0.policy < $1.policy } }
        for block in all {
            for (t, transport) in Self.transports.enumerated() {
                for (q, type) in Self.typeNames.enumerated() {
                    for (a, action) in QueryMetrics.actions.enumerated() {
                        let value = block.value(transport: t, type: q, action: a)
                        guard value != 0 else { continue }
                        out += "dnsfence_queries_total{transport=\"\(transport)\",qtype=\"\(type)\","
                        out += "policy=\"\(block.policy)\",action=\"\(action)\"} \(value)\n"
                    }
                }
            }
        }
    }
}
