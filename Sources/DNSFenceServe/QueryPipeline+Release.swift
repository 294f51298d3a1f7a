import DNSFenceFirewall
import DNSFenceWire
import NIOCore

/// An answer waiting for its addresses to be committed. An object: it is handed to the publish
/// batch and back to its loop by reference.
public final class PendingPublish: Sendable {
    let record: QueryRecord
    let elements: [SetElement]
    /// The answer to release once committed.
    let response: [UInt8]
    /// Where to commit, and for how long the answer may wait.
    let binding: FirewallBinding
    /// The query, for a SERVFAIL instead: the forward it came from, or a copy of a hit's bytes.
    let origin: Origin
    let snapshot: Snapshot
    let transport: Transport

    enum Origin: Sendable {
        case forward(PendingForward)
        case hit([UInt8], UnsafeView)
    }

    init(
        record: QueryRecord, elements: [SetElement], response: [UInt8], binding: FirewallBinding, origin: Origin,
        snapshot: Snapshot, transport: Transport
    ) {
        self.record = record
        self.elements = elements
        self.response = response
        self.binding = binding
        self.origin = origin
        self.snapshot = snapshot
        self.transport = transport
    }

    /// Runs `body` with the query's view over kept bytes.
    func withView<R>(_ body: (QueryView) -> R) -> R {
        switch origin {
        case .forward(let forward): return forward.withView(body)
        case .hit(let bytes, let view): return bytes.withUnsafeBytes { body(view.view.rebased(on: $0)) }
        }
    }
}

extension QueryPipeline {
    /// Commits the elements (bounded by the binding's timeout), then releases the answer; on
    /// failure the client gets SERVFAIL and never the addresses (fail closed).
    func publish(
        _ pending: PendingPublish, on loop: any EventLoop,
        done: @escaping @Sendable (Snapshot, QueryRecord, [UInt8]) -> Void
    ) {
        // The batch's timer bounds the wait (conclude runs once, with .timedOut if it fires).
        let binding = pending.binding
        batcher.submit(pending.elements, to: binding.publisher, timeout: binding.commitTimeout, on: loop) { error in
            self.conclude(pending, error: error, done: done)
        }
    }

    /// Releases a pending answer once its commit succeeded, or answers SERVFAIL instead.
    private func conclude(
        _ pending: PendingPublish, error: PublishError?, done: @Sendable (Snapshot, QueryRecord, [UInt8]) -> Void
    ) {
        guard let error else { return done(pending.snapshot, pending.record, pending.response) }
        logger.warning("publish failed; answering SERVFAIL", metadata: ["error": "\(error)"])
        let ede = ExtendedDNSError(
            ExtendedDNSError.otherError, "dnsfence: firewall update failed (\(error.reasonLabel))")
        var record = pending.record
        record.ede = ede
        record.published = []
        if error == .timedOut { pending.snapshot.metrics.publishTimeouts.increment() }
        let response = pending.withView { view in
            MessageRenderer.render(
                QueryDecision(.deny(.servFail), ede: ede), view: view,
                maxSize: QueryPipeline.maxSize(view, pending.transport))
        }
        done(pending.snapshot, record, response ?? [])
    }
}
