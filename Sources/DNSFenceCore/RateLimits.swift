/// Per-client query rate limits over UDP (TCP has its connection caps and cannot be spoofed),
/// like response rate limiting in NSD and Knot: each client address (IPv6: its /64) may send
/// `queries` per second with bursts of `burst`, and its prefix (`ipv4Prefix`, `ipv6Prefix`)
/// sixteen times that (rate and burst), so that one host spreading over its neighbours'
/// addresses is still held. A query over a limit is dropped, or every `slip`-th one (on
/// average) answered with TC=1 so that a real client retries over TCP. Clients in `exempt`
/// (by default loopback, where every client has the same address and limiting one would limit
/// all) are never limited. Memory is bounded: 512 KiB, whatever the number of clients.
/// With `kernel`, a client over its limit is dropped by a socket filter until its next query
/// would conform, before dnsfence reads its datagrams (where the filter can be loaded).
public struct RateLimits: Hashable, Sendable {
    public var queries: UInt32
    public var burst: UInt32
    public var ipv4Prefix: Int
    public var ipv6Prefix: Int
    public var slip: UInt32
    public var exempt: [IPPrefix]
    public var kernel: Bool

    /// docs/configuration.md, "Rate limits".
    public static let standard = RateLimits(
        queries: 5000, burst: 5000, ipv4Prefix: 24, ipv6Prefix: 56, slip: 2,
        exempt: [IPPrefix("127.0.0.0/8")!, IPPrefix("::1/128")!], kernel: true)

    public init(
        queries: UInt32, burst: UInt32, ipv4Prefix: Int, ipv6Prefix: Int, slip: UInt32, exempt: [IPPrefix],
        kernel: Bool = true
    ) {
        self.queries = queries
        self.burst = burst
        self.ipv4Prefix = ipv4Prefix
        self.ipv6Prefix = ipv6Prefix
        self.slip = slip
        self.exempt = exempt
        self.kernel = kernel
    }
}
