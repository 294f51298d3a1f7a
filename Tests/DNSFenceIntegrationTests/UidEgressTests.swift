import Foundation
import Testing

/// The "by user id" recipe (docs/sandbox.md) with the shipped template, in a namespace standing
/// in for the host, with users the test creates.
@Suite(
    "egress by user id (root: users, namespaces, nftables)",
    .enabled(if: isRoot, "needs root to create users, namespaces and nftables rules"))
struct UidEgressTests {
    @Test("the confined user reaches an allowed name and is refused a denied one and a raw IP; another user is not")
    func uidRecipe() throws {
        let id = String(UInt32.random(in: 0..<UInt32.max), radix: 16)
        let (host, confined, other) = ("dfu-\(id)", "dfu\(id)", "dfv\(id)")
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort(), nsdPort = Harness.freePort()
        defer { _ = try? sh("userdel \(confined); userdel \(other); ip netns del \(host); rm -rf /etc/netns/\(host)") }
        try sh(
            """
            set -e
            ip netns add \(host)
            ip -n \(host) link set lo up
            ip -n \(host) link add d0 type veth peer name d1
            ip -n \(host) addr add 10.66.0.3/24 dev d0; ip -n \(host) addr add 10.66.0.4/24 dev d0
            ip -n \(host) link set d0 up; ip -n \(host) link set d1 up
            useradd --system --no-create-home --shell /usr/sbin/nologin \(confined)
            useradd --system --no-create-home --shell /usr/sbin/nologin \(other)
            mkdir -p /etc/netns/\(host)
            echo "nameserver 10.66.0.53" > /etc/netns/\(host)/resolv.conf
            chmod 755 \(directory.path)
            """)
        let uid = try sh("id -u \(confined)").trimmingCharacters(in: .whitespacesAndNewlines)

        // The world: nsd on the host's loopback, HTTP on 10.66.0.3 (a) and 10.66.0.4 (b).
        let records = """
            $ORIGIN example.test.
            $TTL 300
            @ IN SOA ns.example.test. h.example.test. 1 3600 600 86400 60
            @ IN NS ns
            ns IN A 127.0.0.1
            a IN A 10.66.0.3
            b IN A 10.66.0.4

            """
        var processes = [
            try NSDServer.start(
                zone: "example.test", records: records, address: "127.0.0.1", port: nsdPort, in: host,
                directory: directory)
        ]
        for address in ["10.66.0.3", "10.66.0.4"] {
            processes.append(
                try Background.tcpTool(
                    ["http", address, "80"], in: host, log: directory.appendingPathComponent("http-\(address).out")))
        }
        defer { for process in processes.reversed() { process.stop() } }

        // The shipped template, with the user and the listener's port filled in.
        let template = repositoryRoot.appendingPathComponent("scripts/uid-egress.nft").path
        try sh(
            "sed -e 's/^define CONFINED_UID = .*/define CONFINED_UID = \(uid)/' "
                + "-e 's/^define DNSFENCE_PORT = .*/define DNSFENCE_PORT = \(port)/' \(template) "
                + "| ip netns exec \(host) nft -f -")
        try """
        listen: [{ address: 127.0.0.1:\(port), policy: confined }]
        upstreams: [127.0.0.1:\(nsdPort)]
        policies:
          confined:
            allow: [a.example.test]
            firewall: { table: inet uidfence, ipv4-set: allow4, ipv6-set: allow6, create: false }
        """.write(to: directory.appendingPathComponent("uid.yaml"), atomically: true, encoding: .utf8)
        processes.append(
            try Background(
                "/usr/sbin/ip",
                ["netns", "exec", host, Harness.dnsfence, "serve", "--config", "\(directory.path)/uid.yaml"],
                log: directory.appendingPathComponent("dnsfence.log")))
        var ready = false
        for _ in 0..<100 where !ready {
            // The answer and the listeners are probed apart: ss lists 10.66.0.3:80 too, and a
            // probe that read both together passed before dnsfence was listening.
            let answer = try Harness.run(
                "/usr/sbin/ip",
                [
                    "netns", "exec", host, "dig", "@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=1", "+short",
                    "a.example.test",
                ])
            let listening = try Harness.run("/usr/sbin/ip", ["netns", "exec", host, "ss", "-ltn"])
            ready =
                answer.output.split(separator: "\n").contains("10.66.0.3")
                && listening.output.contains("10.66.0.3:80") && listening.output.contains("10.66.0.4:80")
            if !ready { usleep(100_000) }
        }
        try #require(ready, "dnsfence, nsd and the HTTP servers are up: \(processes.map(\.output))")

        func curl(as user: String, _ url: String) throws -> (status: Int32, seconds: Double, output: String) {
            let started = Date()
            let result = try Harness.run(
                "/usr/sbin/ip",
                [
                    "netns", "exec", host, "setpriv", "--reuid=\(user)", "--regid=\(user)", "--clear-groups",
                    "curl", "-sS", "-o", "/dev/null", "--max-time", "5", url,
                ])
            return (result.status, Date().timeIntervalSince(started), result.output)
        }
        // The confined user: its resolv.conf names 10.66.0.53, which nobody serves; the
        // template redirects the query to dnsfence.
        let allowed = try curl(as: confined, "http://a.example.test/")
        #expect(allowed.status == 0, "\(allowed.output)")
        #expect(try curl(as: confined, "http://b.example.test/").status == 6, "a denied name does not resolve")
        let raw = try curl(as: confined, "http://10.66.0.4/")
        #expect(raw.status == 7 && raw.seconds < 2, "an address never resolved is rejected at once")
        // Everyone else is untouched.
        #expect(try curl(as: other, "http://10.66.0.4/").status == 0)
        #expect(try curl(as: "root", "http://10.66.0.4/").status == 0)
    }
}
