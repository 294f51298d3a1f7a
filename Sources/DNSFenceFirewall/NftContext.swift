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
        let result = LowDescriptors.shared.withLowDescriptor { () -> Result<String, PublishError> in
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
        return result ?? .failure(.unavailable("no descriptor below \(FD_SETSIZE) is free for libnftables"))
    }
}

/// A few descriptors held open while the process has few, so that a libnftables context can
/// always be made on one below FD_SETSIZE: they are all closed just before `nft_ctx_new` (which
/// takes the lowest free descriptor for its socket; another thread may take one or two of them
/// meanwhile) and opened again after the context is freed. Opening again takes back any low
/// descriptor another thread has given up since, so the reserve does not wear away.
public final class LowDescriptors: Sendable {
    static let shared = LowDescriptors()
    static let size = 4

    private let reserved: Mutex<[Int32]>

    private init() {
        var fds: [Int32] = []
        Self.refill(&fds)
        reserved = Mutex(fds)
    }

    /// Opens descriptors until there are ``size``, keeping those below FD_SETSIZE.
    private static func refill(_ fds: inout [Int32]) {
        while fds.count < size {
            let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return }
            guard fd < FD_SETSIZE else {
                close(fd)
                return
            }
            fds.append(fd)
        }
    }

    /// Reserves the descriptors now (call early, while few are open).
    public static func reserve() { _ = shared }

    /// Runs `body` with low descriptors freed for it (serialised: one context at a time); nil
    /// if there is none to free (every descriptor below FD_SETSIZE is in use elsewhere), since
    /// libnftables would then abort the process.
    func withLowDescriptor<R>(_ body: () -> R) -> R? {
        reserved.withLock { fds in
            Self.refill(&fds)
            guard !fds.isEmpty else { return nil }
            for fd in fds { close(fd) }
            fds = []
            let result = body()
            Self.refill(&fds)
            return result
        }
    }
}
