// DNSFenceObserve: the HTTP endpoint for metrics and health, and the non-blocking writer
// behind the query log. Knows nothing about DNS.

public import CoreMetrics
import DNSFenceCore

#if canImport(Glibc)
    import Glibc
#endif

/// Writes text lines to a file descriptor from its own thread. `write` never blocks: lines
/// go into a bounded queue, and when it is full they are dropped and counted.
public final class LineWriter: Sendable {
    private let thread: JobThread<String>
    private let dropped: Counter

    /// `fd` is written to and never closed; `droppedCounter` counts lines lost to a full queue.
    public init(fd: Int32, capacity: Int = 8192, droppedCounter: Counter) {
        self.dropped = droppedCounter
        thread = JobThread(name: "dnsfence-log", capacity: capacity) { batch in Self.write(batch, to: fd) }
    }

    /// Queues `line` (a newline is added); drops it if the queue is full.
    public func write(_ line: String) {
        if !thread.submit(line) { dropped.increment() }
    }

    /// Writes a batch of lines with one write(2) where the kernel takes it all.
    private static func write(_ batch: [String], to fd: Int32) {
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
