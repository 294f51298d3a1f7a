import CNftables
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Whether a worker thread is inside its namespace (and can run nft commands there), or why
/// not. Lives on that thread only.
enum NftContext {
    case ready
    case failed(String)

    /// Runs one nft text command (setup, listing, deletion) in the thread's namespace; its
    /// output or the first line of its error. Each command gets a context of its own, made on
    /// a descriptor below 1024 (see ``LowDescriptors``): libnftables waits on its netlink socket
    /// with select(2), which aborts the process for a descriptor at or above FD_SETSIZE, and a
    /// dnsfence serving many sandboxes has more descriptors open than that.
    func run(_ command: String) -> Result<String, PublishError> {
        if case .failed(let reason) = self { return .failure(.unavailable(reason)) }
        return LowDescriptors.shared.withLowDescriptor { () -> Result<String, PublishError> in
            guard let ctx = nft_ctx_new(0) else { return .failure(.unavailable("nft_ctx_new failed")) }
            defer { nft_ctx_free(ctx) }
            nft_ctx_buffer_output(ctx)
            nft_ctx_buffer_error(ctx)
            let rc = nft_run_cmd_from_buffer(ctx, command)
            if rc != 0 {
                let error = nft_ctx_get_error_buffer(ctx).map { String(cString: $0) } ?? "error \(rc)"
                return .failure(.rejected(error.split(separator: "\n").first.map(String.init) ?? error))
            }
            return .success(nft_ctx_get_output_buffer(ctx).map { String(cString: $0) } ?? "")
        }
    }
}

/// A few descriptors held open while the process has few, so that a libnftables context can
/// always be made on one below FD_SETSIZE: one is closed just before `nft_ctx_new` (which takes
/// the lowest free descriptor for its socket) and reopened after the context is freed.
public final class LowDescriptors: Sendable {
    static let shared = LowDescriptors()

    private let reserved: Mutex<[Int32]>

    private init() {
        var fds: [Int32] = []
        for _ in 0..<4 {
            let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
            if fd >= 0 && fd < FD_SETSIZE { fds.append(fd) } else if fd >= 0 { close(fd) }
        }
        reserved = Mutex(fds)
    }

    /// Reserves the descriptors now (call early, while few are open).
    public static func reserve() { _ = shared }

    /// Runs `body` with a low descriptor freed for it (serialised: one context at a time).
    func withLowDescriptor<R>(_ body: () -> R) -> R {
        reserved.withLock { fds in
            guard let fd = fds.popLast() else { return body() }
            close(fd)
            let result = body()
            let again = open("/dev/null", O_RDONLY | O_CLOEXEC)
            if again >= 0 && again < FD_SETSIZE { fds.append(again) } else if again >= 0 { close(again) }
            return result
        }
    }
}
