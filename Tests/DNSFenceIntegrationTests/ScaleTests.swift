import Foundation
import Testing

/// One dnsfence for a thousand sandboxes: a namespace each, with a listener, a policy and sets of
/// its own, given as a thousand drop-ins. Start-up and reload times are printed, not asserted
/// (they are a benchmark's business: scripts/bench-sandboxes.sh, on a release build); what is
/// asserted is that everything comes up, that a reload adds a sandbox, that the number of
/// threads does not depend on the number of sandboxes, and that sets stay isolated.
@Suite(
    "a thousand sandboxes", .serialized,
    .enabled(if: isRoot && Harness.tool("nsd") != nil, "needs root (namespaces, nftables) and nsd"))
final class ScaleTests {
    static let count = 1000
    let id = String(UInt32.random(in: 0..<UInt32.max), radix: 16)
    var host: String { "dfkh-\(id)" }
    func sandbox(_ i: Int) -> String { "dfk\(id)-\(i)" }
    func listener(_ i: Int) -> String { "127.77.\(i >> 8).\(i & 255)" }
    func address(_ i: Int) -> String { "10.50.\(i >> 8).\(i & 255)" }
    let directory: URL
    var made = 0

    init() throws {
        directory = try Harness.temporaryDirectory()
        try FileManager.default.createDirectory(
            at: directory.appendingPathComponent("d"), withIntermediateDirectories: true)
        _ = try sh("ip netns add \(host) && ip -n \(host) link set lo up")
    }

    deinit {
        let batch = (1...max(made, 1)).map { "netns del \(sandbox($0))" }.joined(separator: "\n")
        try? batch.write(to: directory.appendingPathComponent("del.batch"), atomically: true, encoding: .utf8)
        _ = try? sh("ip -force -batch \(directory.path)/del.batch 2>/dev/null; ip netns del \(host)")
    }

    /// Namespaces and drop-ins for sandboxes `range`.
    func add(_ range: ClosedRange<Int>) throws {
        let batch = range.map { "netns add \(sandbox($0))" }.joined(separator: "\n")
        try batch.write(to: directory.appendingPathComponent("add.batch"), atomically: true, encoding: .utf8)
        _ = try sh("ip -batch \(directory.path)/add.batch")
        made = max(made, range.upperBound)
        for i in range {
            try """
            listen: [{ address: "\(listener(i)):53", policy: sb\(i) }]
            policies:
              sb\(i):
                allow: ["n\(i).scale.test"]
                firewall: { netns: /run/netns/\(sandbox(i)), table: inet fence, ipv4-set: allow4, create: true }

            """.write(
                to: directory.appendingPathComponent("d/sb\(i).yaml"), atomically: true, encoding: .utf8)
        }
    }

    /// Starts dnsfence on the drop-ins in the host namespace; waits for its "ready" line.
    func serve(upstream: UInt16) throws -> (Background, Double) {
        try "upstreams: [127.0.0.1:\(upstream)]\ndrop-ins: d\nlog: { queries: off }\n".write(
            to: directory.appendingPathComponent("fence.yaml"), atomically: true, encoding: .utf8)
        let started = Date()
        let server = try Background(
            "/usr/sbin/ip",
            [
                "netns", "exec", host, Harness.dnsfence, "serve", "--config", directory.path + "/fence.yaml",
                "--threads", "2",
            ], log: directory.appendingPathComponent("serve-\(made).log"))
        for _ in 0..<1200 where !server.output.contains("[dnsfence] ready") {
            if server.exitStatus(within: 0.05) != nil { break }
        }
        try #require(server.output.contains("[dnsfence] ready"), "\(server.output.suffix(2000))")
        return (server, Date().timeIntervalSince(started))
    }

    /// The names of dnsfence's own threads and SwiftNIO's (`ip netns exec` execs dnsfence, so
    /// the Background's pid is dnsfence's), sorted; and how many threads there are in all.
    /// Dispatch's and the concurrency runtime's pools come and go with load (at most a few per
    /// core), so only the named ones are compared exactly.
    func threads(_ server: Background) throws -> (named: [String], all: Int) {
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(server.pid)/task")
        let names = tasks.compactMap { task in
            (try? String(contentsOfFile: "/proc/\(server.pid)/task/\(task)/comm", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return (names.filter { $0.hasPrefix("dnsfence-") || $0.hasPrefix("NIO-ELT") }.sorted(), tasks.count)
    }

    func resolve(_ i: Int) throws -> String {
        try sh("ip netns exec \(host) dig +short +tries=1 +time=3 @\(listener(i)) n\(i).scale.test A")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func set(_ i: Int) throws -> String { try sh("ip netns exec \(sandbox(i)) nft list set inet fence allow4") }

    @Test("a thousand start, one more comes with a reload, threads stay the same, sets stay apart")
    func thousand() throws {
        let port = Harness.freePort()
        let records =
            "$ORIGIN scale.test.\n$TTL 300\n@ SOA ns h 1 3600 600 86400 60\n@ NS ns\nns A 127.0.0.1\n"
            + (1...Self.count + 1).map { "n\($0) A \(address($0))" }.joined(separator: "\n") + "\n"
        let nsd = try NSDServer.start(
            zone: "scale.test", records: records, address: "127.0.0.1", port: port, in: host, directory: directory)
        defer { nsd.stop() }

        try add(1...1)
        let (one, _) = try serve(upstream: port)
        let threadsAtOne = try threads(one)
        one.stop()

        try add(2...Self.count)
        let (server, startup) = try serve(upstream: port)
        defer { server.stop() }
        let threadsAtMany = try threads(server)
        #expect(threadsAtMany.named == threadsAtOne.named, "dnsfence's threads with 1 and with \(Self.count) sandboxes")
        #expect(threadsAtMany.all <= threadsAtOne.named.count + 16, "all threads: \(threadsAtMany.all)")
        for i in [1, Self.count / 2, Self.count] { #expect(try resolve(i) == address(i), "sandbox \(i) answers") }

        try add(Self.count + 1...Self.count + 1)
        let reloadStarted = Date()
        kill(server.pid, SIGHUP)
        var reloaded = false
        for _ in 0..<1200 where !reloaded {
            reloaded = server.output.contains("[dnsfence] reloaded")
            if !reloaded { usleep(10_000) }
        }
        let reload = Date().timeIntervalSince(reloadStarted)
        #expect(reloaded, "\(server.output.suffix(2000))")
        #expect(try resolve(Self.count + 1) == address(Self.count + 1), "the sandbox the reload added answers")
        print(
            "scale: \(Self.count) sandboxes started in \(startup) s (debug build); a reload adding one took \(reload) s"
        )

        // Each address is in its own sandbox's set and in no other.
        for i in [1, Self.count / 2, Self.count, Self.count + 1] {
            #expect(try set(i).contains(address(i)), "sandbox \(i) has its address")
            let other = i == 1 ? 2 : i - 1
            #expect(try !set(other).contains(address(i) + " "), "sandbox \(other) does not have sandbox \(i)'s")
        }
    }

    /// Sockets open in `pid` (listeners, upstream, netlink).
    func sockets(_ pid: pid_t) throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").filter { fd in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"))?
                .hasPrefix("socket:") == true
        }.count
    }

    @Test("a sandbox a reload removes gives back all five of its sockets, netlink ones included")
    func retired() throws {
        let port = Harness.freePort()
        let records =
            "$ORIGIN scale.test.\n$TTL 300\n@ SOA ns h 1 3600 600 86400 60\n@ NS ns\nns A 127.0.0.1\n"
            + (1...3).map { "n\($0) A \(address($0))" }.joined(separator: "\n") + "\n"
        let nsd = try NSDServer.start(
            zone: "scale.test", records: records, address: "127.0.0.1", port: port, in: host, directory: directory)
        defer { nsd.stop() }
        try add(1...3)
        let (server, _) = try serve(upstream: port)
        defer { server.stop() }
        #expect(try resolve(3) == address(3))
        let before = try sockets(server.pid)
        try FileManager.default.removeItem(at: directory.appendingPathComponent("d/sb3.yaml"))
        kill(server.pid, SIGHUP)
        for _ in 0..<500 where !server.output.contains("[dnsfence] reloaded") { usleep(10_000) }
        try #require(server.output.contains("[dnsfence] reloaded"), "\(server.output.suffix(2000))")
        usleep(200_000)
        // Two UDP sockets (--threads 2) and the TCP listener, and the namespace's nfnetlink and
        // monitor sockets, which would otherwise keep a deleted namespace alive.
        #expect(try before - sockets(server.pid) == 5, "sockets before: \(before)")
        #expect(server.output.contains("nftables namespace retired"))
        #expect(try resolve(1) == address(1), "the others keep serving")
    }
}
