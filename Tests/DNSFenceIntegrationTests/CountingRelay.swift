import DNSFenceWire
import Foundation

/// A UDP upstream of our own that records every question it receives and relays it to a real
/// server, so a test can count what dnsfence sent upstream; with `delay`, it holds each answer
/// that long (one query at a time), an upstream that is slow but always answers.
final class CountingRelay: @unchecked Sendable {
    // @unchecked Sendable: `questions` is guarded by `lock`; the socket is used only by the
    // relay thread after init, and closed after that thread has been told to stop.
    let port: UInt16
    private let fd: Int32
    private let target: UInt16
    private let delay: useconds_t
    private let lock = NSLock()
    private var questions: [String] = []
    private var running = true

    init(relayingTo target: UInt16, delay: useconds_t = 0) {
        self.target = target
        self.delay = delay
        let (fd, port) = Harness.boundUDPSocket()
        self.fd = fd
        self.port = port
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let thread = Thread { [self] in loop() }
        thread.start()
    }

    /// Lower-cased question names received so far.
    var received: [String] {
        lock.lock()
        defer { lock.unlock() }
        return questions
    }

    func stop() {
        lock.lock()
        running = false
        lock.unlock()
    }

    private var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        return running
    }

    private func loop() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let upstream = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(upstream, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var server = sockaddr_in()
        server.sin_family = sa_family_t(AF_INET)
        server.sin_addr.s_addr = inet_addr("127.0.0.1")
        server.sin_port = target.bigEndian
        defer {
            close(upstream)
            close(fd)
        }
        while isRunning {
            var client = sockaddr_in()
            var clientLength = socklen_t(MemoryLayout<sockaddr_in>.size)
            let n = withUnsafeMutablePointer(to: &client) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    recvfrom(fd, &buffer, buffer.count, 0, $0, &clientLength)
                }
            }
            guard n > 0 else { continue }
            let query = Array(buffer[0..<n])
            if let name = (try? DNSMessage(decoding: query))?.question?.name.lowercased().description {
                lock.lock()
                questions.append(name)
                lock.unlock()
            }
            _ = withUnsafePointer(to: &server) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(upstream, query, query.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            let m = recv(upstream, &buffer, buffer.count, 0)
            guard m > 0 else { continue }
            if delay > 0 { usleep(delay) }
            _ = withUnsafePointer(to: &client) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, buffer, m, 0, $0, clientLength) }
            }
        }
    }
}
