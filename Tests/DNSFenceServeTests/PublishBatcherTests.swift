import DNSFenceCore
import DNSFenceFirewall
import DNSFenceWire
import NIOEmbedded
import Synchronization
import Testing

@testable import DNSFenceServe

/// Records how requests reach it: one call per batch.
final class RecordingPublisher: SetPublisher {
    let batches = Mutex<[[[SetElement]]]>([])
    let refuse: IPAddress?

    init(refuse: IPAddress? = nil) { self.refuse = refuse }

    func needsCommit(_ element: SetElement) -> Bool { true }

    func revoke(in targets: [SetTarget], keeping keep: @escaping @Sendable (UInt64) -> Bool) async throws(PublishError)
        -> [SetElement]
    { [] }

    func publish(_ elements: [SetElement]) async throws(PublishError) {
        if elements.contains(where: { $0.address == refuse }) { throw .rejected("refused") }
    }

    func publish(_ elements: [SetElement], completion: @escaping @Sendable (PublishError?) -> Void) {
        publish(batch: [elements]) { completion($0[0]) }
    }

    func publish(batch requests: [[SetElement]], completion: @escaping @Sendable ([PublishError?]) -> Void) {
        batches.withLock { $0.append(requests) }
        completion(requests.map { $0.contains { $0.address == refuse } ? .rejected("refused") : nil })
    }
}

/// Never answers by itself: the test completes its batches when it wants to.
final class SilentPublisher: SetPublisher {
    let pending = Mutex<[@Sendable ([PublishError?]) -> Void]>([])

    func needsCommit(_ element: SetElement) -> Bool { true }

    func revoke(in targets: [SetTarget], keeping keep: @escaping @Sendable (UInt64) -> Bool) async throws(PublishError)
        -> [SetElement]
    { [] }

    func publish(_ elements: [SetElement]) async throws(PublishError) {}

    func publish(batch requests: [[SetElement]], completion: @escaping @Sendable ([PublishError?]) -> Void) {
        let count = requests.count
        pending.withLock {
            $0.append { results in completion(results.isEmpty ? Array(repeating: nil, count: count) : results) }
        }
    }
}

@Suite("publish batching per event-loop tick")
struct PublishBatcherTests {
    static let target = SetTarget(netns: nil, family: "inet", table: "t", set: "a4", isIPv6: false)

    static func element(_ text: String) -> SetElement {
        SetElement(target: target, address: IPAddress(text)!, timeout: 60)
    }

    @Test("requests of one tick share one batch; each gets its own outcome, in order")
    func oneTickOneBatch() {
        let loop = EmbeddedEventLoop()
        let publisher = RecordingPublisher(refuse: IPAddress("192.0.2.2"))
        let batcher = PublishBatcher()
        let outcomes = Mutex<[String: PublishError?]>([:])
        for address in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
            batcher.submit([Self.element(address)], to: publisher, on: loop) { error in
                outcomes.withLock { $0[address] = error }
            }
        }
        #expect(publisher.batches.withLock { $0.isEmpty })  // nothing before the tick ends
        loop.run()
        #expect(publisher.batches.withLock { $0.map(\.count) } == [3])
        let results = outcomes.withLock { $0 }
        #expect(results.count == 3)
        #expect(results["192.0.2.1"] == .some(nil))
        #expect(results["192.0.2.2"] == .some(.rejected("refused")))
        #expect(results["192.0.2.3"] == .some(nil))

        // The next tick starts a new batch.
        batcher.submit([Self.element("192.0.2.4")], to: publisher, on: loop) { _ in }
        loop.run()
        #expect(publisher.batches.withLock { $0.map(\.count) } == [3, 1])
    }

    @Test("one timer per batch: the shortest timeout fails every request in it, and a late outcome is ignored")
    func batchTimeout() {
        let loop = EmbeddedEventLoop()
        let publisher = SilentPublisher()
        let batcher = PublishBatcher()
        let outcomes = Mutex<[String: [PublishError?]]>([:])
        for (address, seconds) in [("192.0.2.1", 2), ("192.0.2.2", 1)] {
            batcher.submit([Self.element(address)], to: publisher, timeout: .seconds(seconds), on: loop) { error in
                outcomes.withLock { $0[address, default: []].append(error) }
            }
        }
        loop.run()
        #expect(publisher.pending.withLock { $0.count } == 1)  // one batch
        loop.advanceTime(by: .milliseconds(999))
        #expect(outcomes.withLock { $0.isEmpty })
        loop.advanceTime(by: .milliseconds(1))
        #expect(outcomes.withLock { $0 } == ["192.0.2.1": [.timedOut], "192.0.2.2": [.timedOut]])
        // The commit finishing afterwards changes nothing: each request concluded once.
        for complete in publisher.pending.withLock({ $0 }) { complete([nil, nil]) }
        loop.run()
        #expect(outcomes.withLock { $0 } == ["192.0.2.1": [.timedOut], "192.0.2.2": [.timedOut]])

        // A batch that commits in time cancels its timer.
        batcher.submit([Self.element("192.0.2.3")], to: publisher, timeout: .seconds(1), on: loop) { error in
            outcomes.withLock { $0["192.0.2.3", default: []].append(error) }
        }
        loop.run()
        publisher.pending.withLock { $0.last! }([nil])
        loop.run()
        loop.advanceTime(by: .seconds(5))
        #expect(outcomes.withLock { $0["192.0.2.3"] } == [nil])
        // The completions it kept hold their batches, which hold the publisher: a cycle the
        // leak check (scripts/leak-check.sh) would report.
        publisher.pending.withLock { $0.removeAll() }
    }
}
