import Foundation
import Testing

/// A descriptor table that runs full: dnsfence started with a hard RLIMIT_NOFILE of 100 (it
/// raises its soft limit to the hard one, and needs about 90 with one thread), then more TCP
/// clients than fit. Accept must back off rather than spin on the readable listener, UDP must
/// keep answering, TCP must recover once clients leave, and SIGTERM must still end it cleanly.
@Suite("descriptor exhaustion")
struct DescriptorExhaustionTests {
    /// User plus system CPU time of `pid`, in clock ticks.
    static func cpuTicks(_ pid: pid_t) -> Int {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return -1 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
        return (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0)
    }

    @Test("a full descriptor table: no spinning, UDP answers, TCP recovers, SIGTERM exits 0")
    func fullTable() throws {
        let prlimit = try #require(Harness.tool("prlimit"), "prlimit (util-linux)")
        let dig = try #require(Harness.tool("dig"), "dig (dnsutils)")
        let port = Harness.freePort()
        let log = try Harness.temporaryDirectory().appendingPathComponent("serve.log")
        let server = try Background(
            prlimit,
            [
                "--nofile=100:100", "--", Harness.dnsfence, "serve", "--listen", "127.0.0.1:\(port)",
                "--allow", "*.example.test", "--upstream", "127.0.0.1:9", "--threads", "1", "--no-firewall",
            ], log: log)
        defer { server.stop() }
        try Harness.waitForDNS(port: port)

        var clients: [Int32] = []
        defer { clients.forEach { close($0) } }
        for _ in 0..<80 {
            if let fd = Harness.connectTCP(port: port) { clients.append(fd) }
        }
        // Connections the kernel completed but dnsfence cannot accept wait in the backlog.
        #expect(clients.count > 20)
        usleep(300_000)
        let before = Self.cpuTicks(server.pid)
        sleep(2)
        let used = Self.cpuTicks(server.pid) - before
        #expect(
            used >= 0 && used < 30, "CPU ticks in 2 s with the table full: \(used) (a spinning accept loop uses ~200)")

        let denied = try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=2", "x.other.test"])
        #expect(denied.output.contains("status: NXDOMAIN"), "UDP still answers: \(denied.output)")

        clients.forEach { close($0) }
        clients = []
        var overTCP = Harness.Result(status: -1, output: "")
        for _ in 0..<30 where !overTCP.output.contains("status: NXDOMAIN") {
            overTCP = try Harness.run(
                dig, ["@127.0.0.1", "-p", "\(port)", "+tcp", "+tries=1", "+time=1", "y.other.test"])
        }
        #expect(overTCP.output.contains("status: NXDOMAIN"), "TCP answers once clients leave: \(overTCP.output)")

        kill(server.pid, SIGTERM)
        #expect(server.exitStatus(within: 5) == 0, "SIGTERM drains and exits 0: \(server.output)")
    }
}
