import DNSFenceCore

#if canImport(Glibc)
    import Glibc
#endif

/// What `dnsfence run` makes for one sandbox, and unmakes: a network namespace, a veth pair
/// (`dfr-ID-h` on the host, `eth0` inside) on a /30 of its own, forwarding and masquerading for
/// that link only and the published ports' DNAT (host table `ip dnsfence_run_ID`), and inside
/// the egress and ingress rules with the sets dnsfence publishes into (table `inet dnsfence`).
/// The ID is the /30's base address in hex, so a lock file per ID makes the pick exclusive.
struct SandboxNetwork {
    let id: String
    /// The /30's base address.
    let base: UInt32
    let published: [PublishedPort]

    static let stateDirectory = "/run/dnsfence/run"
    var netns: String { "dfrun-\(id)" }
    var netnsPath: String { "/run/netns/\(netns)" }
    var hostLink: String { "dfr-\(id)-h" }
    var table: String { "dnsfence_run_\(id)" }
    /// The host end: the sandbox's gateway and resolver.
    var gateway: IPAddress { .v4(base + 1) }
    var address: IPAddress { .v4(base + 2) }
    var resolvConf: String { "\(Self.stateDirectory)/\(id).resolv.conf" }
    var lockPath: String { "\(Self.stateDirectory)/\(id).lock" }

    /// Where sandboxes' /30s come from, in order; a block that overlaps a route of the host's
    /// (other than a default route) is skipped.
    static let pools: [(base: UInt32, length: Int)] = [
        (0x0AD5_0000, 16),  // 10.213.0.0/16
        (0xAC1E_0000, 16),  // 172.30.0.0/16
        (0xC0A8_D500, 24),  // 192.168.213.0/24
    ]

    /// Picks a free /30 and takes its lock (held through the returned descriptor for as long
    /// as this process lives: a dead run's lock is free, and `cleanup` then removes its sandbox).
    static func claim(publishing published: [PublishedPort]) throws(Subprocess.Failure) -> (SandboxNetwork, Int32) {
        mkdir("/run/dnsfence", 0o755)
        mkdir(stateDirectory, 0o755)
        let routes = hostRoutes()
        for pool in pools {
            let blocks = UInt32(1) << UInt32(32 - pool.length - 2)
            let start = UInt32.random(in: 0..<blocks)
            for i in 0..<blocks {
                let base = pool.base + ((start + i) % blocks) * 4
                guard !routes.contains(where: { overlaps(base, 30, $0.base, $0.length) }) else { continue }
                let network = SandboxNetwork(id: hex(base), base: base, published: published)
                if let fd = network.lock(state: "running") { return (network, fd) }
            }
        }
        throw Subprocess.Failure(description: "no free /30 left in 10.213.0.0/16, 172.30.0.0/16 or 192.168.213.0/24")
    }

    /// Creates the lock file with `state` and this pid, exclusively and locked; nil if taken.
    func lock(state: String) -> Int32? {
        let temporary = "\(lockPath).\(getpid())"
        let fd = open(temporary, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return nil }
        let text = "\(getpid()) \(state) \(published.map(\.key).joined(separator: " "))\n"
        _ = text.withCString { write(fd, $0, strlen($0)) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0, link(temporary, lockPath) == 0 else {
            unlink(temporary)
            close(fd)
            return nil
        }
        unlink(temporary)
        return fd
    }

    /// Marks the lock as kept (`--keep`): automatic clean-ups leave the sandbox; `--cleanup` does not.
    func markKept() {
        let fd = open(lockPath, O_WRONLY | O_TRUNC | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = "\(getpid()) kept \(published.map(\.key).joined(separator: " "))\n".withCString {
            write(fd, $0, strlen($0))
        }
        close(fd)
    }

    /// Makes everything; on failure the caller removes what was made (``remove(id:)``).
    func create() throws(Subprocess.Failure) {
        let ip = "/usr/sbin/ip"
        let (gw, me) = (gateway.description, address.description)
        try Subprocess.check(
            "creating the namespace and link", ip, ["-batch", "-"],
            input: """
                netns add \(netns)
                link add \(hostLink) type veth peer name eth0 netns \(netns)
                addr add \(gw)/30 dev \(hostLink)
                link set \(hostLink) up

                """)
        try Subprocess.check(
            "configuring the sandbox's link", ip, ["-n", netns, "-batch", "-"],
            input: """
                link set lo up
                addr add \(me)/30 dev eth0
                link set eth0 up
                route add default via \(gw)

                """)
        try writeFile("/proc/sys/net/ipv4/ip_forward", "1\n")
        // Locally published ports (127.0.0.1:PORT) are DNATed out of this link.
        if !published.isEmpty { try writeFile("/proc/sys/net/ipv4/conf/\(hostLink)/route_localnet", "1\n") }
        try Subprocess.check("loading the host rules", "/usr/sbin/nft", ["-f", "-"], input: hostRules)
        try Subprocess.check(
            "loading the sandbox's rules", ip, ["netns", "exec", netns, "/usr/sbin/nft", "-f", "-"], input: sandboxRules
        )
        try writeFile(resolvConf, "# dnsfence run: the sandbox's only resolver\nnameserver \(gw)\n")
    }

    /// Forwarding and masquerading for this link only, and the published ports' DNAT (from
    /// other hosts, and from this host's own addresses including 127.0.0.1).
    var hostRules: String {
        var dnat: [String] = []
        for port in published {
            let proto = port.udp ? "udp" : "tcp"
            let destination = port.hostAddress.map { "ip daddr \($0) " } ?? "fib daddr type local "
            dnat.append("\(destination)\(proto) dport \(port.hostPort) dnat ip to \(address):\(port.port)")
        }
        let rules = dnat.map { "        " + $0 }.joined(separator: "\n")
        return """
            table ip \(table) {
                chain prerouting {
                    type nat hook prerouting priority dstnat; policy accept;
            \(rules)
                }
                chain output {
                    type nat hook output priority -100; policy accept;
            \(rules)
                }
                chain postrouting {
                    type nat hook postrouting priority srcnat; policy accept;
                    ip saddr \(address) oifname != "\(hostLink)" masquerade
                    oifname "\(hostLink)" ip saddr 127.0.0.0/8 masquerade
                }
                chain forward {
                    type filter hook forward priority filter; policy accept;
                    iifname "\(hostLink)" ip saddr != \(address) drop
                }
            }

            """
    }

    /// Egress: loopback, replies, DNS to dnsfence, and the sets; everything else rejected
    /// (admin-prohibited, so programs fail at once). Ingress: replies and the published ports.
    var sandboxRules: String {
        let tcp = published.filter { !$0.udp }.map { "\($0.port)" }
        let udp = published.filter(\.udp).map { "\($0.port)" }
        var ingress: [String] = []
        if !tcp.isEmpty { ingress.append("tcp dport { \(tcp.joined(separator: ", ")) } accept") }
        if !udp.isEmpty { ingress.append("udp dport { \(udp.joined(separator: ", ")) } accept") }
        return """
            table inet dnsfence {
                set allow4 { type ipv4_addr; flags timeout; }
                set allow6 { type ipv6_addr; flags timeout; }
                chain output {
                    type filter hook output priority filter; policy accept;
                    oifname "lo" accept
                    ct state established,related accept
                    ip daddr \(gateway) udp dport 53 accept
                    ip daddr \(gateway) tcp dport 53 accept
                    ip daddr @allow4 accept
                    ip6 daddr @allow6 accept
                    reject with icmpx type admin-prohibited
                }
                chain input {
                    type filter hook input priority filter; policy drop;
                    iifname "lo" accept
                    ct state established,related accept
                    \(ingress.joined(separator: "\n            "))
                }
            }

            """
    }

    /// Removes everything a sandbox with `id` may have (idempotent; what is not there is fine):
    /// its processes, namespace (and with it the link), host table, resolv.conf and lock.
    static func remove(id: String) {
        let netns = "dfrun-\(id)"
        let pids = Subprocess.run("/usr/sbin/ip", ["netns", "pids", netns]).output
        for pid in pids.split(separator: "\n").compactMap({ pid_t($0) }) { kill(pid, SIGKILL) }
        _ = Subprocess.run("/usr/sbin/ip", ["netns", "del", netns])
        _ = Subprocess.run("/usr/sbin/ip", ["link", "del", "dfr-\(id)-h"])
        _ = Subprocess.run("/usr/sbin/nft", ["delete", "table", "ip", "dnsfence_run_\(id)"])
        unlink("\(stateDirectory)/\(id).resolv.conf")
        unlink("\(stateDirectory)/\(id).lock")
    }

    /// Removes the sandboxes whose `run` is gone (their lock is free): kept ones too when
    /// `includingKept`. Returns their IDs.
    static func cleanup(includingKept: Bool) -> [String] {
        var removed: [String] = []
        for id in lockedIDs() {
            let fd = open("\(stateDirectory)/\(id).lock", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { continue }  // its run is alive
            let kept = contents(fd).contains(" kept")
            if kept && !includingKept { continue }
            remove(id: id)
            removed.append(id)
        }
        return removed
    }

    /// The host ports other sandboxes publish (`tcp:PORT`, `udp:PORT`), from their locks.
    static func publishedElsewhere() -> Set<String> {
        var keys: Set<String> = []
        for id in lockedIDs() {
            let fd = open("\(stateDirectory)/\(id).lock", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            keys.formUnion(
                contents(fd).split(whereSeparator: { $0 == " " || $0 == "\n" }).dropFirst(2).map(String.init))
        }
        return keys
    }

    private static func lockedIDs() -> [String] {
        guard let directory = opendir(stateDirectory) else { return [] }
        defer { closedir(directory) }
        var ids: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasSuffix(".lock") { ids.append(String(name.dropLast(5))) }
        }
        return ids
    }

    private static func contents(_ fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 1024)
        let got = read(fd, &buffer, buffer.count)
        return got > 0 ? String(decoding: buffer[0..<got], as: UTF8.self) : ""
    }

    // MARK: helpers

    static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }

    static func overlaps(_ a: UInt32, _ aLength: Int, _ b: UInt32, _ bLength: Int) -> Bool {
        let length = min(aLength, bLength)
        let mask: UInt32 = length == 0 ? 0 : ~UInt32(0) << UInt32(32 - length)
        return a & mask == b & mask
    }

    /// The IPv4 prefixes of the host's routes in every table, except default routes.
    static func hostRoutes() -> [(base: UInt32, length: Int)] {
        let text = Subprocess.run("/usr/sbin/ip", ["-4", "-o", "route", "show", "table", "all"]).output
        var routes: [(UInt32, Int)] = []
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ")
            let kinds: Set<Substring> = ["unicast", "local", "broadcast", "multicast", "blackhole", "unreachable"]
            guard let word = words.first(where: { !kinds.contains($0) }), word != "default" else { continue }
            let parts = word.split(separator: "/")
            guard case .v4(let base)? = IPAddress(String(parts[0])) else { continue }
            routes.append((base, parts.count > 1 ? Int(parts[1]) ?? 32 : 32))
        }
        return routes
    }

    private func writeFile(_ path: String, _ text: String) throws(Subprocess.Failure) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Subprocess.Failure(description: "\(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard text.withCString({ write(fd, $0, strlen($0)) }) == text.utf8.count else {
            throw Subprocess.Failure(description: "\(path): \(String(cString: strerror(errno)))")
        }
    }
}

/// `--publish [HOSTADDR:]HOSTPORT:PORT[/tcp|/udp]`: the sandbox's PORT reachable at HOSTPORT.
struct PublishedPort: Hashable {
    var hostAddress: IPAddress?
    var hostPort: UInt16
    var port: UInt16
    var udp: Bool

    init?(_ text: String) {
        var spec = Substring(text)
        udp = false
        if spec.hasSuffix("/udp") || spec.hasSuffix("/tcp") {
            udp = spec.hasSuffix("/udp")
            spec = spec.dropLast(4)
        }
        let parts = spec.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3, let port = UInt16(parts[parts.count - 1]), port > 0,
            let hostPort = UInt16(parts[parts.count - 2]), hostPort > 0
        else { return nil }
        if parts.count == 3 {
            guard case .v4? = IPAddress(String(parts[0])) else { return nil }
            hostAddress = IPAddress(String(parts[0]))
        }
        self.hostPort = hostPort
        self.port = port
    }

    /// How the lock files name it.
    var key: String { "\(udp ? "udp" : "tcp"):\(hostPort)" }

    /// Whether HOSTPORT is free on the host (nobody listens there): bound for a moment.
    var isFree: Bool {
        let fd = socket(AF_INET, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = hostPort.bigEndian
        if case .v4(let value)? = hostAddress { address.sin_addr.s_addr = value.bigEndian }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}
