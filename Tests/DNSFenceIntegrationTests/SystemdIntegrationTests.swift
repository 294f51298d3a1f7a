import Foundation
import Testing

/// A Unix datagram socket standing in for systemd's NOTIFY_SOCKET.
final class NotifySocket {
    let path: String
    let fd: Int32

    init(directory: URL) throws {
        path = directory.appendingPathComponent("notify.sock").path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else { throw HarnessError.notReady("cannot bind \(path)") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// The next notification (nil after 10 s without one).
    func next() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : nil
    }
}

@Suite("systemd integration")
struct SystemdIntegrationTests {
    @Test("READY=1 once serving, RELOADING=1 (with MONOTONIC_USEC) then READY=1 around a reload, STOPPING=1")
    func notifications() throws {
        let directory = try Harness.temporaryDirectory()
        let notify = try NotifySocket(directory: directory)
        let port = Harness.freePort()
        let fence = try Background(
            Harness.dnsfence,
            ["serve", "--listen", "127.0.0.1:\(port)", "--allow", "ok.test", "--upstream", "127.0.0.1:9"],
            log: directory.appendingPathComponent("dnsfence.log"), environment: ["NOTIFY_SOCKET": notify.path])
        defer { fence.stop() }
        let ready = try #require(notify.next(), "no notification: \(fence.output)")
        #expect(ready.contains("READY=1"))
        #expect(ready.contains("STATUS=serving 1 policies"))
        try Harness.waitForDNS(port: port)  // READY=1 came after the listeners were bound

        kill(fence.pid, SIGHUP)
        let reloading = try #require(notify.next())
        #expect(reloading.contains("RELOADING=1"))
        let monotonic = reloading.split(separator: "\n").first { $0.hasPrefix("MONOTONIC_USEC=") }
        #expect(monotonic.flatMap { UInt64($0.dropFirst("MONOTONIC_USEC=".count)) } ?? 0 > 0)
        #expect(try #require(notify.next()).contains("READY=1"))

        kill(fence.pid, SIGTERM)
        #expect(try #require(notify.next()).contains("STOPPING=1"))
    }

    @Test("--version prints the version")
    func version() throws {
        let result = try Harness.run(Harness.dnsfence, ["--version"])
        #expect(result.status == 0)
        #expect(result.output.split(separator: ".").count == 3, "\(result.output)")
    }
}
