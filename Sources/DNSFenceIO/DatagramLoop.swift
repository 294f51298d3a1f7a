import CDatagram
import DNSFenceCore
public import Dispatch
public import NIOCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// An event loop of our own for the UDP data path: one thread, one epoll set, holding the
/// listening sockets and the upstream sockets of one share of the load, so that a query, its
/// upstream exchange and its answer never leave the thread.
///
/// Datagrams are read with recvmmsg(2) into buffers the loop owns (no per-datagram allocation,
/// no address text), handed to the socket's receiver, and everything the receivers, tasks and
/// timers of one turn send leaves with one sendmmsg(2) per socket at the end of the turn.
///
/// It is an NIO `EventLoop`, so everything written against `EventLoop` (futures, promises,
/// `scheduleTask`, `execute`) works on it unchanged; sockets other than these datagram ones
/// (TCP, HTTP) stay on NIO's own loops.
public final class DatagramLoop: EventLoop, @unchecked Sendable {
    // @unchecked Sendable: the fields below the mutexes and atomics are touched only on the
    // loop's thread (checked by `inEventLoop` where it matters).

    public let name: String
    private let epoll: Int32
    private let wakeFD: Int32
    private let thread = Atomic<UInt>(0)
    private let queued = Mutex<[@Sendable () -> Void]>([])
    private let hasQueued = Atomic<Bool>(false)
    private let wakePending = Atomic<Bool>(false)
    private let stopRequested = Atomic<Bool>(false)
    private let timerSequence = Atomic<UInt64>(0)
    private let stopped = Mutex<[(DispatchQueue, @Sendable ((any Error)?) -> Void)]>([])
    private let finished = Atomic<Bool>(false)

    // Loop-confined (and so exempt from dynamic exclusivity checks).
    @exclusivity(unchecked) private var timerHeap: [(deadline: UInt64, id: UInt64)] = []
    @exclusivity(unchecked) private var timerTasks: [UInt64: () -> Void] = [:]
    @exclusivity(unchecked) private var dirty: [DatagramSocket] = []
    @exclusivity(unchecked) private var retired: [DatagramSocket] = []
    @exclusivity(unchecked) private var open: [ObjectIdentifier: DatagramSocket] = [:]

    /// Buffers that every socket of this loop reads into, one turn at a time.
    let receiveSlots: UnsafeMutablePointer<dnsfence_datagram>
    /// Slots a socket's flush fills for one sendmmsg(2).
    let sendSlots: UnsafeMutablePointer<dnsfence_datagram>
    let receiveBatch = 32
    /// Datagrams per sendmmsg(2): the most the C side takes in one call.
    let sendBatch = Int(DNSFENCE_DATAGRAM_BATCH)
    static let slotCapacity = 65_536
    private let receiveMemory: UnsafeMutableRawPointer

    /// Starts the loop's thread.
    public init(name: String) throws {
        let epoll = dnsfence_epoll_create()
        guard epoll >= 0 else { throw DatagramError(operation: "epoll_create", code: -epoll) }
        let wakeFD = dnsfence_eventfd()
        guard wakeFD >= 0 else {
            Glibc.close(epoll)
            throw DatagramError(operation: "eventfd", code: -wakeFD)
        }
        let rc = dnsfence_epoll_control(epoll, Int32(DNSFENCE_EPOLL_ADD), wakeFD, UInt32(DNSFENCE_EPOLLIN), 0)
        guard rc == 0 else {
            Glibc.close(epoll)
            Glibc.close(wakeFD)
            throw DatagramError(operation: "epoll_ctl", code: -rc)
        }
        _ = DatagramSocket.metrics
        self.name = name
        self.epoll = epoll
        self.wakeFD = wakeFD
        receiveMemory = UnsafeMutableRawPointer.allocate(byteCount: receiveBatch * Self.slotCapacity, alignment: 64)
        receiveSlots = .allocate(capacity: receiveBatch)
        sendSlots = .allocate(capacity: sendBatch)
        sendSlots.initialize(repeating: dnsfence_datagram(), count: sendBatch)
        for index in 0..<receiveBatch {
            receiveSlots[index] = dnsfence_datagram()
            receiveSlots[index].data = (receiveMemory + index * Self.slotCapacity).assumingMemoryBound(to: UInt8.self)
            receiveSlots[index].capacity = UInt32(Self.slotCapacity)
        }
        guard startThread(named: name, { [self] in run() }) else {
            throw DatagramError(operation: "pthread_create", code: EAGAIN)
        }
        // Until the thread has recorded itself, `inEventLoop` is false everywhere, which only
        // makes early callers take the queue.
    }

    deinit {
        receiveSlots.deallocate()
        sendSlots.deallocate()
        receiveMemory.deallocate()
    }

    // MARK: EventLoop

    public var inEventLoop: Bool { thread.load(ordering: .relaxed) == UInt(pthread_self()) }

    public func execute(_ task: @escaping @Sendable () -> Void) {
        queued.withLock { $0.append(task) }
        hasQueued.store(true, ordering: .releasing)
        if !inEventLoop && !wakePending.exchange(true, ordering: .acquiringAndReleasing) {
            dnsfence_eventfd_signal(wakeFD)
        }
    }

    public func scheduleTask<T>(deadline: NIODeadline, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        let promise: EventLoopPromise<T> = makePromise()
        let id = timerSequence.wrappingAdd(1, ordering: .relaxed).newValue
        let fire = { () -> Void in
            do { promise.assumeIsolatedUnsafeUnchecked().succeed(try task()) } catch { promise.fail(error) }
        }
        let when = deadline.uptimeNanoseconds
        if inEventLoop {
            addTimer(id: id, deadline: when, fire)
        } else {
            let box = UnsafeTransfer(fire)
            execute { [self] in addTimer(id: id, deadline: when, box.value) }
        }
        return Scheduled(promise: promise) { [self] in
            if inEventLoop {
                timerTasks[id] = nil
            } else {
                execute { [self] in timerTasks[id] = nil }
            }
        }
    }

    public func scheduleTask<T>(in delay: TimeAmount, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        scheduleTask(deadline: .now() + delay, task)
    }

    public func preconditionInEventLoop(file: StaticString, line: UInt) {
        precondition(inEventLoop, "not on the datagram loop \(name)", file: file, line: line)
    }

    public func preconditionNotInEventLoop(file: StaticString, line: UInt) {
        precondition(!inEventLoop, "on the datagram loop \(name)", file: file, line: line)
    }

    /// Closes every socket still open on the loop and stops its thread.
    public func shutdownGracefully(queue: DispatchQueue, _ callback: @escaping @Sendable ((any Error)?) -> Void) {
        if finished.load(ordering: .acquiring) {
            queue.async { callback(nil) }
            return
        }
        stopped.withLock { $0.append((queue, callback)) }
        stopRequested.store(true, ordering: .releasing)
        execute {}
    }

    // MARK: Sockets

    /// The epoll token for `socket`: its address (0 is the wake-up eventfd).
    private func token(_ socket: DatagramSocket) -> UInt64 {
        UInt64(UInt(bitPattern: Unmanaged.passUnretained(socket).toOpaque()))
    }

    func register(_ socket: DatagramSocket) throws {
        let rc = dnsfence_epoll_control(
            epoll, Int32(DNSFENCE_EPOLL_ADD), socket.fd, UInt32(DNSFENCE_EPOLLIN), token(socket))
        guard rc == 0 else { throw DatagramError(operation: "epoll_ctl", code: -rc) }
        open[ObjectIdentifier(socket)] = socket
    }

    func watchWritable(_ socket: DatagramSocket, _ on: Bool) {
        let events = UInt32(DNSFENCE_EPOLLIN) | (on ? UInt32(DNSFENCE_EPOLLOUT) : 0)
        _ = dnsfence_epoll_control(epoll, Int32(DNSFENCE_EPOLL_MOD), socket.fd, events, token(socket))
    }

    func deregister(_ socket: DatagramSocket) {
        _ = dnsfence_epoll_control(epoll, Int32(DNSFENCE_EPOLL_DEL), socket.fd, 0, 0)
        open[ObjectIdentifier(socket)] = nil
        // Events for it may still be in this turn's list: it stays alive until the turn ends.
        retired.append(socket)
    }

    /// `socket` has datagrams to send at the end of this turn.
    func markDirty(_ socket: DatagramSocket) { dirty.append(socket) }

    // MARK: The loop

    private func addTimer(id: UInt64, deadline: UInt64, _ fire: @escaping () -> Void) {
        timerTasks[id] = fire
        timerHeap.append((deadline, id))
        var child = timerHeap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard timerHeap[child].deadline < timerHeap[parent].deadline else { break }
            timerHeap.swapAt(child, parent)
            child = parent
        }
    }

    private func popTimer() {
        let last = timerHeap.removeLast()
        guard !timerHeap.isEmpty else { return }
        timerHeap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            guard left < timerHeap.count else { break }
            var smallest = left
            if left + 1 < timerHeap.count && timerHeap[left + 1].deadline < timerHeap[left].deadline {
                smallest = left + 1
            }
            guard timerHeap[smallest].deadline < timerHeap[parent].deadline else { break }
            timerHeap.swapAt(smallest, parent)
            parent = smallest
        }
    }

    /// Milliseconds epoll may sleep: 0 with work queued, -1 with no timer, else until the first.
    private func sleepBudget() -> Int32 {
        if hasQueued.load(ordering: .acquiring) { return 0 }
        while let first = timerHeap.first, timerTasks[first.id] == nil { popTimer() }
        guard let first = timerHeap.first else { return -1 }
        let now = DispatchTime.now().uptimeNanoseconds
        guard first.deadline > now else { return 0 }
        // Round up: waking early only costs another turn.
        return Int32(min((first.deadline - now + 999_999) / 1_000_000, 60_000))
    }

    private func runDueTimers() {
        let now = DispatchTime.now().uptimeNanoseconds
        while let first = timerHeap.first, first.deadline <= now {
            popTimer()
            if let fire = timerTasks.removeValue(forKey: first.id) { fire() }
        }
    }

    private func runQueued() {
        guard hasQueued.exchange(false, ordering: .acquiringAndReleasing) else { return }
        let tasks = queued.withLock { queue -> [@Sendable () -> Void] in
            defer { queue.removeAll(keepingCapacity: true) }
            return queue
        }
        for task in tasks { task() }
    }

    private func flushDirty() {
        while !dirty.isEmpty {
            let sockets = dirty
            dirty.removeAll(keepingCapacity: true)
            for socket in sockets { socket.flush() }
        }
    }

    private func run() {
        thread.store(UInt(pthread_self()), ordering: .releasing)
        let capacity = 64
        let tokens = UnsafeMutablePointer<UInt64>.allocate(capacity: capacity)
        let events = UnsafeMutablePointer<UInt32>.allocate(capacity: capacity)
        defer {
            tokens.deallocate()
            events.deallocate()
        }
        while true {
            let ready = dnsfence_epoll_wait(epoll, tokens, events, Int32(capacity), sleepBudget())
            for index in 0..<max(0, Int(ready)) {
                if tokens[index] == 0 {
                    // Drain first, then clear: a thread that still sees the flag set has its
                    // task queued before runQueued below; one that sees it clear signals anew.
                    dnsfence_eventfd_drain(wakeFD)
                    wakePending.store(false, ordering: .releasing)
                    continue
                }
                let socket = Unmanaged<DatagramSocket>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(tokens[index]))!)
                    .takeUnretainedValue()
                if events[index] & UInt32(DNSFENCE_EPOLLOUT) != 0 { socket.writable() }
                if events[index] & UInt32(DNSFENCE_EPOLLIN | DNSFENCE_EPOLLERR) != 0 { socket.readable() }
            }
            runQueued()
            runDueTimers()
            flushDirty()
            retired.removeAll(keepingCapacity: true)
            if stopRequested.load(ordering: .acquiring) && !hasQueued.load(ordering: .acquiring) { break }
        }
        for socket in Array(open.values) { socket.closeNow() }
        retired.removeAll()
        timerTasks.removeAll()
        Glibc.close(epoll)
        Glibc.close(wakeFD)
        finished.store(true, ordering: .releasing)
        thread.store(0, ordering: .releasing)
        for (queue, callback) in stopped.withLock({ $0 }) { queue.async { callback(nil) } }
    }
}

/// A system call on the datagram path failed.
public struct DatagramError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var code: Int32

    public init(operation: String, code: Int32) {
        self.operation = operation
        self.code = code
    }

    public var description: String { "\(operation): \(String(cString: strerror(code)))" }
}

/// Carries a loop-confined value through a `@Sendable` closure that runs on that loop.
struct UnsafeTransfer<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
