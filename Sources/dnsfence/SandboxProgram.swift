import CCore
import DNSFenceCore

#if canImport(Glibc)
    import Glibc
#endif

/// The program `dnsfence run` starts in the sandbox: who it runs as, what it executes, and its
/// life (see `dnsfence_sandbox_spawn`).
struct SandboxProgram: Sendable {
    struct Failure: Error, CustomStringConvertible {
        var description: String
        /// The exit status `run` ends with (127: not found, 126: not executable, 1: other).
        var status: Int32
    }

    let path: String
    let arguments: [String]
    let uid: uid_t
    let gid: gid_t
    let groups: [gid_t]
    let userName: String

    /// Resolves the user (`--user`, else the one sudo names, else the caller) and the command
    /// (as a shell does along PATH), before anything is created.
    init(command: [String], user: String?, environment: [String: String]) throws(Failure) {
        let entry: UnsafeMutablePointer<passwd>?
        if let user {
            entry = getpwnam(user)
            guard entry != nil else { throw Failure(description: "--user: no user '\(user)'", status: 1) }
        } else if let sudo = environment["SUDO_UID"].flatMap({ uid_t($0) }) {
            entry = getpwuid(sudo)
        } else {
            entry = getpwuid(getuid())
        }
        guard let entry else { throw Failure(description: "cannot find the user to run as", status: 1) }
        userName = String(cString: entry.pointee.pw_name)
        uid = entry.pointee.pw_uid
        gid = entry.pointee.pw_gid
        var count: Int32 = 64
        var list = [gid_t](repeating: 0, count: 64)
        if getgrouplist(entry.pointee.pw_name, gid, &list, &count) < 0 {
            list = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(entry.pointee.pw_name, gid, &list, &count)
        }
        groups = Array(list.prefix(Int(max(count, 0))))
        guard let name = command.first else { throw Failure(description: "no command given", status: 1) }
        path = try Self.resolve(name, path: environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin")
        arguments = command
    }

    /// What execvp would run for `name`: 127 when there is none, 126 when it is not executable.
    static func resolve(_ name: String, path: String) throws(Failure) -> String {
        func kind(_ candidate: String) -> (exists: Bool, executable: Bool) {
            var status = stat()
            guard stat(candidate, &status) == 0 else { return (false, false) }
            let isFile = status.st_mode & S_IFMT == S_IFREG
            return (true, isFile && status.st_mode & 0o111 != 0)
        }
        if name.contains("/") {
            let found = kind(name)
            guard found.exists else { throw Failure(description: "\(name): No such file or directory", status: 127) }
            guard found.executable else { throw Failure(description: "\(name): Permission denied", status: 126) }
            return name
        }
        var denied = false
        for directory in path.split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (directory.isEmpty ? "." : String(directory)) + "/" + name
            let found = kind(candidate)
            if found.executable { return candidate }
            if found.exists { denied = true }
        }
        if denied { throw Failure(description: "\(name): Permission denied", status: 126) }
        throw Failure(description: "\(name): command not found", status: 127)
    }

    enum Event: Sendable {
        case started(pid_t)
        case failed(Failure)
        /// The exit status as a shell reports it (128 + N for signal N).
        case exited(Int32)
    }

    /// Starts the program in `network`'s namespace on a thread of its own, which then waits for
    /// it (the child is killed if that thread goes). Events: started or failed, then exited.
    func start(in network: SandboxNetwork, directory: String) -> AsyncStream<Event> {
        let (events, continuation) = AsyncStream<Event>.makeStream()
        let program = self
        let resolvConf = network.resolvConf
        let netnsPath = network.netnsPath
        let started = startThread(named: "dnsfence-run") {
            let netns = open(netnsPath, O_RDONLY | O_CLOEXEC)
            guard netns >= 0 else {
                continuation.yield(.failed(Failure(description: "cannot open \(netnsPath)", status: 1)))
                continuation.finish()
                return
            }
            defer { close(netns) }
            let pid = program.spawn(netns: netns, resolvConf: resolvConf, directory: directory)
            switch pid {
            case .failure(let failure):
                continuation.yield(.failed(failure))
            case .success(let pid):
                continuation.yield(.started(pid))
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                continuation.yield(.exited(status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)))
            }
            continuation.finish()
        }
        if !started {
            continuation.yield(.failed(Failure(description: "cannot start a thread", status: 1)))
            continuation.finish()
        }
        return events
    }

    private func spawn(netns: Int32, resolvConf: String, directory: String) -> Result<pid_t, Failure> {
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var step: Int32 = 0
        let pid = path.withCString { path in
            resolvConf.withCString { resolv in
                directory.withCString { directory in
                    groups.withUnsafeBufferPointer { groups in
                        argv.withUnsafeBufferPointer { argv in
                            var spec = dnsfence_sandbox_program(
                                netns_fd: netns, resolv_conf: resolv, uid: uid, gid: gid, groups: groups.baseAddress,
                                group_count: groups.count, path: path, argv: argv.baseAddress, envp: environ,
                                directory: directory)
                            return dnsfence_sandbox_spawn(&spec, &step)
                        }
                    }
                }
            }
        }
        guard pid < 0 else { return .success(pid) }
        let reason = String(cString: strerror(errno))
        let code = errno
        switch step {
        case Int32(DNSFENCE_SPAWN_EXEC.rawValue):
            return .failure(Failure(description: "\(arguments[0]): \(reason)", status: code == ENOENT ? 127 : 126))
        case Int32(DNSFENCE_SPAWN_USER.rawValue):
            return .failure(Failure(description: "cannot become \(userName): \(reason)", status: 1))
        case Int32(DNSFENCE_SPAWN_RESOLV_CONF.rawValue):
            return .failure(Failure(description: "cannot put the sandbox's resolv.conf in place: \(reason)", status: 1))
        default:
            return .failure(
                Failure(description: "cannot start the program in the sandbox (step \(step)): \(reason)", status: 1))
        }
    }
}
