import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The service manager's notification protocol (sd_notify(3)), without libsystemd: datagrams
/// of `KEY=VALUE` lines to the Unix socket named by `NOTIFY_SOCKET` (a path, or `@name` in the
/// abstract namespace). Without `NOTIFY_SOCKET` every call does nothing.
public final class SystemdNotifier: Sendable {
    private let path: String?
    /// The watchdog interval systemd asked for (`WATCHDOG_USEC`, for this process), if any.
    public let watchdogInterval: Duration?

    public init(environment: [String: String]) {
        path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        let forUs = environment["WATCHDOG_PID"].map { Int32($0) == getpid() } ?? true
        watchdogInterval =
            forUs ? environment["WATCHDOG_USEC"].flatMap(UInt64.init).map { .microseconds(Int64($0)) } : nil
    }

    /// Whether a service manager listens.
    public var isEnabled: Bool { path != nil }

    /// `READY=1` with a one-line status.
    public func ready(status: String) { send("READY=1\nSTATUS=\(status)") }

    /// `RELOADING=1` with the monotonic time (systemd ≥ 253 wants `MONOTONIC_USEC` with it).
    public func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let usec = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
        send("RELOADING=1\nMONOTONIC_USEC=\(usec)\nSTATUS=reloading")
    }

    public func stopping() { send("STOPPING=1\nSTATUS=stopping") }

    public func status(_ text: String) { send("STATUS=\(text)") }

    public func watchdog() { send("WATCHDOG=1") }

    /// Sends one notification; errors are ignored (as sd_notify's callers do).
    public func send(_ message: String) {
        guard let path else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }  // abstract namespace
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
        let payload = Array(message.utf8)
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                payload.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), raw, length) }
            }
        }
    }
}
