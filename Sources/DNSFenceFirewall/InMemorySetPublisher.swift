public import DNSFenceCore
public import Synchronization

/// A ``SetPublisher`` that keeps sets in memory, for unit tests of everything above the
/// firewall; it can be told to fail.
public final class InMemorySetPublisher: SetPublisher {
    public struct State: Sendable {
        /// Element → expiry (on the injected clock).
        public var sets: [SetTarget: [IPAddress: UInt64]] = [:]
        public var commits = 0
        public var failure: PublishError?
    }

    public let state = Mutex(State())
    private let shadow: Mutex<SetShadow>
    private let clock: @Sendable () -> UInt64

    public init(clock: @escaping @Sendable () -> UInt64, shadowTrustSeconds: UInt64 = 1) {
        self.clock = clock
        self.shadow = Mutex(SetShadow(trustSeconds: shadowTrustSeconds))
    }

    public func needsCommit(_ element: SetElement) -> Bool {
        let now = clock()
        return shadow.withLock { $0.check(element, now: now) }
    }

    public func publish(_ elements: [SetElement]) async throws(PublishError) {
        if let error = commit(elements) { throw error }
    }

    /// In memory there is nothing to wait for: the completion runs before this returns.
    public func publish(_ elements: [SetElement], completion: @escaping @Sendable (PublishError?) -> Void) {
        completion(commit(elements))
    }

    private func commit(_ elements: [SetElement]) -> PublishError? {
        let now = clock()
        let planned = shadow.withLock { s in elements.compactMap { s.plan($0, now: now) } }
        defer { shadow.withLock { $0.justify(elements, now: now) } }
        guard !planned.isEmpty else { return nil }
        if let failure = state.withLock({ $0.failure }) { return failure }
        state.withLock { state in
            state.commits += 1
            for element in planned {
                state.sets[element.target, default: [:]][element.address] = now + UInt64(element.timeout)
            }
        }
        shadow.withLock { s in for element in planned { s.committed(element, now: now) } }
        return nil
    }

    public func revoke(in targets: [SetTarget], keeping keep: @escaping @Sendable (UInt64) -> Bool)
        async throws(PublishError) -> [SetElement]
    {
        let now = clock()
        let doomed = shadow.withLock { $0.revocable(in: Set(targets), now: now, keep: keep) }
        state.withLock { state in
            for element in doomed { state.sets[element.target]?[element.address] = nil }
        }
        return doomed
    }

    /// Seconds `address` has left in `target`, or nil.
    public func remaining(_ address: IPAddress, in target: SetTarget) -> UInt64? {
        let now = clock()
        return state.withLock { state in
            guard let expiry = state.sets[target]?[address], expiry > now else { return nil }
            return expiry - now
        }
    }
}
