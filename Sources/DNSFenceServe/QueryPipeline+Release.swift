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
    /// What a SERVFAIL instead needs: the query, and the client's size limit.
    let query: DNSMessage
    let maxSize: Int
    let snapshot: Snapshot

    init(
        record: QueryRecord, elements: [SetElement], response: [UInt8], binding: FirewallBinding, view: QueryView,
        snapshot: Snapshot, transport: Transport
    ) {
        self.record = record
        self.elements = elements
        self.response = response
        self.binding = binding
        self.query = view.message
        self.maxSize = QueryPipeline.maxSize(view, transport)
        self.snapshot = snapshot
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
        done(
            pending.snapshot, record,
            DNSMessage.response(to: pending.query, rcode: .servFail, error: ede).encoded(fitting: pending.maxSize))
    }
}
