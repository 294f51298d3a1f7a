import Foundation
import Testing

/// Root-only end-to-end tests with real network namespaces and real nftables (CI runs as root).
/// Elsewhere they are skipped, and say why.
let isRoot = getuid() == 0
let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// Runs a shell script; throws with its output if it fails.
@discardableResult
func sh(_ script: String) throws -> String {
    let result = try Harness.run("/bin/sh", ["-c", script])
    guard result.status == 0 else {
        throw HarnessError.notReady("script failed (\(result.status)):\n\(script)\n\(result.output)")
    }
    return result.output
}

/// A sandbox netns behind a gateway netns (where dnsfence runs) and an "internet" netns with a
/// real nsd and TCP echo servers on several addresses.
final class SandboxTopology {
    let id = String(UInt32.random(in: 0..<UInt32.max), radix: 16)
    var sandbox: String { "dfs-\(id)" }
    /// The second sandbox, when there is one (10.77.3.0/24, its own listener and sets).
    var second: String { "dft-\(id)" }
    let twoSandboxes: Bool
    let filterInGateway: Bool
    var gateway: String { "dfg-\(id)" }
    var internet: String { "dfn-\(id)" }
    let directory: URL
    var processes: [Background] = []

    static let zone = """
        $ORIGIN example.test.
        $TTL 300
        @ IN SOA ns.example.test. host.example.test. 1 3600 600 86400 60
        @ IN NS ns
        ns IN A 10.77.2.2
        www IN A 10.77.2.3
        short 2 IN A 10.77.2.5
        evil IN A 10.77.2.4
        """

    /// `filterInGateway`: the sets live in the gateway and its forward chain filters, instead of
    /// the sandbox holding its own rules. `twoSandboxes`: a second sandbox with its own policy.
    init(twoSandboxes: Bool = false, filterInGateway: Bool = false) throws {
        self.twoSandboxes = twoSandboxes
        self.filterInGateway = filterInGateway
        directory = try Harness.temporaryDirectory()
        let template = repositoryRoot.appendingPathComponent("scripts/sandbox.nft").path
        let gatewayRules = """
            table inet gwfence {
                set allow4 { type ipv4_addr; flags timeout; }
                set allow6 { type ipv6_addr; flags timeout; }
                chain forward {
                    type filter hook forward priority filter; policy drop;
                    ct state established,related accept
                    iifname "gs" ip daddr @allow4 accept
                    iifname "gs" ip6 daddr @allow6 accept
                }
            }
            """
        try gatewayRules.write(to: directory.appendingPathComponent("gateway.nft"), atomically: true, encoding: .utf8)
        let sandboxRules =
            filterInGateway
            ? "ip netns exec \(gateway) nft -f \(directory.path)/gateway.nft"
            : "ip netns exec \(sandbox) nft -f \(template)"
        let secondSandbox =
            !twoSandboxes
            ? ""
            : """
            ip netns add \(second)
            ip -n \(gateway) link add gt type veth peer name tg netns \(second)
            ip -n \(gateway) addr add 10.77.3.1/24 dev gt; ip -n \(gateway) link set gt up
            ip -n \(second) link set lo up
            ip -n \(second) addr add 10.77.3.2/24 dev tg; ip -n \(second) link set tg up
            ip -n \(second) route add default via 10.77.3.1
            sed 's/10.77.1.1/10.77.3.1/' \(template) | ip netns exec \(second) nft -f -
            """
        try sh(
            """
            set -e
            ip netns add \(sandbox); ip netns add \(gateway); ip netns add \(internet)
            ip -n \(gateway) link add gs type veth peer name sg netns \(sandbox)
            ip -n \(gateway) link add gn type veth peer name ng netns \(internet)
            ip -n \(gateway) link set lo up
            ip -n \(gateway) addr add 10.77.1.1/24 dev gs; ip -n \(gateway) link set gs up
            ip -n \(gateway) addr add 10.77.2.1/24 dev gn; ip -n \(gateway) link set gn up
            ip netns exec \(gateway) sysctl -qw net.ipv4.ip_forward=1
            ip -n \(sandbox) link set lo up
            ip -n \(sandbox) addr add 10.77.1.2/24 dev sg; ip -n \(sandbox) link set sg up
            ip -n \(sandbox) route add default via 10.77.1.1
            ip -n \(internet) link set lo up
            for a in 2 3 4 5; do ip -n \(internet) addr add 10.77.2.$a/24 dev ng; done
            ip -n \(internet) link set ng up
            ip -n \(internet) route add default via 10.77.2.1
            \(sandboxRules)
            \(secondSandbox)
            """)
        processes.append(
            try NSDServer.start(
                zone: "example.test", records: Self.zone + "\n", address: "10.77.2.2", port: 53, in: internet,
                directory: directory))
        processes.append(
            try Background.tcpTool(
                ["serve", "10.77.2.3", "10.77.2.4", "10.77.2.5", "8080"], in: internet,
                log: directory.appendingPathComponent("tcp.out")))
        try writeConfiguration()
        processes.append(
            try Background(
                "/usr/sbin/ip",
                [
                    "netns", "exec", gateway, Harness.dnsfence, "serve", "--config", "\(directory.path)/dnsfence.yaml",
                ], log: directory.appendingPathComponent("dnsfence.log")))
        for _ in 0..<100 {
            if (try? dig("www.example.test")) == "10.77.2.3" { return }
            usleep(100_000)
        }
        throw HarnessError.notReady("sandbox DNS never answered: \(processes.last?.output ?? "")")
    }

    /// The control socket `dnsfence reload --control` talks to.
    var control: String { directory.appendingPathComponent("control.sock").path }

    /// Writes dnsfence.yaml: each sandbox's policy allows `allow`, and its firewall revokes
    /// `revoke` (elements or connections).
    func writeConfiguration(
        allow: [String] = ["www.example.test", "short.example.test"], revoke: String = "elements"
    ) throws {
        func policy(_ name: String, netns: String?, table: String) -> String {
            """
              \(name):
                allow: [\(allow.joined(separator: ", "))]
                firewall:
                  \(netns.map { "netns: /run/netns/\($0)" } ?? "create: false")
                  table: inet \(table)
                  ipv4-set: allow4
                  ipv6-set: allow6
                  min-ttl: 1s
                  max-ttl: 1h
                  grace: 1s
                  revoke: \(revoke)
            """
        }
        var config = """
            listen:
              - { address: 10.77.1.1:53, policy: sandbox }
            \(twoSandboxes ? "  - { address: 10.77.3.1:53, policy: second }" : "")
            upstreams: [10.77.2.2:53]
            control: \(control)
            policies:
            \(policy("sandbox", netns: filterInGateway ? nil : sandbox, table: filterInGateway ? "gwfence" : "sandbox"))

            """
        if twoSandboxes { config += policy("second", netns: second, table: "sandbox") + "\n" }
        try config.write(to: directory.appendingPathComponent("dnsfence.yaml"), atomically: true, encoding: .utf8)
    }

    /// `dnsfence reload` through the control socket: its output; throws if it failed.
    @discardableResult
    func reload() throws -> String {
        let result = try Harness.run(Harness.dnsfence, ["reload", "--control", control])
        guard result.status == 0 else { throw HarnessError.notReady("reload failed: \(result.output)") }
        return result.output
    }

    /// A connection to `address` opened now from the sandbox, which after `seconds` sends and
    /// expects its echo (tcp_tool.py hold); `succeeded()` waits for it.
    func hold(_ address: String, seconds: Int) throws -> Background {
        try Background.tcpTool(
            ["hold", address, "8080", "\(seconds)"], in: sandbox,
            log: directory.appendingPathComponent("hold-\(UInt32.random(in: 0..<UInt32.max)).out"))
    }

    deinit {
        for process in processes.reversed() { process.stop() }
        _ = try? sh("ip netns del \(sandbox); ip netns del \(gateway); ip netns del \(internet)")
        if twoSandboxes { _ = try? sh("ip netns del \(second)") }
    }

    /// `dig +short` from inside the (first or second) sandbox, asking its own dnsfence listener.
    func dig(_ name: String, _ extra: [String] = [], fromSecond: Bool = false) throws -> String {
        let args = (["+short", "+tries=1", "+time=3"] + extra).joined(separator: " ")
        let (netns, server) = fromSecond ? (second, "10.77.3.1") : (sandbox, "10.77.1.1")
        return try Harness.run("/bin/sh", ["-c", "ip netns exec \(netns) dig @\(server) \(args) \(name)"]).output
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Whether a TCP connection from the (first or second) sandbox is established within `seconds`.
    func connects(_ address: String, within seconds: Double = 0.8, fromSecond: Bool = false) throws -> Bool {
        let tool = fixtures.appendingPathComponent("tcp_tool.py").path
        return try Harness.run(
            "/usr/sbin/ip",
            ["netns", "exec", fromSecond ? second : sandbox, "python3", tool, "connect", address, "8080", "\(seconds)"]
        ).status == 0
    }
}

@Suite(
    "sandbox end to end (root, network namespaces, nftables)", .serialized,
    .enabled(if: isRoot, "needs root to create network namespaces and nftables sets; CI runs as root"))
struct SandboxEndToEndTests {
    @Test("allowed → first SYN connects; never answered → blocked; expiry; flush; established flows survive")
    func sandboxStory() throws {
        let net = try SandboxTopology()

        // The answer arrived only after the address was in the sandbox's set: the very first
        // SYN gets through (0.8 s is less than the 1 s SYN retransmit).
        #expect(try net.connects("10.77.2.3"))
        // An address of the internet that no answer handed out stays unreachable.
        #expect(try !net.connects("10.77.2.4"))
        // A denied name gets no address and opens nothing.
        let denied = try Harness.run(
            "/bin/sh", ["-c", "ip netns exec \(net.sandbox) dig @10.77.1.1 evil.example.test"]
        ).output
        #expect(denied.contains("status: NXDOMAIN"))
        #expect(try !net.connects("10.77.2.4"))

        // Expiry: short.example.test has TTL 2 → element timeout clamp(2, 1s, 1h) + 1s grace = 3 s.
        #expect(try net.dig("short.example.test") == "10.77.2.5")
        let held = try net.hold("10.77.2.5", seconds: 5)
        usleep(4_500_000)
        #expect(try !net.connects("10.77.2.5"))  // expired: a new connection is blocked
        #expect(held.exitStatus(within: 5) == 0)  // the connection opened before expiry kept working

        // After someone flushes the set, a cache hit for the name publishes again.
        try sh("ip netns exec \(net.sandbox) nft flush set inet sandbox allow4")
        #expect(try !net.connects("10.77.2.3"))
        #expect(try net.dig("www.example.test") == "10.77.2.3")
        #expect(try net.connects("10.77.2.3"))
    }

    @Test("ingress: a port the sandbox listens on is closed to the outside; its own flows' replies come in")
    func ingressClosed() throws {
        let net = try SandboxTopology()
        let tool = fixtures.appendingPathComponent("tcp_tool.py").path
        let server = try Background.tcpTool(
            ["serve", "10.77.1.2", "9000"], in: net.sandbox, log: net.directory.appendingPathComponent("listen.out"))
        defer { server.stop() }
        var listening = false
        for _ in 0..<50 where !listening {
            listening = ((try? sh("ip netns exec \(net.sandbox) ss -ltn")) ?? "").contains("10.77.1.2:9000")
            if !listening { usleep(100_000) }
        }
        #expect(listening)
        let inbound = try Harness.run(
            "/usr/sbin/ip", ["netns", "exec", net.gateway, "python3", tool, "connect", "10.77.1.2", "9000", "0.8"])
        #expect(inbound.status == 1, "the template's input chain drops it")
        #expect(try net.connects("10.77.2.3"), "replies to the sandbox's own flows still come in")
    }

    @Test("variant: the sets live in the gateway, whose forward chain filters the sandbox")
    func gatewayFilter() throws {
        let net = try SandboxTopology(filterInGateway: true)
        #expect(try net.connects("10.77.2.3"))
        #expect(try !net.connects("10.77.2.4"))
        let sets = try sh("ip netns exec \(net.gateway) nft list set inet gwfence allow4")
        #expect(sets.contains("10.77.2.3"))
    }

    @Test("two sandboxes, two policies: resolving in one never opens egress in the other")
    func twoSandboxes() throws {
        let net = try SandboxTopology(twoSandboxes: true)
        #expect(try net.connects("10.77.2.3"))  // the first sandbox resolved www during set-up
        #expect(try !net.connects("10.77.2.3", fromSecond: true))
        #expect(try net.dig("www.example.test", fromSecond: true) == "10.77.2.3")
        #expect(try net.connects("10.77.2.3", fromSecond: true))
        #expect(try !net.connects("10.77.2.4", fromSecond: true))
    }
}

@Suite(
    "nftables failures fail closed (root)", .serialized,
    .enabled(if: isRoot, "needs root to create network namespaces and nftables sets; CI runs as root"))
struct NftablesFailureTests {
    @Test("set deleted, wrong type, set full → SERVFAIL and no address; recovery when the set is back")
    func failClosed() throws {
        let nsd = try NSDServer()
        let netns = "dff-\(String(UInt32.random(in: 0..<UInt32.max), radix: 16))"
        try sh("ip netns add \(netns)")
        defer { _ = try? sh("ip netns del \(netns)") }
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort()
        let metricsPort = Harness.freePort()
        let config = """
            listen: [{ address: 127.0.0.1:\(port), policy: p }]
            metrics: { listen: 127.0.0.1:\(metricsPort) }
            upstreams: [127.0.0.1:\(nsd.port)]
            policies:
              p:
                allow: ["*.example.test"]
                firewall: { netns: /run/netns/\(netns), table: inet fence, ipv4-set: allow4, create: true }
            cache: { max-entries: 0 }
            """
        try config.write(to: directory.appendingPathComponent("f.yaml"), atomically: true, encoding: .utf8)
        let fence = try Harness.serve(
            ["--config", directory.appendingPathComponent("f.yaml").path],
            port: port, log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let dig = try #require(Harness.tool("dig"))
        func ask(_ name: String) throws -> String {
            try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=3", name, "A"]).output
        }
        func elements() throws -> String { try sh("ip netns exec \(netns) nft list set inet fence allow4") }

        #expect(try ask("www.example.test").contains("192.0.2.10"))
        #expect(try elements().contains("192.0.2.10"))

        #expect(try httpGet(metricsPort, "/readyz").status == 200)

        // The set is deleted: SERVFAIL, no address, and not ready.
        try sh("ip netns exec \(netns) nft delete set inet fence allow4")
        let notReady = try httpGet(metricsPort, "/readyz")
        #expect(notReady.status == 503)
        #expect(notReady.body.contains("policy p: set /run/netns/\(netns): inet fence allow4"))
        var out = try ask("short.example.test")
        #expect(out.contains("status: SERVFAIL"))
        #expect(!out.contains("192.0.2.20"))

        // Wrong type under the same name.
        try sh("ip netns exec \(netns) nft 'add set inet fence allow4 { type ipv6_addr; flags timeout; }'")
        out = try ask("short.example.test")
        #expect(out.contains("status: SERVFAIL"))
        #expect(!out.contains("192.0.2.20"))

        // Full: room for one element, the answer has two.
        try sh(
            "ip netns exec \(netns) nft delete set inet fence allow4; ip netns exec \(netns) nft 'add set inet fence allow4 { type ipv4_addr; flags timeout; size 1; }'"
        )
        out = try ask("www.example.test")
        #expect(out.contains("status: SERVFAIL"))
        #expect(!out.contains("192.0.2.10"))

        // Back to a proper set: answers flow again, and the addresses are in it.
        try sh(
            "ip netns exec \(netns) nft delete set inet fence allow4; ip netns exec \(netns) nft 'add set inet fence allow4 { type ipv4_addr; flags timeout; }'"
        )
        usleep(200_000)
        out = try ask("www.example.test")
        #expect(out.contains("192.0.2.10"))
        #expect(try elements().contains("192.0.2.11"))
        #expect(try httpGet(metricsPort, "/readyz").status == 200)
        let scrape = Scrape(try httpGet(metricsPort, "/metrics").body)
        #expect(scrape[#"dnsfence_nft_failures_total{reason="rejected"}"#] >= 3)
        #expect(scrape["dnsfence_nft_batches_total"] >= 2)
    }

    @Test("a missing set with create: false fails that policy closed with a clear reason; the server starts")
    func missingSetFailsClosed() throws {
        let netns = "dfm-\(String(UInt32.random(in: 0..<UInt32.max), radix: 16))"
        try sh("ip netns add \(netns)")
        defer { _ = try? sh("ip netns del \(netns)") }
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort()
        let metricsPort = Harness.freePort()
        let config = """
            listen: [{ address: 127.0.0.1:\(port), policy: p }]
            upstreams: [127.0.0.1:9]
            metrics: { listen: 127.0.0.1:\(metricsPort) }
            policies:
              p:
                allow: ["a.test"]
                firewall: { netns: /run/netns/\(netns), table: inet nothere, ipv4-set: allow4, create: false }
            """
        try config.write(to: directory.appendingPathComponent("m.yaml"), atomically: true, encoding: .utf8)
        let fence = try Harness.serve(
            ["--config", directory.appendingPathComponent("m.yaml").path], port: port,
            log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let dig = try #require(Harness.tool("dig"))
        let out = try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=3", "a.test", "A"]).output
        #expect(out.contains("status: SERVFAIL"), "\(out)")
        let ready = try httpGet(metricsPort, "/readyz")
        #expect(ready.status == 503)
        #expect(ready.body.contains("set /run/netns/\(netns): inet nothere allow4 does not exist"), "\(ready.body)")
        #expect(fence.output.contains("policy fails closed"))
    }
}
