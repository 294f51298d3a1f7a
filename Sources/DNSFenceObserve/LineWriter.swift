// DNSFenceObserve: the HTTP endpoint for metrics and health, and the non-blocking writer
// behind the query log. Knows nothing about DNS.

public import CoreMetrics
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Writes text lines to a file descriptor from its own thread. `write` never blocks: lines
/// go into a bounded buffer, and when it is full they are dropped and counted.
public final class LineWriter: Sendable {
    struct State {
        var lines: [String] = []
        var waiting = false
    }

    private let state = Mutex(State())
    private let capacity: Int
    private let fd: Int32
    private let dropped: Counter
    private let signal = PosixSemaphore()

    /// `fd` is written to and never closed; `droppedCounter` counts lines lost to a full buffer.
    public init(fd: Int32, capacity: Int = 8192, droppedCounter: Counter) {
        self.fd = fd
        self.capacity = capacity
        self.dropped = droppedCounter
        let box = Unmanaged.passRetained(self)
        var thread = pthread_t()
        if pthread_create(
            &thread, nil,
            { raw in
                Unmanaged<LineWriter>.fromOpaque(raw!).takeRetainedValue().run()
            }, box.toOpaque()) == 0
        {
            pthread_detach(thread)
        } else {
            box.release()
        }
    }

    /// Queues `line` (a newline is added); drops it if the buffer is full.
    public func write(_ line: String) {
        let accepted = state.withLock { state -> Bool in
            guard state.lines.count < capacity else { return false }
            state.lines.append(line)
            return true
        }
        if accepted { signal.post() } else { dropped.increment() }
    }

    private func run() -> Never {
        while true {
            signal.wait()
            let batch = state.withLock { state -> [String] in
                defer { state.lines = [] }
                return state.lines
            }
            guard !batch.isEmpty else { continue }
            var text = batch.joined(separator: "\n")
            text += "\n"
            text.withUTF8 { buffer in
                var offset = 0
                while offset < buffer.count {
                    let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                    if n <= 0 {
                        if errno == EINTR { continue }
                        return
                    }
                    offset += n
                }
            }
        }
    }
}

/// A POSIX semaphore usable from any thread.
final class PosixSemaphore: @unchecked Sendable {
    // @unchecked Sendable: sem_t is made for concurrent use through sem_post/sem_wait.
    private let sem = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    init() { sem_init(sem, 0, 0) }

    deinit {
        sem_destroy(sem)
        sem.deallocate()
    }

    func post() { sem_post(sem) }

    func wait() {
        while sem_wait(sem) != 0 && errno == EINTR {}
    }
}
