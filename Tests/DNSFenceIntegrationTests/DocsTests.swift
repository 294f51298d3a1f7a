import Foundation
import Testing

/// The command blocks of README.md and docs/sandbox.md, run as written, in a namespace that
/// stands in for the host: an nsd on its 127.0.0.1:53 (what its resolv.conf names) serving
/// debian.org, and an HTTP server at deb.debian.org's address there. `dnsfence` and `sudo`
/// (which just runs its arguments, as root) are on PATH. A block no handler here runs fails
/// the test: every command block in them is something CI runs.
@Suite(
    "documentation commands", .serialized,
    .enabled(if: isRoot, "needs root: the commands make namespaces, links and nftables rules"))
struct DocsTests {
    /// The ```sh blocks of a markdown file, as text.
    static func blocks(_ file: String) throws -> [String] {
        let text = try String(contentsOf: repositoryRoot.appendingPathComponent(file), encoding: .utf8)
        var blocks: [String] = []
        var current: [Substring]? = nil
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if current != nil {
                if line == "```" {
                    blocks.append(current!.joined(separator: "\n"))
                    current = nil
                } else {
                    current!.append(line)
                }
            } else if line == "```sh" {
                current = []
            }
        }
        return blocks
    }

    /// The world: namespace, resolver, HTTP server, PATH with `dnsfence` and `sudo`.
    final class World {
        let id = String(UInt32.random(in: 0..<UInt32.max), radix: 16)
        var netns: String { "dfd-\(id)" }
        let directory: URL
        var processes: [Background] = []
        let path: String
        /// Enter only the world's network namespace (nsenter), not a mount namespace of its own
        /// (ip netns exec): namespaces the commands make must be visible to the next command.
        var networkOnly = false

        /// How a command enters the world.
        var enter: [String] {
            networkOnly ? ["/usr/bin/nsenter", "--net=/run/netns/\(netns)"] : ["/usr/sbin/ip", "netns", "exec", netns]
        }

        init() throws {
            directory = try Harness.temporaryDirectory()
            let bin = directory.appendingPathComponent("bin")
            try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(
                atPath: bin.appendingPathComponent("dnsfence").path, withDestinationPath: Harness.dnsfence)
            try "#!/bin/sh\nexec \"$@\"\n".write(
                to: bin.appendingPathComponent("sudo"), atomically: true, encoding: .utf8)
            path = bin.path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin")
            try sh(
                """
                set -e
                chmod 755 \(bin.path)/sudo
                ip netns add \(netns)
                ip -n \(netns) link set lo up
                ip -n \(netns) link add w0 type veth peer name w1
                ip -n \(netns) addr add 10.200.0.1/24 dev w0; ip -n \(netns) addr add 10.91.0.3/24 dev w0
                ip -n \(netns) link set w0 up; ip -n \(netns) link set w1 up
                mkdir -p /etc/netns/\(netns)
                echo "nameserver 127.0.0.1" > /etc/netns/\(netns)/resolv.conf
                """)
            let records = """
                $ORIGIN debian.org.
                $TTL 300
                @ IN SOA ns.debian.org. h.debian.org. 1 3600 600 86400 60
                @ IN NS ns
                ns IN A 127.0.0.1
                deb IN A 10.91.0.3

                """
            processes.append(
                try NSDServer.start(
                    zone: "debian.org", records: records, address: "127.0.0.1", port: 53, in: netns,
                    directory: directory))
            processes.append(
                try Background.tcpTool(
                    ["http", "10.91.0.3", "80"], in: netns, log: directory.appendingPathComponent("http.out")))
            for _ in 0..<100 {
                let up = try run("dig @127.0.0.1 +short +tries=1 +time=1 deb.debian.org; ss -ltn").output
                if up.contains("10.91.0.3\n") && up.contains("10.91.0.3:80") { return }
                usleep(100_000)
            }
            throw HarnessError.notReady("docs world never came up: \(processes.map(\.output))")
        }

        deinit {
            for process in processes.reversed() { process.stop() }
            _ = try? sh("ip netns del \(netns); rm -rf /etc/netns/\(netns)")
        }

        /// `script` in the world, from the repository's root, to completion.
        func run(_ script: String) throws -> Harness.Result {
            try Harness.run(
                enter[0],
                Array(enter.dropFirst()) + [
                    "env", "PATH=\(path)", "sh", "-c", "cd \(repositoryRoot.path) && \(script)",
                ])
        }

        /// `command` in the world in the background; stopped when the world goes.
        func start(_ command: String, environment: [String: String] = [:]) throws -> Background {
            let exports = environment.map { "\($0.key)=\($0.value)" }
            let process = try Background(
                enter[0],
                Array(enter.dropFirst()) + ["env", "PATH=\(path)"] + exports
                    + ["sh", "-c", "cd \(repositoryRoot.path) && exec \(command)"],
                log: directory.appendingPathComponent("bg-\(processes.count).out"))
            processes.append(process)
            return process
        }

        /// Waits until something answers DNS at `address`:`port` in the world.
        func waitForDNS(_ address: String, _ port: String) -> Bool {
            for _ in 0..<100 {
                if (try? run("dig @\(address) -p \(port) +tries=1 +time=1 probe.invalid"))?.output.contains("status:")
                    == true
                {
                    return true
                }
                usleep(100_000)
            }
            return false
        }
    }

    @Test("README.md: every command block, as written")
    func readme() throws {
        let blocks = try Self.blocks("README.md")
        try #require(blocks.count == 3, "a new command block in README.md needs a runner here: \(blocks)")
        let world = try World()

        // 1. The first two commands: CI runs the second; the first, here, without its set-up.
        #expect(blocks[0].contains("scripts/run.sh") && blocks[0].contains("scripts/test.sh"))
        let ci = try String(contentsOf: repositoryRoot.appendingPathComponent(".ci/run"), encoding: .utf8)
        #expect(ci.contains("scripts/test.sh"), ".ci/run runs the README's test command")
        _ = try world.start("scripts/run.sh", environment: ["DNSFENCE_BIN": Harness.dnsfence])
        try #require(world.waitForDNS("127.0.0.1", "5353"), "scripts/run.sh serves on 127.0.0.1:5353")

        // 2. The two digs against it.
        #expect(blocks[1].hasPrefix("dig @127.0.0.1 -p 5353 deb.debian.org"))
        let digs = try world.run(blocks[1]).output
        #expect(digs.contains("status: NOERROR") && digs.contains("10.91.0.3"), "\(digs)")
        #expect(digs.contains("status: NXDOMAIN") && digs.contains("EDE: 15"), "\(digs)")

        // 3. The one-liners, one by one: servers until they answer, the others to success.
        for line in blocks[2].split(separator: "\n") where !line.hasPrefix("#") && !line.isEmpty {
            let command = String(line)
            if command.hasPrefix("dnsfence serve") {
                let listen = try #require(command.split(separator: " ").drop { $0 != "--listen" }.dropFirst().first)
                let (address, port) = (listen.split(separator: ":")[0], listen.split(separator: ":")[1])
                let server = try world.start(command)
                #expect(world.waitForDNS(String(address), String(port)), "\(command): \(server.output)")
                server.stop()
            } else {
                let result = try world.run(command)
                #expect(result.status == 0, "\(command): \(result.output)")
                if command.contains("curl -sI") { #expect(result.output.contains("200"), "\(result.output)") }
            }
        }
    }

    @Test("docs/sandbox.md: the gateway recipe and its configuration, as written")
    func gatewayRecipe() throws {
        let blocks = try Self.blocks("docs/sandbox.md")
        // The second block, containers, is run by ContainerTests.
        try #require(blocks.count == 2, "a new command block in docs/sandbox.md needs a runner here")
        let world = try World()
        world.networkOnly = true
        defer { _ = try? sh("ip netns del sandbox; ip netns del gw; rm -rf /etc/netns/sandbox") }
        let made = try world.run("set -e\n" + blocks[0])
        try #require(made.status == 0, "\(made.output)")

        // The configuration block that follows it, served as its comment says.
        let text = try String(contentsOf: repositoryRoot.appendingPathComponent("docs/sandbox.md"), encoding: .utf8)
        let start = try #require(text.range(of: "```yaml\n# sandbox.yaml"))
        let end = try #require(text.range(of: "```", range: start.upperBound..<text.endIndex))
        let yaml = String(text[start.upperBound..<end.lowerBound]).replacingOccurrences(of: "```yaml\n", with: "")
        let config = world.directory.appendingPathComponent("sandbox.yaml")
        try ("# sandbox.yaml" + yaml).write(to: config, atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(
            atPath: world.directory.appendingPathComponent("zones").path,
            withDestinationPath: repositoryRoot.appendingPathComponent("zones").path)
        _ = try world.start("ip netns exec gw dnsfence serve --config \(config.path)")
        // From inside the sandbox, through its resolv.conf: a rewrite, published before it came.
        var answer = ""
        for _ in 0..<100 where !answer.contains("10.200.0.2") {
            answer = (try? world.run("ip netns exec sandbox dig +short +tries=1 +time=1 api.internal"))?.output ?? ""
            if !answer.contains("10.200.0.2") { usleep(100_000) }
        }
        #expect(answer.contains("10.200.0.2"), "\(world.processes.last?.output ?? "")")
        #expect(try world.run("ip netns exec sandbox nft list set inet sandbox allow4").output.contains("10.200.0.2"))
        #expect(try world.run("ip netns exec sandbox dig +tries=1 +time=2 evil.example").output.contains("NXDOMAIN"))
    }
}
