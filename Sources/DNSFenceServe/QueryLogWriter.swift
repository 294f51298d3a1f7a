public import CoreMetrics
import DNSFenceCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Where query log lines go, and what keeps the log cheap and bounded. A query costs the
/// answering loop one record and one append under a lock; a thread of its own wakes every
/// 10 ms, encodes the lines into one reused buffer and writes them with one write(2). Per
/// second, identical lines (same client, name, type and action) beyond `repeatLimit` are
/// summarised in one line with a count, and bytes beyond `maxBytesPerSecond` are not written.
public final class QueryLogWriter: Sendable {
    public struct Limits: Sendable, Hashable {
        /// Identical lines per second written before the rest are counted in a summary line.
        public var repeatLimit: Int
        /// Bytes per second at most (0: no cap); lines beyond are counted, not written.
        public var maxBytesPerSecond: Int

        public init(repeatLimit: Int = 10, maxBytesPerSecond: Int = 8_000_000) {
            self.repeatLimit = repeatLimit
            self.maxBytesPerSecond = maxBytesPerSecond
        }
    }

    struct Item: @unchecked Sendable {
        // @unchecked Sendable: timespec is two integers.
        var record: QueryRecord
        var rcode: UInt8?
        var wall: timespec
        /// When it was answered (monotonic nanoseconds): the latency's end.
        var now: UInt64
    }

    /// Lines a second's repeat counting tracks at once: a fixed table, so a flood of unique
    /// names costs no memory (two keys sharing a slot restart each other's count).
    private static let slots = 4096

    private struct State {
        var fd: Int32
        var path: String?
        var limits: Limits
        var clock = WallClock()
        var buffer: [UInt8] = []
        /// One line's timestamp, reused.
        var time: [UInt8] = []
        var windowStart: UInt64 = 0
        var bytes = 0
        /// Per slot: the key (0: empty) and its lines this second.
        var keys = [Int](repeating: 0, count: QueryLogWriter.slots)
        var counts = [Int](repeating: 0, count: QueryLogWriter.slots)
        /// The keys over the limit this second: how many lines were held back, and one of them.
        var suppressed: [Int: (count: Int, sample: Item)] = [:]
        var batch: [Item] = []
    }

    /// Lines waiting for the thread; beyond `capacity` they are dropped and counted.
    private let pending = Mutex<[Item]>([])
    private let state: Mutex<State>
    private let reopenRequested = Atomic<Bool>(false)
    private let capacity: Int
    private let dropped: Counter
    private let written = Counter(label: "dnsfence_querylog_lines_total", dimensions: [("result", "written")])
    private let suppressed = Counter(label: "dnsfence_querylog_lines_total", dimensions: [("result", "suppressed")])
    private let overRate = Counter(label: "dnsfence_querylog_lines_total", dimensions: [("result", "over_rate")])

    /// Writes to `fd` (never closed), or to the file at `path` (appended to; reopened on
    /// ``reopen()``) when given.
    public init(fd: Int32, path: String? = nil, limits: Limits = Limits(), capacity: Int = 65536, dropped: Counter) {
        var initial = State(fd: fd, path: path, limits: limits)
        if let path { initial.fd = Self.open(path) ?? fd }
        state = Mutex(initial)
        self.capacity = capacity
        self.dropped = dropped
        _ = startThread(named: "dnsfence-log") { [self] in
            while true {
                var pause = timespec(tv_sec: 0, tv_nsec: 10_000_000)
                nanosleep(&pause, nil)
                drain()
            }
        }
    }

    /// Queues one line (from any thread; never blocks on the output).
    public func submit(_ record: QueryRecord, rcode: UInt8?) {
        let item = Item(record: record, rcode: rcode, wall: WallClock.now(), now: QueryRecord.monotonicNow())
        let accepted = pending.withLock { queue in
            guard queue.count < capacity else { return false }
            queue.append(item)
            return true
        }
        if !accepted { dropped.increment() }
    }

    /// A new file or limits (reload). A file path that changed is opened now.
    public func configure(path: String?, limits: Limits) {
        state.withLock { state in
            state.limits = limits
            if path != state.path {
                if state.path != nil { close(state.fd) }
                state.path = path
                if let path, let fd = Self.open(path) { state.fd = fd } else if path == nil { state.fd = 1 }
            }
        }
    }

    /// Reopens the file on the next write (SIGUSR1, after logrotate moved it).
    public func reopen() { reopenRequested.store(true, ordering: .relaxed) }

    /// Writes everything queued now (stop, tests).
    public func flush() { drain() }

    private func drain() {
        state.withLock { state in
            pending.withLock { queue in swap(&queue, &state.batch) }
            if reopenRequested.exchange(false, ordering: .relaxed), let path = state.path, let fd = Self.open(path) {
                close(state.fd)
                state.fd = fd
            }
            let now = QueryRecord.monotonicNow()
            state.buffer.removeAll(keepingCapacity: true)
            if now >= state.windowStart + 1_000_000_000 { roll(&state, now: now) }
            for index in state.batch.indices { encode(index, into: &state) }
            state.batch.removeAll(keepingCapacity: true)
            Self.write(state.buffer, to: state.fd)
        }
    }

    private func encode(_ index: Int, into state: inout State) {
        let key = Self.key(state.batch[index].record)
        let slot = key & (Self.slots - 1)
        if state.keys[slot] != key {
            state.keys[slot] = key
            state.counts[slot] = 0
        }
        state.counts[slot] += 1
        if state.counts[slot] > state.limits.repeatLimit {
            state.suppressed[key, default: (0, state.batch[index])].count += 1
            suppressed.increment()
            return
        }
        let start = state.buffer.count
        state.time.removeAll(keepingCapacity: true)
        state.clock.append(state.batch[index].wall, to: &state.time)
        state.batch[index].record.encodeJSON(
            into: &state.buffer, rcode: state.batch[index].rcode, now: state.batch[index].now, time: state.time)
        append(line: start, into: &state)
    }

    /// Client, name (as asked, wire bytes), type and action; never 0.
    private static func key(_ record: QueryRecord) -> Int {
        var hasher = Hasher()
        hasher.combine(record.client)
        if let question = record.question {
            question.name.wire.withUnsafeBytes { hasher.combine(bytes: $0) }
            hasher.combine(question.type.rawValue)
        }
        hasher.combine(record.action.utf8.first ?? 0)
        let key = hasher.finalize()
        return key == 0 ? 1 : key
    }

    /// Ends the line begun at `start`, or takes it back when the second's byte budget is spent.
    private func append(line start: Int, into state: inout State) {
        state.buffer.append(UInt8(ascii: "\n"))
        let length = state.buffer.count - start
        if state.limits.maxBytesPerSecond > 0 && state.bytes + length > state.limits.maxBytesPerSecond {
            state.buffer.removeSubrange(start...)
            overRate.increment()
            return
        }
        state.bytes += length
        written.increment()
    }

    /// A new second: the summaries of what the last one suppressed, and fresh budgets.
    private func roll(_ state: inout State, now: UInt64) {
        state.bytes = 0
        for (_, seen) in state.suppressed {
            let start = state.buffer.count
            let record = seen.sample.record
            state.buffer.append(contentsOf: #"{"time":""#.utf8)
            state.clock.append(WallClock.now(), to: &state.buffer)
            state.buffer.append(contentsOf: #"","client":""#.utf8)
            QueryRecord.append(record.client, to: &state.buffer)
            state.buffer.append(contentsOf: #"","policy":"#.utf8)
            QueryRecord.appendString(record.policy, to: &state.buffer)
            state.buffer.append(contentsOf: #","qname":"#.utf8)
            if let question = record.question {
                QueryRecord.append(question.name, to: &state.buffer)
            } else {
                state.buffer.append(contentsOf: "null".utf8)
            }
            state.buffer.append(contentsOf: #","qtype":"#.utf8)
            QueryRecord.appendString(record.question?.type.description, to: &state.buffer)
            state.buffer.append(contentsOf: #","action":"#.utf8)
            QueryRecord.appendString(record.action, to: &state.buffer)
            state.buffer.append(contentsOf: #","suppressed":"#.utf8)
            QueryRecord.appendDecimal(UInt64(seen.count), to: &state.buffer)
            state.buffer.append(UInt8(ascii: "}"))
            append(line: start, into: &state)
        }
        state.suppressed.removeAll(keepingCapacity: true)
        for slot in state.counts.indices { state.counts[slot] = 0 }
        state.windowStart = now
    }

    private static func open(_ path: String) -> Int32? {
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        return fd >= 0 ? fd : nil
    }

    private static func write(_ bytes: [UInt8], to fd: Int32) {
        bytes.withUnsafeBytes { buffer in
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

/// The query log of one snapshot: which lines it wants, through the shared writer.
public struct JSONQueryLog: QueryLogSink {
    let writer: QueryLogWriter
    let deniedOnly: Bool

    public init(writer: QueryLogWriter, deniedOnly: Bool) {
        self.writer = writer
        self.deniedOnly = deniedOnly
    }

    public var logsAnswers: Bool { !deniedOnly }

    public func record(_ record: QueryRecord, rcode: UInt8?) {
        if deniedOnly && (record.action == "pass" || record.action == "local") { return }
        writer.submit(record, rcode: rcode)
    }

    /// RFC 3339 UTC time with microseconds, now.
    public static func timestamp() -> String {
        var clock = WallClock()
        var out: [UInt8] = []
        clock.append(WallClock.now(), to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}
