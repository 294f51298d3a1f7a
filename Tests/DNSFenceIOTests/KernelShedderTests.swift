import DNSFenceCore
import DNSFenceIO
import NIOCore
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The rate limiter's kernel filter on real sockets: what it is told to block is dropped before
/// the socket sees it, and nothing else.
@Suite(
    "kernel shedding",
    .enabled(if: geteuid() == 0, "needs root (CAP_BPF) to load the socket filter; CI runs as root"))
struct KernelShedderTests {
    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    static func limits(slip: UInt32 = 0) -> RateLimits {
        RateLimits(queries: 100, burst: 100, ipv4Prefix: 24, ipv6Prefix: 56, slip: slip, exempt: [])
    }

    /// A receiving socket with the filter on `address`, senders from `sources` (each tagged by
    /// its index in the first payload byte), and what arrived from each.
    final class Tally: Sendable {
        let counts: Mutex<[Int]>
        init(_ sources: Int) { counts = Mutex(Array(repeating: 0, count: sources)) }
    }

    final class Bench: Sendable {
        let shedder: KernelShedder
        let receiver: DatagramSocket
        let senders: [DatagramSocket]
        let tally: Tally

        init(_ shedder: KernelShedder, at address: String, from sources: [String], loop: DatagramLoop) async throws {
            let tally = Tally(sources.count)
            self.tally = tally
            self.shedder = shedder
            receiver = try await DatagramSocket.bind(try SocketAddress(ipAddress: address, port: 0), on: loop) {
                _, bytes, _ in
                tally.counts.withLock { $0[Int(bytes[0])] += 1 }
            }
            try shedder.attach(to: receiver)
            senders = try await sources.asyncMap {
                try await DatagramSocket.bind(try SocketAddress(ipAddress: $0, port: 0), on: loop) { _, _, _ in }
            }
        }

        /// Sends `count` datagrams from source `index` and returns how many arrived: waits until
        /// each has arrived or been dropped by the filter (whose counter moves as the sender
        /// sends, on loopback), or for 10 s (a loaded machine is slow, but nothing is lost).
        func send(from index: Int, count: Int) async throws -> Int {
            let before = tally.counts.withLock { $0[index] }
            let droppedBefore = shedder.dropped
            let (sender, target) = (senders[index], receiver.localAddress)
            try await sender.loop.submit {
                for _ in 0..<count { sender.send([UInt8(index), 0, 0, 0], to: target) }
            }.get()
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(10)
            func arrived() -> Int { tally.counts.withLock { $0[index] } - before }
            while arrived() + Int(shedder.dropped - droppedBefore) < count && clock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            return arrived()
        }
    }

    @Test("an IPv4 address and its prefix are dropped while blocked, others and expired blocks pass")
    func ipv4() async throws {
        let shedder = try KernelShedder()
        shedder.configure(Self.limits())
        try await withLoops("t-shed4") { loops in
            // 127.0.0.1 and 127.0.0.2 share a /24; 127.0.1.1 does not.
            let bench = try await Bench(
                shedder, at: "127.0.0.1", from: ["127.0.0.1", "127.0.0.2", "127.0.1.1"], loop: loops[0])
            #expect(try await bench.send(from: 0, count: 5) == 5)
            let later = Self.monotonicNanoseconds() + 600_000_000_000  // longer than any test run
            shedder.block(kind: 0, key: 0x7F00_0001, until: later, interval: 1, expires: later)
            #expect(try await bench.send(from: 0, count: 20) == 0, "the blocked address")
            #expect(try await bench.send(from: 1, count: 5) == 5, "its neighbour has its own verdict")
            #expect(shedder.dropped == 20)
            // The prefix: 127.0.0.0/24 is key 0x7F0000 of kind 1.
            shedder.block(kind: 1, key: 0x7F_0000, until: later, interval: 1, expires: later)
            #expect(try await bench.send(from: 1, count: 5) == 0, "its prefix is blocked")
            #expect(try await bench.send(from: 2, count: 5) == 5, "another prefix passes")
            // A block in the past is no block.
            let past = Self.monotonicNanoseconds() - 1
            shedder.block(kind: 0, key: 0x7F00_0001, until: past, interval: 1, expires: later)
            shedder.block(kind: 1, key: 0x7F_0000, until: past, interval: 1, expires: later)
            #expect(try await bench.send(from: 0, count: 5) == 5)
            #expect(shedder.dropped == 25)
            // Rate limits off (or not in the kernel): everything passes, blocked or not.
            shedder.block(kind: 0, key: 0x7F00_0001, until: later, interval: 1, expires: later)
            shedder.configure(nil)
            #expect(try await bench.send(from: 0, count: 5) == 5)
            var userspace = Self.limits()
            userspace.kernel = false
            shedder.configure(userspace)
            #expect(try await bench.send(from: 0, count: 5) == 5)
            #expect(shedder.dropped == 25)
        }
    }

    @Test("past `until`, one datagram per interval passes; a block past `expires` is forgotten")
    func pacedAndStale() async throws {
        let shedder = try KernelShedder()
        shedder.configure(Self.limits())
        try await withLoops("t-shed-pace") { loops in
            let bench = try await Bench(shedder, at: "127.0.0.1", from: ["127.0.0.3"], loop: loops[0])
            let now = Self.monotonicNanoseconds()
            let hour: UInt64 = 3_600_000_000_000
            // Due now, then one an hour (not shorter: a loaded run of the whole suite has taken
            // over a minute between two of these sends): of a burst, the first passes.
            shedder.block(kind: 0, key: 0x7F00_0003, until: now, interval: hour, expires: now + 2 * hour)
            #expect(try await bench.send(from: 0, count: 20) == 1)
            #expect(try await bench.send(from: 0, count: 5) == 0, "the next is an hour away")
            #expect(shedder.dropped == 24)
            // Blocked for an hour, but the block expired: forgotten.
            shedder.block(kind: 0, key: 0x7F00_0003, until: now + hour, interval: 1, expires: now)
            #expect(try await bench.send(from: 0, count: 5) == 5)
        }
    }

    @Test("IPv6: the address is its /64; with slip on, one in 16 blocked datagrams passes")
    func ipv6AndSlip() async throws {
        let shedder = try KernelShedder()
        shedder.configure(Self.limits())
        try await withLoops("t-shed6") { loops in
            let bench = try await Bench(shedder, at: "::1", from: ["::1"], loop: loops[0])
            #expect(try await bench.send(from: 0, count: 5) == 5)
            // ::1's high 64 bits are 0 (kind 2).
            let later = Self.monotonicNanoseconds() + 600_000_000_000
            shedder.block(kind: 2, key: 0, until: later, interval: 1, expires: later)
            #expect(try await bench.send(from: 0, count: 10) == 0)
            shedder.configure(Self.limits(slip: 2))
            let passed = try await bench.send(from: 0, count: 1600)
            #expect((50...150).contains(passed), "about 100 of 1,600: \(passed)")
            #expect(shedder.dropped == UInt64(10 + 1600 - passed))
        }
    }
}
