public import DNSFenceFirewall
public import DNSFencePolicy
public import DNSFenceResolve
import DNSFenceWire
public import Logging
public import NIOCore
import Synchronization

/// One query end to end (DESIGN.md, "One query, end to end"): the bytes are parsed once into a
/// ``QueryView``, the current ``Snapshot`` decides once (``Snapshot/decide(_:context:)``), and
/// the decision is rendered by the ``ByteRenderer`` or else the ``MessageRenderer``. A hit whose
/// addresses the firewall must hold first waits for the commit (`QueryPipeline+Release`); a
/// miss goes upstream (`QueryPipeline+Upstream`). Everything up to that is synchronous.
public final class QueryPipeline: Sendable {
    /// Our advertised and maximum UDP payload (DNS Flag Day 2020).
    public static let maxUDPPayload = DNSMessage.advertisedPayload

    /// The snapshot queries are decided with; a reload swaps it.
    public let snapshots: SnapshotStore
    /// The event loops the asynchronous stage may run on (the forwarders' group).
    let group: any EventLoopGroup
    let logger: Logger
    let inflight = Atomic<Int>(0)
    let batcher = PublishBatcher()
    /// Whether the byte renderer may answer (tests turn it off to compare the renderers).
    let renderBytes: Bool
    /// What each reason on the firewall's elements stands for, across snapshots (the first
    /// snapshot's registry; later ones are built with it).
    public let reasons: ReasonRegistry

    /// Queries waiting for an upstream right now.
    public var inflightCount: Int { inflight.load(ordering: .relaxed) }

    public init(snapshot: Snapshot, logger: Logger, renderBytes: Bool = true) {
        self.snapshots = SnapshotStore(snapshot)
        self.reasons = snapshot.reasons
        self.group = snapshot.forwarder.group
        self.logger = logger
        self.renderBytes = renderBytes
    }

    public convenience init(
        selector: ClientPolicySelector, cache: AnswerCache, forwarder: UpstreamForwarder, logger: Logger,
        firewalls: [String: FirewallBinding] = [:], queryLog: (any QueryLogSink)? = nil, renderBytes: Bool = true
    ) {
        self.init(
            snapshot: Snapshot(
                selector: selector, cache: cache, forwarder: forwarder, firewalls: firewalls, queryLog: queryLog),
            logger: logger, renderBytes: renderBytes)
    }

    /// Metric families kept outside swift-metrics (the query latency histogram and the query
    /// counters), in Prometheus text, for the `/metrics` endpoint to append.
    public func metricsExposition() -> String { snapshots.load().metrics.exposition() }

    /// Handles one query given as the bytes the socket read. An answer that needs no I/O is
    /// written through `emit` (called at most once) and nil returned; a query that must wait
    /// (upstream, or a commit) is returned, for ``complete(_:on:completion:)``.
    @inline(__always)
    public func handle(_ bytes: UnsafeRawBufferPointer, context: QueryContext, emit: ByteRenderer.Emit)
        -> PendingQuery?
    {
        let started = QueryRecord.monotonicNow()
        let snapshot = snapshots.load()
        let view: QueryView
        do {
            view = try QueryView(bytes)
        } catch {
            var rcode: UInt8? = nil
            if case .malformed(let code) = error {
                logger.debug("malformed query", metadata: ["client": "\(context.client)"])
                let response = DNSMessage.headerOnlyResponse(to: bytes, rcode: code)
                Self.emit(response, emit)
                rcode = UInt8(code.rawValue & 0x0F)
            }
            snapshot.observe(QueryDecision(.drop), view: nil, context: context, rcode: rcode, started: started)
            return nil
        }
        let decision = snapshot.decide(view, context: context)
        return carryOut(decision, view: view, context: context, snapshot: snapshot, started: started, emit: emit)
    }

    /// Renders `decision` now, or hands it on when it must wait.
    @inline(__always)
    func carryOut(
        _ decision: consuming QueryDecision, view: QueryView, context: QueryContext, snapshot: Snapshot,
        started: UInt64, emit: ByteRenderer.Emit
    ) -> PendingQuery? {
        if decision.waits {
            return wait(decision, view: view, context: context, snapshot: snapshot, started: started)
        }
        var rcode: UInt8? = nil
        if renderBytes, let written = ByteRenderer.render(decision, view: view, emit: emit) {
            rcode = written
        } else if let response = MessageRenderer.render(
            decision, view: view, maxSize: Self.maxSize(view, context.transport))
        {
            Self.emit(response, emit)
            rcode = response[3] & 0x0F
        }
        snapshot.observe(decision, view: view, context: context, rcode: rcode, started: started)
        return nil
    }

    /// A decision that must wait: a forward, or a hit whose addresses need a commit first.
    @inline(never)
    private func wait(
        _ decision: consuming QueryDecision, view: QueryView, context: QueryContext, snapshot: Snapshot, started: UInt64
    ) -> PendingQuery? {
        let record = QueryRecord(decision, view: view, context: context, started: started)
        switch decision.verdict {
        case .forward(let key):
            return .forward(
                PendingForward(
                    record: record, decision: decision, view: view, key: key, snapshot: snapshot,
                    transport: context.transport))
        case .hit(let hit):
            return .publish(
                PendingPublish(
                    record: record, elements: hit.commit,
                    response: render(decision, view: view, transport: context.transport),
                    binding: decision.binding!, origin: .hit(Array(view.bytes), UnsafeView(view)), snapshot: snapshot,
                    transport: context.transport))
        case .localData(_, _, let commit):
            return .publish(
                PendingPublish(
                    record: record, elements: commit,
                    response: render(decision, view: view, transport: context.transport),
                    binding: decision.binding!, origin: .hit(Array(view.bytes), UnsafeView(view)), snapshot: snapshot,
                    transport: context.transport))
        default:
            return nil
        }
    }

    /// The answer's bytes for a decision that has one (byte renderer first).
    func render(_ decision: borrowing QueryDecision, view: QueryView, transport: Transport) -> [UInt8] {
        var out: [UInt8] = []
        if renderBytes, ByteRenderer.render(decision, view: view, emit: { out = Self.array($0, $1) }) != nil {
            return out
        }
        return MessageRenderer.render(decision, view: view, maxSize: Self.maxSize(view, transport)) ?? []
    }

    /// The largest answer this client takes: its UDP size (512 without EDNS), or 65,535 on TCP.
    @inline(__always)
    static func maxSize(_ view: QueryView, _ transport: Transport) -> Int {
        transport == .udp ? DNSMessage.udpLimit(payloadSize: view.ednsPayload) : 65535
    }

    static func emit(_ response: [UInt8], _ emit: ByteRenderer.Emit) {
        emit(response.count) { out in _ = out.initialize(from: response) }
    }

    static func array(_ count: Int, _ write: (UnsafeMutableBufferPointer<UInt8>) -> Void) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { out, initialized in
            write(out)
            initialized = count
        }
    }

    // MARK: Whole-message entry points (TCP, tests)

    /// The synchronous stage for a query held in an array: an answer, silence, or what waits.
    public func process(_ bytes: [UInt8], context: QueryContext) -> ImmediateOutcome {
        var response: [UInt8]? = nil
        let pending = bytes.withUnsafeBytes {
            handle($0, context: context, emit: { response = Self.array($0, $1) })
        }
        if let pending { return pending.outcome }
        return response.map { .respond($0) } ?? .drop
    }

    /// Handles one query end to end; nil means send nothing.
    public func answer(_ bytes: [UInt8], context: QueryContext) async -> [UInt8]? {
        switch process(bytes, context: context) {
        case .respond(let response): return response
        case .drop: return nil
        case .forward(let pending): return await complete(.forward(pending))
        case .publish(let pending): return await complete(.publish(pending))
        }
    }

    /// The asynchronous stage for whatever the synchronous one left open.
    public func complete(_ pending: PendingQuery) async -> [UInt8]? {
        let loop = group.next()
        return await withCheckedContinuation { continuation in
            complete(pending, on: loop) { continuation.resume(returning: $0) }
        }
    }

    /// The asynchronous stage on `loop`: upstream replies, publish completions and timers all
    /// continue there as plain callbacks (no task, no future chain, no executor hop), and
    /// `completion` runs once, on `loop`, so a listener there writes the answer directly.
    public func complete(
        _ pending: PendingQuery, on loop: any EventLoop, completion: @escaping @Sendable ([UInt8]?) -> Void
    ) {
        let done: @Sendable (Snapshot, QueryRecord, [UInt8]) -> Void = { snapshot, record, response in
            snapshot.observe(record, rcode: response.count >= 12 ? response[3] & 0x0F : nil)
            if loop.inEventLoop {
                completion(response)
            } else {
                loop.execute { completion(response) }
            }
        }
        switch pending {
        case .forward(let forward): self.forward(forward, on: loop, done: done)
        case .publish(let publish): self.publish(publish, on: loop, done: done)
        }
    }
}

/// A query that waits: for an upstream, or for its addresses to be committed.
public enum PendingQuery: Sendable {
    case forward(PendingForward)
    case publish(PendingPublish)

    var outcome: ImmediateOutcome {
        switch self {
        case .forward(let pending): return .forward(pending)
        case .publish(let pending): return .publish(pending)
        }
    }
}

/// The synchronous stage's result for a whole message: answer now, say nothing, or wait.
public enum ImmediateOutcome: Sendable {
    case respond([UInt8])
    case drop
    case forward(PendingForward)
    /// A cache hit whose addresses must be (re)committed before it is released.
    case publish(PendingPublish)
}

/// Lets exactly one of several racing callers through.
final class Once: Sendable {
    private let taken = Atomic<Bool>(false)

    func claim() -> Bool {
        taken.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
    }
}
