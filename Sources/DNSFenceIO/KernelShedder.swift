import CDatagram
public import DNSFenceCore

#if canImport(Glibc)
    import Glibc
#endif

/// Rate limiting carried out in the kernel: an eBPF socket filter on every UDP listener socket
/// drops the datagrams of a client that the rate limiter has found over its limit, until the
/// moment its next query would conform (``block(kind:key:until:interval:expires:)``), before they are
/// queued on the socket. A flood then costs the kernel a map lookup per datagram, on the CPU that
/// receives it, instead of costing dnsfence's loop a read, a decision and a queue slot ahead of
/// other clients' queries. The decision stays the rate limiter's (its table, its clock): the
/// filter enforces the verdicts it is given, letting through one datagram per interval of the
/// client's rate (what the limiter would admit of a steady flood, and does admit when it reads
/// them), and forgets a block a second after the limiter last confirmed it.
///
/// While a client is blocked, one in 16 of its datagrams still reaches dnsfence when `slip` is
/// on, so that a real client whose address a flood uses still gets some TC=1 answers.
///
/// Loading the filter needs CAP_BPF or CAP_SYS_ADMIN (which `--user` keeps); writing verdicts
/// and attaching to sockets need only the descriptors, so they go on after privileges are dropped.
public final class KernelShedder: Sendable {
    /// The maps' and programs' descriptors; closed on deinit.
    private let shed: dnsfence_shed

    /// Why the filter could not be loaded.
    public struct Unavailable: Error, CustomStringConvertible {
        public let description: String
    }

    /// Creates the maps and loads the filter, or throws why not (no privilege, an old kernel).
    public init(blockEntries: UInt32 = 16_384) throws(Unavailable) {
        var shed = dnsfence_shed()
        var error = [CChar](repeating: 0, count: 512)
        let rc = dnsfence_shed_create(&shed, blockEntries, &error, UInt32(error.count))
        guard rc == 0 else {
            throw Unavailable(
                description: String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        self.shed = shed
    }

    deinit {
        var shed = self.shed
        dnsfence_shed_close(&shed)
    }

    /// Configures the filter for `limits` (nil: rate limiting off, or not done in the kernel:
    /// every datagram passes). Blocks written under other limits expire by themselves.
    public func configure(_ limits: RateLimits?) {
        var shed = self.shed
        guard let limits, limits.kernel else {
            _ = dnsfence_shed_configure(&shed, 0, 0, 0, 0)
            return
        }
        _ = dnsfence_shed_configure(
            &shed, 1, UInt32(32 - limits.ipv4Prefix), UInt32(64 - limits.ipv6Prefix), limits.slip > 0 ? 15 : 0)
    }

    /// Attaches the filter to `socket`; throws why it could not.
    public func attach(to socket: DatagramSocket) throws(DatagramError) {
        var shed = self.shed
        let rc = dnsfence_shed_attach(&shed, socket.fd, socket.localAddress.isIPv4 ? 0 : 1)
        if rc != 0 { throw DatagramError(operation: "attaching the rate-limit filter", code: -rc) }
    }

    /// Drops datagrams from `key` of `kind` (0: an IPv4 address, 1: its prefix, 2: an IPv6
    /// /64, 3: its prefix, as the rate limiter keys them) until `until`, then lets one through
    /// every `interval` (the client's rate: what dnsfence would admit of a steady flood), until
    /// `expires`, when the block is forgotten. Times are CLOCK_MONOTONIC nanoseconds. A failed
    /// write is not fatal: the rate limiter still drops in user space.
    @inline(__always)
    public func block(kind: UInt32, key: UInt64, until: UInt64, interval: UInt64, expires: UInt64) {
        var shed = self.shed
        _ = dnsfence_shed_block(&shed, key, kind, until, interval, expires)
    }

    /// Datagrams the filter has dropped since it was loaded.
    public var dropped: UInt64 {
        var shed = self.shed
        return dnsfence_shed_dropped(&shed)
    }
}
