import DNSFenceFirewall
import NIOCore
import Synchronization

/// Gathers the commits one event-loop tick asks for and hands them to the publisher together,
/// after the tick's I/O is processed (an `execute`d task runs once the ready events of the
/// iteration are handled): answers from one burst of upstream replies share one kernel
/// transaction, and an isolated answer waits for no timer. The outcomes come back to the loop
/// in one hop per batch, and one timer per batch bounds the wait: if the publisher has not
/// answered within the shortest commit timeout of the batch, every request in it gets
/// ``PublishError/timedOut`` (and a late outcome is ignored).
final class PublishBatcher: Sendable {
    struct Waiting: Sendable {
        var elements: [SetElement]
        var publisher: any SetPublisher
        /// How long the request may wait for its commit.
        var timeout: Duration
        var done: @Sendable (PublishError?) -> Void
    }

    private let queues = Mutex<[ObjectIdentifier: [Waiting]]>([:])

    /// Queues a commit on `loop`; `done` runs once, on `loop`, with its outcome, or with
    /// ``PublishError/timedOut`` after `timeout`.
    func submit(
        _ elements: [SetElement], to publisher: any SetPublisher, timeout: Duration = .seconds(1),
        on loop: any EventLoop, done: @escaping @Sendable (PublishError?) -> Void
    ) {
        let key = ObjectIdentifier(loop)
        let waiting = Waiting(elements: elements, publisher: publisher, timeout: timeout, done: done)
        let first = queues.withLock { queues -> Bool in
            let wasEmpty = queues[key]?.isEmpty ?? true
            queues[key, default: []].append(waiting)
            return wasEmpty
        }
        if first { loop.execute { self.flush(key, on: loop) } }
    }

    private func flush(_ key: ObjectIdentifier, on loop: any EventLoop) {
        let waiting = queues.withLock { queues -> [Waiting] in
            defer { queues[key] = [] }
            return queues[key] ?? []
        }
        guard !waiting.isEmpty else { return }
        let first = ObjectIdentifier(waiting[0].publisher)
        if waiting.allSatisfy({ ObjectIdentifier($0.publisher) == first }) {
            return commit(waiting, on: loop)
        }
        // One batch per publisher (there is one in practice; tests may use several).
        var groups: [ObjectIdentifier: [Waiting]] = [:]
        var order: [ObjectIdentifier] = []
        for item in waiting {
            let id = ObjectIdentifier(item.publisher)
            if groups[id] == nil { order.append(id) }
            groups[id, default: []].append(item)
        }
        for id in order { commit(groups[id]!, on: loop) }
    }

    /// One batch to one publisher, raced against one timer.
    private func commit(_ items: [Waiting], on loop: any EventLoop) {
        let once = Once()
        // Converted once per batch (Duration's components are 128-bit arithmetic).
        let shortest = (items.lazy.map(\.timeout).min() ?? .zero).components
        let timeout = shortest.seconds * 1_000_000_000 + shortest.attoseconds / 1_000_000_000
        let timer = loop.scheduleTask(in: .nanoseconds(timeout)) {
            guard once.claim() else { return }
            for item in items { item.done(.timedOut) }
        }
        items[0].publisher.publish(batch: items.map(\.elements)) { results in
            // Back on the loop once per batch (a publisher may complete on its own thread).
            let deliver: @Sendable () -> Void = {
                guard once.claim() else { return }
                timer.cancel()
                for (item, result) in zip(items, results) { item.done(result) }
            }
            if loop.inEventLoop { deliver() } else { loop.execute(deliver) }
        }
    }
}
