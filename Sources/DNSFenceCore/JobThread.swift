// DNSFenceCore: values and plumbing every layer may use (addresses and prefixes, a thread with
// a job queue, a semaphore). Knows nothing about DNS, sockets or nftables.

import CCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Starts a detached thread named `name` running `body` (a plain pthread, not Dispatch: the
/// threads here own epoll sets, enter network namespaces or block in the kernel). False if the
/// thread could not be made.
public func startThread(named name: String, _ body: @escaping @Sendable () -> Void) -> Bool {
    final class Box: Sendable {
        let name: String
        let body: @Sendable () -> Void
        init(_ name: String, _ body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }
    let box = Unmanaged.passRetained(Box(name, body))
    var thread = pthread_t()
    let rc = pthread_create(
        &thread, nil,
        { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            // Linux limits thread names to 15 bytes.
            dnsfence_set_thread_name(box.name)
            box.body()
            return nil
        }, box.toOpaque())
    guard rc == 0 else {
        box.release()
        return false
    }
    pthread_detach(thread)
    return true
}

/// One thread that takes jobs from a queue and handles them in order, a batch at a time (all
/// that queued while it handled the last batch). The one "thread plus job queue" of the code
/// base: the nftables workers, the commit thread and the query log writer are all this.
public final class JobThread<Job: Sendable>: Sendable {
    /// The queue and its wake-up, shared with the thread.
    private final class Inbox: Sendable {
        let jobs = Mutex<[Job]>([])
        let wakeup = Semaphore()
    }

    private let inbox = Inbox()
    private let capacity: Int

    /// Starts the thread. On it, `setup` runs once first (it may enter a namespace or open a
    /// socket; what it returns stays on the thread), then `handle` gets each batch in order.
    /// `capacity` bounds the queue: ``submit(_:)`` refuses a job beyond it.
    public init<State>(
        name: String, capacity: Int = .max, setup: @escaping @Sendable () -> State,
        handle: @escaping @Sendable (inout State, [Job]) -> Void
    ) {
        self.capacity = capacity
        let started = startThread(named: name) { [inbox] in
            var state = setup()
            while true {
                inbox.wakeup.wait()
                let batch = inbox.jobs.withLock { jobs -> [Job] in
                    defer { jobs = [] }
                    return jobs
                }
                if !batch.isEmpty { handle(&state, batch) }
            }
        }
        precondition(started, "cannot start the \(name) thread")
    }

    /// A thread with no state of its own.
    public convenience init(name: String, capacity: Int = .max, handle: @escaping @Sendable ([Job]) -> Void) {
        self.init(name: name, capacity: capacity, setup: {}, handle: { _, batch in handle(batch) })
    }

    /// Queues `job`; false (and nothing queued) when the queue holds `capacity` jobs already.
    @discardableResult
    public func submit(_ job: Job) -> Bool {
        let accepted = inbox.jobs.withLock { jobs -> Bool in
            guard jobs.count < capacity else { return false }
            jobs.append(job)
            return true
        }
        if accepted { inbox.wakeup.signal() }
        return accepted
    }
}

extension JobThread where Job == @Sendable () -> Void {
    /// A thread that runs submitted closures in order (no Dispatch: they may block in the kernel).
    public convenience init(name: String) {
        self.init(name: name) { batch in for job in batch { job() } }
    }
}

/// A counting semaphore over a POSIX one, usable from any thread (no Dispatch).
public final class Semaphore: @unchecked Sendable {
    // @unchecked Sendable: sem_t is made for concurrent use through sem_post/sem_wait.
    private let sem = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    public init() { sem_init(sem, 0, 0) }

    deinit {
        sem_destroy(sem)
        sem.deallocate()
    }

    public func signal() { sem_post(sem) }

    public func wait() {
        while sem_wait(sem) != 0 && errno == EINTR {}
    }
}
