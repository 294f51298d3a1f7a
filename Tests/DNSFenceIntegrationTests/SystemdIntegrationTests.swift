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

    @Test(
        "socket activation: a TCP and a UDP socket passed by two chained systemd-socket-activate are served",
        .enabled(
            if: Harness.tool("systemd-socket-activate") != nil,
            "needs systemd-socket-activate (Debian's systemd package; .ci/run installs it)"))
    func socketActivation() throws {
        let nsd = try NSDServer()
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort()
        let activate = try #require(Harness.tool("systemd-socket-activate"))
        let fence = try Background(
            activate,
            [
                "-l", "127.0.0.1:\(port)", activate, "-d", "-l", "127.0.0.1:\(port)", Harness.dnsfence, "serve",
                "--allow", "www.example.test", "--upstream", "127.0.0.1:\(nsd.port)",
            ], log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let dig = try #require(Harness.tool("dig"))
        // The first TCP connection makes systemd-socket-activate start dnsfence with both sockets.
        var tcp = ""
        for _ in 0..<50 {
            tcp = try Harness.run(
                dig, ["@127.0.0.1", "-p", "\(port)", "+tcp", "+tries=1", "+time=2", "www.example.test", "A"]
            ).output
            if tcp.contains("status:") { break }
            usleep(100_000)
        }
        #expect(tcp.contains("status: NOERROR") && tcp.contains("192.0.2.10"), "\(tcp)\n\(fence.output)")
        let udp = try Harness.run(
            dig, ["@127.0.0.1", "-p", "\(port)", "+notcp", "+tries=1", "+time=2", "evil.example.test", "A"]
        ).output
        #expect(udp.contains("status: NXDOMAIN"), "\(udp)")
        // The passed sockets replaced the default listener: nothing was bound on 5353.
        #expect(!fence.output.contains(":5353"), "\(fence.output)")
    }

    @Test(
        "the unit files pass systemd-analyze verify without a warning",
        .enabled(
            if: Harness.tool("systemd-analyze") != nil,
            "needs systemd-analyze (Debian's systemd package; .ci/run installs it)"))
    func unitFiles() throws {
        let directory = try Harness.temporaryDirectory()
        let units = ["dnsfence.service", "dnsfence.socket", "sandboxed-app.service"]
        for unit in units {
            // The installed path is where scripts would put the binary; verify the one built.
            let text = try String(
                contentsOf: repositoryRoot.appendingPathComponent("scripts/systemd/\(unit)"), encoding: .utf8)
            try text.replacingOccurrences(of: "/usr/local/bin/dnsfence", with: Harness.dnsfence).write(
                to: directory.appendingPathComponent(unit), atomically: true, encoding: .utf8)
        }
        let result = try Harness.run(
            try #require(Harness.tool("systemd-analyze")),
            ["verify", "--man=no"] + units.map { directory.appendingPathComponent($0).path })
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.isEmpty, "\(result.output)")
    }

    @Test("with stderr the journal's stream, log lines carry a priority and no timestamp")
    func journalLogs() throws {
        let directory = try Harness.temporaryDirectory()
        let log = directory.appendingPathComponent("dnsfence.log")
        try "".write(to: log, atomically: false, encoding: .utf8)
        var status = stat()
        #expect(stat(log.path, &status) == 0)
        let port = Harness.freePort()
        let fence = try Background(
            Harness.dnsfence,
            [
                "serve", "--listen", "127.0.0.1:\(port)", "--allow", "ok.test", "--upstream", "127.0.0.1:9",
                "--query-log", "off",
            ],
            log: log, environment: ["JOURNAL_STREAM": "\(status.st_dev):\(status.st_ino)"])
        try Harness.waitForDNS(port: port)
        fence.stop()
        let lines = fence.output.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("<6>ready ") }, "\(fence.output)")
        #expect(lines.allSatisfy { $0.hasPrefix("<") }, "\(fence.output)")
        #expect(!fence.output.contains("+0000"), "no timestamps of ours")
    }

    @Test("--version prints the version and the commit the binary was built from")
    func version() throws {
        let result = try Harness.run(Harness.dnsfence, ["--version"])
        #expect(result.status == 0)
        let head = try Harness.run(
            "/usr/bin/git", ["-c", "safe.directory=*", "-C", repositoryRoot.path, "rev-parse", "--short=12", "HEAD"])
        // A checkout (CI clones one) names its commit; a tree without git says "unknown".
        let commit = head.status == 0 ? head.output.trimmingCharacters(in: .whitespacesAndNewlines) : "unknown"
        #expect(result.output.hasPrefix("0.1.0 (commit \(commit)"), "\(result.output)")
    }
}
