import Foundation
import Testing

/// dnsfence as an unprivileged user with only CAP_NET_ADMIN, CAP_SYS_ADMIN and
/// CAP_NET_BIND_SERVICE: serving on port 53 and publishing into another namespace's sets.
@Suite(
    "least privilege (root: users, capabilities, namespaces)",
    .enabled(if: isRoot, "needs root to change user and keep capabilities, and to make namespaces"))
struct LeastPrivilegeTests {
    /// How dnsfence is started as `nobody`.
    enum Launch: String, CaseIterable, CustomTestStringConvertible {
        /// `dnsfence serve --user nobody`, started as root.
        case userFlag
        /// Started as nobody with ambient capabilities, as systemd's `User=` with
        /// `AmbientCapabilities=` does (setpriv does the same here).
        case ambient
        /// The same without CAP_SYS_ADMIN: the policy whose sets are in another namespace
        /// cannot reach them and fails closed.
        case withoutSysAdmin

        var testDescription: String { rawValue }

        func command(_ binary: String, _ arguments: [String]) -> (String, [String]) {
            let caps =
                self == .withoutSysAdmin ? "+net_admin,+net_bind_service" : "+net_admin,+sys_admin,+net_bind_service"
            switch self {
            case .userFlag:
                return (binary, ["serve", "--user", "nobody"] + arguments)
            case .ambient, .withoutSysAdmin:
                return (
                    "/usr/bin/setpriv",
                    [
                        "--reuid=nobody", "--regid=nogroup", "--init-groups", "--inh-caps=-all,\(caps)",
                        "--ambient-caps=-all,\(caps)", "--bounding-set=-all,\(caps)", "--no-new-privs", binary, "serve",
                    ] + arguments
                )
            }
        }
    }

    @Test(
        "serves port 53 and publishes into another namespace as nobody, with the documented capabilities only",
        arguments: Launch.allCases)
    func unprivileged(launch: Launch) throws {
        let nsd = try NSDServer()
        let id = UInt32.random(in: 0..<UInt32.max)
        let netns = "dfp-\(String(id, radix: 16))"
        try sh("ip netns add \(netns)")
        defer { _ = try? sh("ip netns del \(netns)") }
        // A loopback address of its own for port 53, so that no other test or resolver collides.
        let address = "127.\(77 + id % 100).\((id >> 8) % 250 + 1).\((id >> 16) % 250 + 1)"
        let directory = try Harness.temporaryDirectory()
        // nobody must read the configuration and execute the binary (CI's checkout may be in
        // root's home): both go to a directory anyone can enter.
        let binary = directory.appendingPathComponent("dnsfence").path
        try sh("chmod 755 \(directory.path) && cp \(Harness.dnsfence) \(binary) && chmod 755 \(binary)")
        let config = """
            listen: [{ address: \(address):53, policy: p }]
            upstreams: [127.0.0.1:\(nsd.port)]
            policies:
              p:
                allow: ["*.example.test"]
                firewall: { netns: /run/netns/\(netns), table: inet fence, ipv4-set: allow4, create: true }
            """
        let file = directory.appendingPathComponent("f.yaml")
        try config.write(to: file, atomically: true, encoding: .utf8)
        try sh("chmod 644 \(file.path)")
        let (path, arguments) = launch.command(binary, ["--config", file.path])
        let fence = try Background(path, arguments, log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let dig = try #require(Harness.tool("dig"))
        func ask(_ name: String) throws -> String {
            try Harness.run(dig, ["@\(address)", "-p", "53", "+tries=1", "+time=2", name, "A"]).output
        }
        var answer = ""
        for _ in 0..<100 {
            answer = try ask("www.example.test")
            if answer.contains("status:") { break }
            usleep(100_000)
        }

        // Whichever way it started, it runs as nobody with the three capabilities (or two) and
        // nothing else, in every thread, and can gain none (no_new_privs).
        let status = try String(contentsOfFile: "/proc/\(fence.pid)/status", encoding: .utf8)
        func field(_ name: String) -> String {
            status.split(separator: "\n").first { $0.hasPrefix(name + ":") }
                .map { $0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces) } ?? ""
        }
        let expected = launch == .withoutSysAdmin ? "0000000000001400" : "0000000000201400"
        #expect(field("Uid").split(separator: "\t").allSatisfy { $0 == "65534" }, "\(field("Uid"))")
        #expect(field("CapEff") == expected && field("CapPrm") == expected && field("CapBnd") == expected)
        #expect(field("NoNewPrivs") == "1")
        let threads = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(fence.pid)/task")
        for thread in threads {
            let text = (try? String(contentsOfFile: "/proc/\(fence.pid)/task/\(thread)/status", encoding: .utf8)) ?? ""
            #expect(text.contains("CapEff:\t\(expected)"), "thread \(thread) has other capabilities")
        }

        let set = { (try? sh("ip netns exec \(netns) nft list set inet fence allow4")) ?? "" }
        if launch == .withoutSysAdmin {
            // It cannot enter the namespace: that policy fails closed, and says why.
            #expect(answer.contains("status: SERVFAIL") && answer.contains("firewall unavailable"), "\(answer)")
            #expect(!set().contains("192.0.2.10"))
            // Nor load the rate limiter's kernel filter: it says so, and limits alone.
            #expect(fence.output.contains("rate limits are enforced by dnsfence alone"), "\(fence.output)")
        } else {
            // CAP_SYS_ADMIN loads the rate limiter's kernel filter.
            #expect(!fence.output.contains("enforced by dnsfence alone"), "\(fence.output)")
            #expect(answer.contains("192.0.2.10"), "\(answer)\n\(fence.output)")
            #expect(set().contains("192.0.2.10"), "published into the other namespace's set")
            #expect(fence.output.contains("capabilities=cap_net_bind_service,cap_net_admin,cap_sys_admin"))
        }
    }

    @Test("--user is refused when not started as root, and names the user it does not know")
    func userErrors() throws {
        let unknown = try Harness.run(
            Harness.dnsfence, ["serve", "--user", "no-such-user-dnsfence", "--allow", "x.test"])
        #expect(unknown.status == 1 && unknown.output.contains("--user: no user 'no-such-user-dnsfence'"))
        let directory = try Harness.temporaryDirectory()
        let binary = directory.appendingPathComponent("dnsfence").path
        try sh("chmod 755 \(directory.path) && cp \(Harness.dnsfence) \(binary) && chmod 755 \(binary)")
        let notRoot = try Harness.run(
            "/usr/bin/setpriv",
            ["--reuid=nobody", "--regid=nogroup", "--clear-groups", binary, "serve", "--user", "daemon"])
        #expect(
            notRoot.status == 1 && notRoot.output.contains("--user daemon: only root can change user"),
            "\(notRoot.output)")
    }
}
