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
    /// Whether the sandbox gets IPv6 too (``hostIPv6``).
    let ipv6: Bool

    static let stateDirectory = "/run/dnsfence/run"
    var netns: String { "dfrun-\(id)" }
    var netnsPath: String { "/run/netns/\(netns)" }
    var hostLink: String { "dfr-\(id)-h" }
    var table: String { "dnsfence_run_\(id)" }
    /// The host end: the sandbox's gateway and resolver.
    var gateway: IPAddress { .v4(base + 1) }
    var address: IPAddress { .v4(base + 2) }
    /// The sandbox's IPv6 /64, a ULA derived from the ID: `fdd6:6e73:ID-high:ID-low::`.
    var prefix6: String { "fdd6:6e73:\(id.prefix(4)):\(id.suffix(4))" }
    var gateway6: String { "\(prefix6)::1" }
    var address6: String { "\(prefix6)::2" }
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
    static func claim(publishing published: [PublishedPort], ipv6: Bool) throws(Subprocess.Failure) -> (
        SandboxNetwork, Int32
    ) {
        mkdir("/run/dnsfence", 0o755)
        mkdir(stateDirectory, 0o755)
        let routes = hostRoutes()
        for pool in pools {
            let blocks = UInt32(1) << UInt32(32 - pool.length - 2)
            let start = UInt32.random(in: 0..<blocks)
            for i in 0..<blocks {
                let base = pool.base + ((start + i) % blocks) * 4
                guard !routes.contains(where: { overlaps(base, 30, $0.base, $0.length) }) else { continue }
                let network = SandboxNetwork(id: hex(base), base: base, published: published, ipv6: ipv6)
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

    /// Removes everything a sandbox with `id` may have (idempotent; what is not there is fine):
    /// its processes, namespace (and with it the link), host table, resolv.conf and lock.
    static func remove(id: String) {
        let netns = "dfrun-\(id)"
        let pids = Subprocess.run("/usr/sbin/ip", ["netns", "pids", netns]).output
        for pid in pids.split(separator: "\n").compactMap({ pid_t($0) }) { kill(pid, SIGKILL) }
        // The link first: deleting it takes both ends at once, while a namespace's devices go
        // only when the kernel gets round to freeing the namespace.
        _ = Subprocess.run("/usr/sbin/ip", ["link", "del", "dfr-\(id)-h"])
        _ = Subprocess.run("/usr/sbin/ip", ["netns", "del", netns])
        _ = Subprocess.run("/usr/sbin/nft", ["delete", "table", "inet", "dnsfence_run_\(id)"])
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

    func writeFile(_ path: String, _ text: String) throws(Subprocess.Failure) {
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
