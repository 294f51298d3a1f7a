import Foundation
import Testing

/// "The internet" for `dnsfence run`: a namespace linked to the host (10.88.K.0/24) with HTTP
/// servers on 10.88.K.3 and .4, and an nsd on the host's loopback (behind a counting relay)
/// whose example.test names point there. Sandboxes reach nothing else.
final class RunWorld {
    let id = UInt32.random(in: 0..<UInt32.max)
    var netns: String { "dfi-\(String(id, radix: 16))" }
    var hostLink: String { "dfi\(String(id, radix: 16))" }
    let subnet: String
    /// The same in IPv6: fd88:K::/64.
    var subnet6: String { "fd88:\(String(id % 250 + 1, radix: 16))" }
    let directory: URL
    let relay: CountingRelay
    var processes: [Background] = []
    let nsdPort: UInt16

    init() throws {
        subnet = "10.88.\(id % 250 + 1)"
        directory = try Harness.temporaryDirectory()
        nsdPort = Harness.freePort()
        relay = CountingRelay(relayingTo: nsdPort)
        try sh(
            """
            set -e
            ip netns add \(netns)
            ip link add \(hostLink) type veth peer name eth0 netns \(netns)
            ip addr add \(subnet).1/24 dev \(hostLink); ip link set \(hostLink) up
            ip -n \(netns) link set lo up
            for a in 2 3 4; do ip -n \(netns) addr add \(subnet).$a/24 dev eth0; done
            for a in 2 3 4; do ip -n \(netns) addr add \(subnet6)::$a/64 dev eth0 nodad; done
            ip addr add \(subnet6)::1/64 dev \(hostLink) nodad
            ip -n \(netns) link set eth0 up
            ip -n \(netns) route add default via \(subnet).1
            ip -n \(netns) -6 route add default via \(subnet6)::1
            """)
        for last in ["\(subnet).3", "\(subnet).4", "\(subnet6)::3", "\(subnet6)::4"] {
            processes.append(
                try Background.tcpTool(
                    ["http", last, "80"], in: netns, log: directory.appendingPathComponent("http-\(last).out")))
        }
        let records = """
            $ORIGIN example.test.
            $TTL 300
            @ IN SOA ns.example.test. h.example.test. 1 3600 600 86400 60
            @ IN NS ns
            ns IN A 127.0.0.1
            a IN A \(subnet).3
            a IN AAAA \(subnet6)::3
            b IN A \(subnet).4
            b IN AAAA \(subnet6)::4

            """
        processes.append(
            try NSDServer.start(
                zone: "example.test", records: records, address: "127.0.0.1", port: nsdPort, in: nil,
                directory: directory))
        try Harness.waitForDNS(port: nsdPort, name: "a.example.test")
        for _ in 0..<100 {
            let listening = (try? sh("ip netns exec \(netns) ss -ltn")) ?? ""
            if listening.contains("\(subnet).3:80") && listening.contains("\(subnet).4:80")
                && listening.contains("[\(subnet6)::4]:80")
            {
                break
            }
            usleep(100_000)
        }
    }

    deinit {
        relay.stop()
        for process in processes.reversed() { process.stop() }
        _ = try? sh("ip netns del \(netns)")
    }

    /// `dnsfence run --upstream RELAY ARGUMENTS`, to completion: its exit status and output.
    func run(_ arguments: [String]) throws -> Harness.Result {
        try Harness.run(Harness.dnsfence, ["run", "--upstream", "127.0.0.1:\(relay.port)"] + arguments)
    }

    /// `run --allow a.example.test` twice: `curl` reaches a.example.test, and fails at once
    /// (rejected, not dropped) for `raw`, an address no answer handed out.
    func expectAllowedAndRejected(curl: String, raw: String) throws {
        let allowed = try run(["--allow", "a.example.test", "--", "sh", "-c", "\(curl) http://a.example.test/"])
        #expect(allowed.status == 0, "\(allowed.output)")
        let started = Date()
        let rejected = try run(["--allow", "a.example.test", "--", "sh", "-c", "\(curl) '\(raw)'"])
        #expect(rejected.status == 7, "curl: could not connect: \(rejected.output)")
        #expect(Date().timeIntervalSince(started) < 2, "rejected, not dropped: it fails at once")
    }

    /// The same, started in the background.
    func start(_ arguments: [String], log: String) throws -> Background {
        try Background(
            Harness.dnsfence, ["run", "--upstream", "127.0.0.1:\(relay.port)"] + arguments,
            log: directory.appendingPathComponent(log))
    }
}

/// What a run may leave behind: namespaces, links, host tables, mounts, lock files.
func runLeftovers() throws -> String {
    try sh(
        """
        { ip netns list | grep dfrun- ; ip -o link | grep -o 'dfr-[0-9a-f]*-h' ; nft list tables | grep dnsfence_run_ ;
          grep dfrun- /proc/mounts ; ls /run/dnsfence/run 2>/dev/null ; } || true
        """)
}

@Suite(
    "dnsfence run (root, namespaces, nftables)", .serialized,
    .enabled(if: isRoot, "needs root: dnsfence run makes network namespaces, links and nftables rules"))
struct RunIntegrationTests {
    @Test(
        "an allowed name connects; an address never resolved and a denied name fail at once; exit statuses pass through"
    )
    func allowAndDeny() throws {
        let world = try RunWorld()
        let curl = "curl -sS -o /dev/null --max-time 5"
        try world.expectAllowedAndRejected(curl: curl, raw: "http://\(world.subnet).4/")

        let denied = try world.run(["--allow", "a.example.test", "--", "sh", "-c", "\(curl) http://b.example.test/"])
        #expect(denied.status == 6, "curl: could not resolve: \(denied.output)")
        #expect(!world.relay.received.contains { $0.contains("b.example.test") }, "a denied name is never forwarded")
        #expect(world.relay.received.contains { $0.contains("a.example.test") })

        // --audit: the denied name resolves and connects, and is logged as a would-be denial.
        let audited = try world.run([
            "--audit", "--allow", "a.example.test", "--", "sh", "-c", "\(curl) http://b.example.test/",
        ])
        #expect(audited.status == 0, "\(audited.output)")
        #expect(audited.output.contains(#""qname":"b.example.test.""#) && audited.output.contains(#""action":"audit""#))

        #expect(try world.run(["--", "sh", "-c", "exit 7"]).status == 7)
        let missing = try world.run(["--", "no-such-program-dnsfence"])
        #expect(missing.status == 127 && missing.output.contains("command not found"), "\(missing.output)")
        let broken = try world.run(["--policy", "/nonexistent/dnsfence.allow", "--", "true"])
        #expect(broken.status == 1 && broken.output.contains("/nonexistent/dnsfence.allow"), "\(broken.output)")
        let flags = try world.run(["--bogus-flag", "--", "true"])
        #expect(flags.status != 0 && flags.output.contains("--bogus-flag"), "\(flags.output)")
        #expect(try runLeftovers().isEmpty, "nothing is left behind")
    }

    @Test("the program runs as the given user with no capabilities and no_new_privs, behind its own resolv.conf")
    func userAndCapabilities() throws {
        let world = try RunWorld()
        let result = try world.run([
            "--user", "nobody", "--", "sh", "-c",
            "id -u; grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status; cat /etc/resolv.conf",
        ])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.hasPrefix("65534\n"), "\(result.output)")
        for field in ["CapEff", "CapPrm", "CapBnd"] { #expect(result.output.contains("\(field):\t0000000000000000")) }
        #expect(result.output.contains("NoNewPrivs:\t1"))
        #expect(
            result.output.contains("nameserver 10.") || result.output.contains("nameserver 172.30.")
                || result.output.contains("nameserver 192.168.213."))
        // The host's file is untouched.
        #expect(try !String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8).contains("dnsfence run"))
        let unknown = try world.run(["--user", "no-such-user-dnsfence", "--", "true"])
        #expect(unknown.status == 1 && unknown.output.contains("no user 'no-such-user-dnsfence'"))
    }

    @Test("--publish: the program's port is reachable from the host's loopback and from outside; other ports are not")
    func publish() throws {
        let world = try RunWorld()
        let port = Harness.freePort()
        let server = try world.start(
            [
                "--publish", "\(port):8080", "--", "sh", "-c",
                "python3 -m http.server 9090 >/dev/null 2>&1 & exec python3 -m http.server 8080",
            ], log: "publish.out")
        defer { server.stop() }
        func get(_ url: String, from netns: String? = nil) throws -> Int32 {
            let prefix = netns.map { "ip netns exec \($0) " } ?? ""
            return try Harness.run("/bin/sh", ["-c", "\(prefix)curl -sS -o /dev/null --max-time 2 \(url)"]).status
        }
        var up = false
        for _ in 0..<50 where !up {
            up = (try? get("http://127.0.0.1:\(port)/")) == 0
            if !up { usleep(100_000) }
        }
        #expect(up, "published port on the host's loopback: \(server.output)")
        #expect(try get("http://\(world.subnet).1:\(port)/", from: world.netns) == 0, "from outside the host")
        // The sandbox's own address: 8080 is open, 9090 (listening, not published) is not.
        let address = try sh("ip -4 -o addr show | awk '$2 ~ /^dfr-/ { split($4, a, \"/\"); print a[1]; exit }'")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let parts = address.split(separator: ".").compactMap { Int($0) }
        try #require(parts.count == 4, "host end of the sandbox's link: \(address)")
        let sandbox = "\(parts[0]).\(parts[1]).\(parts[2]).\(parts[3] + 1)"
        #expect(try get("http://\(sandbox):8080/") == 0)
        #expect(try get("http://\(sandbox):9090/") != 0, "an unpublished port is closed")
        // A taken port is refused before anything is made.
        let taken = try world.run(["--publish", "\(port):8080", "--", "true"])
        #expect(taken.status == 1 && taken.output.contains("is taken on the host"), "\(taken.output)")
        let busy = Harness.freePort()
        let held = try Background.tcpTool(
            ["http", "127.0.0.1", "\(busy)"], in: nil, log: world.directory.appendingPathComponent("held.out"))
        defer { held.stop() }
        for _ in 0..<50 where (try? get("http://127.0.0.1:\(busy)/")) != 0 { usleep(100_000) }
        let listening = try world.run(["--publish", "\(busy):8080", "--", "true"])
        #expect(listening.status == 1 && listening.output.contains("is taken on the host"), "\(listening.output)")
    }

    @Test(
        "two runs at once do not see each other's names; SIGTERM stops the program; kill -9 and --cleanup leave nothing"
    )
    func isolationAndCleanup() throws {
        let world = try RunWorld()
        func probe(_ mine: String, _ other: String) -> [String] {
            [
                "--allow", "\(mine).example.test", "--", "sh", "-c",
                "curl -sS -o /dev/null --max-time 5 http://\(mine).example.test/ || exit 10; sleep 2; "
                    + "curl -sS -o /dev/null --max-time 2 http://\(other)/",
            ]
        }
        let first = try world.start(probe("a", "\(world.subnet).4"), log: "a.out")
        let second = try world.start(probe("b", "\(world.subnet).3"), log: "b.out")
        // Each connected to its own name, then could not reach the other's address.
        #expect(first.exitStatus(within: 15) == 7, "\(first.output)")
        #expect(second.exitStatus(within: 15) == 7, "\(second.output)")

        let stopped = try world.start(["--", "sleep", "30"], log: "term.out")
        usleep(700_000)
        kill(stopped.pid, SIGTERM)
        #expect(stopped.exitStatus(within: 5) == 143, "the program got SIGTERM: \(stopped.output)")
        #expect(try runLeftovers() == "", "left behind")

        let killed = try world.start(["--", "sleep", "30"], log: "kill.out")
        for _ in 0..<50 where try runLeftovers().isEmpty { usleep(100_000) }
        #expect(try !runLeftovers().isEmpty)
        kill(killed.pid, SIGKILL)
        _ = killed.exitStatus(within: 5)
        let cleanup = try Harness.run(Harness.dnsfence, ["run", "--cleanup"])
        #expect(cleanup.status == 0 && cleanup.output.contains("removed sandbox dfrun-"), "\(cleanup.output)")
        #expect(try runLeftovers() == "", "left behind")

        // --keep: the sandbox stays (another run does not take it away); --cleanup removes it.
        let kept = try world.run(["--keep", "--", "true"])
        #expect(kept.status == 0 && kept.output.contains("ip netns exec dfrun-"), "\(kept.output)")
        #expect(try world.run(["--", "true"]).status == 0)
        #expect(try runLeftovers().contains("dfrun-"), "a kept sandbox stays")
        #expect(try Harness.run(Harness.dnsfence, ["run", "--cleanup"]).output.contains("removed sandbox dfrun-"))
        #expect(try runLeftovers() == "", "left behind")
    }

    @Test(
        "IPv6: an allowed name's AAAA connects, an address never resolved is rejected at once",
        .enabled(if: hostOffersIPv6, "the host has no IPv6, or takes its default route from router advertisements"))
    func ipv6() throws {
        let world = try RunWorld()
        try world.expectAllowedAndRejected(
            curl: "curl -6 -sS -o /dev/null --max-time 5", raw: "http://[\(world.subnet6)::4]/")
    }
}

/// Whether `dnsfence run` gives sandboxes IPv6 here (as `SandboxNetwork.hostIPv6` decides).
let hostOffersIPv6: Bool = {
    let disabled = (try? String(contentsOfFile: "/proc/sys/net/ipv6/conf/all/disable_ipv6", encoding: .utf8)) ?? "1"
    let learned = (try? sh("ip -6 route show default proto ra")) ?? "x"
    let forwarding = (try? String(contentsOfFile: "/proc/sys/net/ipv6/conf/all/forwarding", encoding: .utf8)) ?? "0"
    return disabled.hasPrefix("0") && (learned.isEmpty || forwarding.hasPrefix("1"))
}()
