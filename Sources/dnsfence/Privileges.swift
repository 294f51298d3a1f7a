import CCore

#if canImport(Glibc)
    import Glibc
#endif

/// Least privilege: the capabilities dnsfence needs, and `--user`, which keeps only those
/// (docs/sandbox.md, "Least privilege").
enum Privileges {
    /// What each capability is for; dnsfence needs no other.
    static let needed: [(name: String, number: Int, purpose: String)] = [
        ("cap_net_bind_service", 10, "listening on ports below 1024 (53)"),
        ("cap_net_admin", 12, "nftables sets, and conntrack for revoke: connections"),
        (
            "cap_sys_admin", 21,
            "entering other network namespaces (setns) for their sets; the rate limit's kernel filter"
        ),
    ]

    static var neededMask: UInt64 { needed.reduce(0) { $0 | 1 << UInt64($1.number) } }

    /// The calling thread's effective capabilities of the needed ones, by name.
    static var effective: [String] {
        let mask = dnsfence_effective_capabilities()
        return needed.filter { mask & 1 << UInt64($0.number) != 0 }.map(\.name)
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// `--user NAME`: as root, becomes `user` keeping only the needed capabilities, by
    /// executing this program again (so every thread starts with them; see
    /// `dnsfence_become_user`). Returns at once when the process already runs as `user`: the
    /// second start, or one that systemd's `User=` with `AmbientCapabilities=` made.
    static func become(_ user: String) throws(Failure) {
        guard let entry = getpwnam(user) else { throw Failure(description: "--user: no user '\(user)'") }
        let (uid, gid) = (entry.pointee.pw_uid, entry.pointee.pw_gid)
        if getuid() == uid && geteuid() == uid { return }
        guard geteuid() == 0 else {
            throw Failure(description: "--user \(user): only root can change user (running as uid \(geteuid()))")
        }
        let argv = CommandLine.arguments.map { strdup($0) } + [nil]
        var step: UnsafePointer<CChar>? = nil
        _ = dnsfence_become_user(user, uid, gid, neededMask, argv, environ, &step)
        let why = String(cString: strerror(errno))
        throw Failure(description: "--user \(user): \(step.map { String(cString: $0) } ?? "failed"): \(why)")
    }
}
