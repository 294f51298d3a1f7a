import CCore
import DNSFenceWire
import Foundation
import Testing

/// Helpers to run real processes (dnsfence, nsd, dig, kdig) on loopback ports of their own.
enum Harness {
    /// The directory holding the built products (`dnsfence` next to the test bundle).
    static var productsDirectory: URL {
        let exe = URL(
            fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "")
        var dir = exe.deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("dnsfence").path), dir.path != "/" {
            dir = dir.deletingLastPathComponent()
        }
        return dir
    }

    static var dnsfence: String { productsDirectory.appendingPathComponent("dnsfence").path }

    static func tool(_ name: String) -> String? {
        for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
        where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        return nil
    }

    struct Result {
        var status: Int32
        var output: String
    }

    /// Runs a command to completion, stdout and stderr together.
    static func run(_ path: String, _ arguments: [String]) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }

    /// A fresh temporary directory.
    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("dnsfence-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// A port that was free a moment ago for both UDP and TCP, picked below the kernel's
    /// ephemeral range (32768–60999) so sockets other processes open with port 0 (dnsfence's
    /// upstream socket pool among them) cannot take it before the test binds it.
    static func freePort() -> UInt16 {
        while true {
            let port = UInt16.random(in: 20000..<32000)
            if canBind(port, type: Int32(SOCK_DGRAM.rawValue)) && canBind(port, type: Int32(SOCK_STREAM.rawValue)) {
                return port
            }
        }
    }

    /// A UDP socket bound to 127.0.0.1 on a port the kernel picks: its descriptor and port.
    static func boundUDPSocket() -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, UInt16(bigEndian: address.sin_port))
    }

    /// A TCP connection to 127.0.0.1:`port` (its descriptor), or nil.
    static func connectTCP(port: UInt16) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        if !connected { close(fd) }
        return connected ? fd : nil
    }

    static func canBind(_ port: UInt16, type: Int32) -> Bool {
        let fd = socket(AF_INET, type, 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = port.bigEndian
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        } == 0
    }

    /// Starts `dnsfence serve ARGUMENTS` and waits until it answers DNS on 127.0.0.1:`port`; if
    /// it never does, stops it and throws with its log.
    static func serve(_ arguments: [String], port: UInt16, log: URL) throws -> Background {
        let process = try Background(dnsfence, ["serve"] + arguments, log: log)
        do {
            try waitForDNS(port: port)
        } catch {
            process.stop()
            throw HarnessError.notReady(
                "dnsfence serve \(arguments) never answered on port \(port):\n\(process.output)")
        }
        return process
    }

    /// Waits until `port` on 127.0.0.1 answers a DNS query over UDP.
    static func waitForDNS(port: UInt16, name: String = "probe.invalid") throws {
        for _ in 0..<100 {
            if let dig = tool("dig"),
                let r = try? run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=1", name]),
                r.output.contains("status:")
            {
                return
            }
            usleep(100_000)
        }
        throw HarnessError.notReady("nothing answers DNS on port \(port)")
    }
}

enum HarnessError: Error {
    case notReady(String)
}

/// A running process (spawned with posix_spawn, output to a log file), stopped with SIGTERM.
final class Background: @unchecked Sendable {
    // @unchecked Sendable: `pid` is written once in init and read-only after; stop() is
    // idempotent through waitpid's own bookkeeping.
    let pid: pid_t
    let log: URL

    /// Starts `path ARGUMENTS` with `environment` added to this process's.
    init(_ path: String, _ arguments: [String], log: URL, environment: [String: String] = [:]) throws {
        self.log = log
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, log.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        // Nothing else of the test runner's (hundreds of sockets and pipes) is inherited.
        dnsfence_spawn_close_from(&actions, 3)
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        // The test runner blocks and ignores signals; a child gets the defaults, or SIGTERM
        // would wait (blocked) until stop() falls back to SIGKILL.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t()
        sigfillset(&all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        var child: pid_t = 0
        var variables = ProcessInfo.processInfo.environment
        for (key, value) in environment { variables[key] = value }
        let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        let rc = posix_spawn(&child, path, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw HarnessError.notReady("cannot start \(path): \(String(cString: strerror(rc)))") }
        pid = child
    }

    /// SIGTERM, then SIGKILL after 5 s; reaps the child.
    func stop() {
        guard kill(pid, 0) == 0 else { return }
        kill(pid, SIGTERM)
        var status: Int32 = 0
        for _ in 0..<50 {
            if waitpid(pid, &status, WNOHANG) == pid { return }
            usleep(100_000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
    }

    /// Waits up to `seconds` for the child to exit: its exit status (128 + N if signal N
    /// ended it), or nil if it is still running.
    func exitStatus(within seconds: Double) -> Int32? {
        var status: Int32 = 0
        for _ in 0..<max(1, Int(seconds * 10)) {
            if waitpid(pid, &status, WNOHANG) == pid {
                return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + status & 0x7f
            }
            usleep(100_000)
        }
        return nil
    }

    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// Runs a shell script to completion (at most `seconds`, then SIGKILL) through posix_spawn
    /// and waitpid: for commands like `podman run -d`, whose helpers outlive them, and after
    /// which Foundation's Process was seen never to report the exit.
    static func script(_ script: String, seconds: Double = 300) throws -> Harness.Result {
        let log = try Harness.temporaryDirectory().appendingPathComponent("script.log")
        let child = try Background("/bin/sh", ["-c", script], log: log)
        guard let status = child.exitStatus(within: seconds) else {
            child.stop()
            return Harness.Result(status: -1, output: child.output + "\n(killed after \(seconds) s)")
        }
        return Harness.Result(status: status, output: child.output)
    }

    /// Fixtures/tcp_tool.py with `arguments` (serve, http, hold, …), inside `netns` (nil: here).
    static func tcpTool(_ arguments: [String], in netns: String?, log: URL) throws -> Background {
        let tool = ["python3", fixtures.appendingPathComponent("tcp_tool.py").path] + arguments
        if let netns { return try Background("/usr/sbin/ip", ["netns", "exec", netns] + tool, log: log) }
        return try Background("/usr/bin/env", tool, log: log)
    }
}

/// An authoritative nsd on a loopback port, serving `example.test`.
final class NSDServer {
    let port: UInt16
    let directory: URL
    let daemon: Background

    static let zone = """
        $ORIGIN example.test.
        $TTL 300
        @ IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 60
        @ IN NS ns1
        ns1 IN A 127.0.0.1
        www IN A 192.0.2.10
        www IN A 192.0.2.11
        www IN AAAA 2001:db8::10
        alias IN CNAME www
        short IN A 192.0.2.20
        loop1 IN CNAME loop2
        loop2 IN CNAME loop1
        """

    init(fixedPort: UInt16? = nil) throws {
        directory = try Harness.temporaryDirectory()
        self.port = fixedPort ?? Harness.freePort()
        var zone = Self.zone + "\n"
        // A large answer: 60 TXT records of 100 bytes, far more than 1232 bytes.
        for i in 0..<60 { zone += "big IN TXT \"\(String(repeating: "x", count: 96))\(String(format: "%04d", i))\"\n" }
        daemon = try Self.start(
            zone: "example.test", records: zone, address: "127.0.0.1", port: port, in: nil, directory: directory)
        try Harness.waitForDNS(port: port, name: "www.example.test")
    }

    deinit { daemon.stop() }

    /// An nsd on `address`:`port` serving `zone` (an origin, such as `example.test`) from the
    /// zone file text `records`, its files in `directory`, run inside `netns` (nil: here).
    static func start(
        zone: String, records: String, address: String, port: UInt16, in netns: String?, directory: URL
    ) throws -> Background {
        try records.write(to: directory.appendingPathComponent("\(zone).zone"), atomically: true, encoding: .utf8)
        try configuration(address: address, port: port, directory: directory.path, zone: zone)
            .write(to: directory.appendingPathComponent("nsd.conf"), atomically: true, encoding: .utf8)
        let nsd = ["nsd", "-d", "-c", "\(directory.path)/nsd.conf"]
        let log = directory.appendingPathComponent("nsd.out")
        if let netns { return try Background("/usr/sbin/ip", ["netns", "exec", netns] + nsd, log: log) }
        guard let path = Harness.tool("nsd") else { throw HarnessError.notReady("nsd is not installed") }
        return try Background(path, Array(nsd.dropFirst()), log: log)
    }

    /// nsd.conf serving `ZONE.zone` from `directory` on `address`:`port`, response rate
    /// limiting off (benchmarks and tests send many answers to one client).
    static func configuration(address: String, port: UInt16, directory d: String, zone: String = "example.test")
        -> String
    {
        """
        server:
          ip-address: \(address)@\(port)
          port: \(port)
          username: ""
          zonesdir: "\(d)"
          database: ""
          pidfile: "\(d)/nsd.pid"
          xfrdfile: "\(d)/xfrd.state"
          zonelistfile: "\(d)/zone.list"
          logfile: "\(d)/nsd.log"
          server-count: 1
          rrl-ratelimit: 0
        remote-control:
          control-enable: no
        zone:
          name: \(zone)
          zonefile: \(zone).zone
        """
    }
}
