import DNSFenceIO
import Dispatch
import NIOCore
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Waits (polling, up to `seconds`) until `condition` holds.
func eventually(seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9)
    while !condition() {
        if DispatchTime.now().uptimeNanoseconds > deadline { return false }
        usleep(1_000)
    }
    return true
}

@Suite("Datagram loop")
struct DatagramLoopTests {
    @Test("tasks from many threads all run, on the loop, in order per thread, also while it sleeps")
    func executeFromManyThreads() async throws {
        try await withLoops("t-execute") { loops in
            let loop = loops[0]
            let threads = 6
            let perThread = 3_000
            // Written only on the loop; read after the loop has run everything.
            let seen = Mutex<[[Int]]>(Array(repeating: [], count: threads))
            let offLoop = Atomic<Int>(0)
            DispatchQueue.concurrentPerform(iterations: threads) { thread in
                for index in 0..<perThread {
                    loop.execute {
                        if !loop.inEventLoop { offLoop.add(1, ordering: .relaxed) }
                        seen.withLock { $0[thread].append(index) }
                    }
                    // Let the loop go to sleep now and then, so wake-ups are exercised.
                    if index % 500 == 0 { usleep(2_000) }
                }
            }
            #expect(eventually { seen.withLock { $0.allSatisfy { $0.count == perThread } } })
            #expect(seen.withLock { $0.allSatisfy { $0 == Array(0..<perThread) } })
            #expect(offLoop.load(ordering: .relaxed) == 0)
            #expect(!loop.inEventLoop)
        }
    }

    @Test("timers fire in deadline order, cancelled ones never, and their futures complete")
    func timers() async throws {
        try await withLoops("t-timers") { loops in
            let loop = loops[0]
            let fired = Mutex<[Int]>([])
            let scheduled = [40, 10, 30, 20, 50].map { milliseconds in
                loop.scheduleTask(in: .milliseconds(Int64(milliseconds))) { () -> Int in
                    fired.withLock { $0.append(milliseconds) }
                    return milliseconds
                }
            }
            scheduled[2].cancel()  // the 30 ms one
            #expect(try await scheduled[4].futureResult.get() == 50)
            #expect(fired.withLock { $0 } == [10, 20, 40, 50])
            await #expect(throws: EventLoopError.self) { try await scheduled[2].futureResult.get() }
            // Scheduled from the loop itself, and a deadline already past.
            let nested = try await loop.submit {
                loop.scheduleTask(deadline: .now() - .seconds(1)) { "late" }
            }.get()
            #expect(try await nested.futureResult.get() == "late")
        }
    }

    @Test("an echo socket answers a burst of datagrams, each to its sender, nothing lost")
    func echoBurst() async throws {
        try await withLoops("t-server", "t-client") { loops in
            let (server, client) = (loops[0], loops[1])
            let echo = try await DatagramSocket.bind(
                try SocketAddress(ipAddress: "127.0.0.1", port: 0), on: server
            ) { socket, bytes, peer in
                socket.send(bytes, to: peer)
            }
            let received = Mutex<[UInt16: Int]>([:])
            let senders = try await (0..<3).asyncMap { _ in
                try await DatagramSocket.bind(try SocketAddress(ipAddress: "127.0.0.1", port: 0), on: client) {
                    socket, bytes, peer in
                    #expect(peer == echo.localAddress)
                    let value = bytes.load(as: UInt16.self)
                    // Each echo comes back to the socket that sent it (its port is in the payload).
                    #expect(bytes.load(fromByteOffset: 2, as: UInt16.self) == socket.localAddress.port)
                    received.withLock { $0[value, default: 0] += 1 }
                }
            }
            // Rounds of 120 (40 per sender, one sendmmsg each): a bigger burst overflows the
            // echo socket's kernel buffer (UdpRcvbufErrors), which is loss we do not cause.
            let rounds = 5
            let perRound = 120
            for round in 0..<rounds {
                try await client.submit {
                    for value in (round * perRound)..<((round + 1) * perRound) {
                        let sender = senders[value % senders.count]
                        var payload = [UInt8](repeating: 0, count: 64)
                        payload.withUnsafeMutableBytes {
                            $0.storeBytes(of: UInt16(value), as: UInt16.self)
                            $0.storeBytes(of: sender.localAddress.port, toByteOffset: 2, as: UInt16.self)
                        }
                        sender.send(payload, to: echo.localAddress)
                    }
                }.get()
                let expected = (round + 1) * perRound
                #expect(eventually { received.withLock { $0.count } == expected }, "\(received.withLock { $0.count })")
            }
            #expect(received.withLock { $0.values.allSatisfy { $0 == 1 } })
            #expect(try await server.submit { echo.dropped }.get() == 0)
        }
    }

    @Test("binding a port in use without SO_REUSEPORT is a clear error; shutdown closes sockets")
    func bindErrorsAndShutdown() async throws {
        let loop = try DatagramLoop(name: "t-bind")
        let first = try await DatagramSocket.bind(try SocketAddress(ipAddress: "127.0.0.1", port: 0), on: loop) {
            _, _, _ in
        }
        let taken = try SocketAddress(ipAddress: "127.0.0.1", port: Int(first.localAddress.port))
        let error = await #expect(throws: DatagramError.self) {
            _ = try await DatagramSocket.bind(taken, on: loop) { _, _, _ in }
        }
        #expect(error?.description.contains("Address already in use") == true)
        try await loop.shutdownGracefully()
        // The port is free again once the loop has closed its sockets.
        try await withLoops("t-bind-2") { loops in
            let rebound = try await DatagramSocket.bind(taken, on: loops[0]) { _, _, _ in }
            #expect(rebound.localAddress.port == first.localAddress.port)
        }
    }
}

/// Runs `body` with fresh loops and shuts them down afterwards, also when it throws.
func withLoops(_ names: String..., body: ([DatagramLoop]) async throws -> Void) async throws {
    let loops = try names.map { try DatagramLoop(name: $0) }
    do {
        try await body(loops)
    } catch {
        for loop in loops { try? await loop.shutdownGracefully() }
        throw error
    }
    for loop in loops { try await loop.shutdownGracefully() }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}

@Suite("Datagram socket backlog")
struct DatagramBacklogTests {
    @Test("a socket queues at most backlogLimit datagrams per turn and counts the rest as dropped")
    func backlogBound() async throws {
        try await withLoops("t-backlog") { loops in
            let loop = loops[0]
            let received = Atomic<Int>(0)
            let sink = try await DatagramSocket.bind(try SocketAddress(ipAddress: "127.0.0.1", port: 0), on: loop) {
                _, _, _ in received.add(1, ordering: .relaxed)
            }
            let source = try await DatagramSocket.bind(try SocketAddress(ipAddress: "127.0.0.1", port: 0), on: loop) {
                _, _, _ in
            }
            let extra = 3
            let dropped = try await loop.submit { () -> Int in
                for _ in 0..<(DatagramSocket.backlogLimit + extra) { source.send([1, 2, 3], to: sink.localAddress) }
                return source.dropped
            }.get()
            #expect(dropped == extra)
            // What was queued leaves (the kernel may drop some at the receiver: not ours to count).
            #expect(eventually { received.load(ordering: .relaxed) > 0 })
            #expect(try await loop.submit { source.dropped }.get() == extra)
        }
    }
}
