import DNSFenceFirewall
import NIOCore
import Synchronization

/// Gathers the commits one event-loop tick asks for and hands them to the publisher together,
/// after the tick's I/O is processed (an `execute`d task runs once the ready events of the
/// iteration are handled): answers from one burst of upstream replies share one kernel
/// transaction, and an isolated answer waits for no timer. The outcomes come back to the loop
/// in one hop per batch.
final class PublishBatcher: Sendable {
    struct Waiting: Sendable {
        var elements: [SetElement]
        var publisher: any SetPublisher
        var done: @Sendable (PublishError?) -> Void
    }

    private let queues = Mutex<[ObjectIdentifier: [Waiting]]>([:])

    /// Queues a commit on `loop`; `done` runs once with its outcome.
    func submit(
        _ elements: [SetElement], to publisher: any SetPublisher, on loop: any EventLoop,
        done: @escaping @Sendable (PublishError?) -> Void
    ) {
        let key = ObjectIdentifier(loop)
        let first = queues.withLock { queues -> Bool in
            let wasEmpty = queues[key]?.isEmpty ?? true
            queues[key, default: []].append(Waiting(elements: elements, publisher: publisher, done: done))
            return wasEmpty
        }
        if first { loop.execute { self.flush(key, on: loop) } }
    }

    private func flush(_ key: ObjectIdentifier, on loop: any EventLoop) {
        let waiting = queues.withLock { queues -> [Waiting] in
            defer { queues[key] = [] }
            return queues[key] ?? []
        }
        // One batch per publisher (there is one in practice; tests may use several).
        var groups: [ObjectIdentifier: [Waiting]] = [:]
        var order: [ObjectIdentifier] = []
        for item in waiting {
            let id = ObjectIdentifier(item.publisher as AnyObject)
            if groups[id] == nil { order.append(id) }
            groups[id, default: []].append(item)
        }
        for id in order {
            let items = groups[id]!
            items[0].publisher.publish(batch: items.map(\.elements)) { results in
                // Back on the loop once per batch (a publisher may complete on its own thread).
                let deliver: @Sendable () -> Void = { for (item, result) in zip(items, results) { item.done(result) } }
                if loop.inEventLoop { deliver() } else { loop.execute(deliver) }
            }
        }
    }
}
