import CNftables
import DNSFenceCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The few threads that work inside network namespaces, for every namespace dnsfence writes sets
/// in: however many sandboxes there are, two threads (and one for every monitor, see
/// ``MonitorHub``). Each job enters its namespace first (`setns` acts on the calling thread
/// only); the nfnetlink sockets opened there stay bound to it, whichever thread uses them later.
/// A worker's jobs all go to one thread, in order.
final class NamespaceThreads: Sendable {
    static let shared = NamespaceThreads(count: 2)

    typealias Job = @Sendable () -> Void
    private let threads: [JobThread<Job>]
    private let next = Atomic<Int>(0)
    /// dnsfence's own namespace, opened before any of these threads left it.
    private let home: Int32

    init(count: Int) {
        home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        threads = (0..<count).map { index in
            JobThread(name: "dnsfence-nft-\(index)") { jobs in for job in jobs { job() } }
        }
    }

    /// A thread for a new worker or monitor (round robin).
    func assign() -> Int { next.add(1, ordering: .relaxed).oldValue % threads.count }

    func submit(on thread: Int, _ job: @escaping Job) { _ = threads[thread].submit(job) }

    /// On one of these threads: enters the namespace at `netns` (nil: dnsfence's own), which
    /// must still be `identity`, the namespace the path named when its worker or monitor was
    /// made (nil: there was none then, so there is nothing to enter). Nil, or why not.
    func enter(_ netns: String?, identity: NamespaceIdentity?) -> String? {
        guard let netns else {
            // Still home (every job of a dnsfence whose sets are all its own): no setns, which
            // would need CAP_SYS_ADMIN (a container with only CAP_NET_ADMIN has none).
            var here = stat()
            var own = stat()
            if stat("/proc/thread-self/ns/net", &here) == 0, fstat(home, &own) == 0,
                here.st_dev == own.st_dev, here.st_ino == own.st_ino
            {
                return nil
            }
            return dnsfence_enter_netns_fd(home) == 0
                ? nil : "cannot return to dnsfence's own network namespace: \(String(cString: strerror(errno)))"
        }
        guard let identity else {
            return "cannot enter network namespace \(netns): \(String(cString: strerror(ENOENT)))"
        }
        let fd = open(netns, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "cannot enter network namespace \(netns): \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        var status = stat()
        if fstat(fd, &status) == 0,
            identity != NamespaceIdentity(device: UInt64(status.st_dev), inode: UInt64(status.st_ino))
        {
            return "network namespace \(netns) was deleted and made again"
        }
        guard dnsfence_enter_netns_fd(fd) == 0 else {
            return "cannot enter network namespace \(netns): \(String(cString: strerror(errno)))"
        }
        return nil
    }
}
