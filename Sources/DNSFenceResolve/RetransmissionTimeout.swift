public import NIOCore

/// How long to wait for one upstream, learned from its answers (RFC 6298, as Unbound's infra
/// cache does per server): a smoothed round-trip time and its variation give the timeout
/// `srtt + 4 × rttvar`, within ``minimum`` and ``maximum``. A timeout doubles it (up to the
/// maximum), so an upstream slower than the current timeout is waited for longer next time and
/// its answer then teaches the estimate; until a first answer, the configured timeout is used.
public struct RetransmissionTimeout: Sendable, Equatable {
    public static let minimum: Int64 = 500_000_000
    public static let maximum: Int64 = 5_000_000_000

    /// Nanoseconds; nil until a first answer.
    public private(set) var smoothed: Int64?
    public private(set) var variation: Int64 = 0
    /// The timeout for the next attempt, in nanoseconds.
    public private(set) var timeout: Int64

    public init(initial: TimeAmount) {
        timeout = min(max(initial.nanoseconds, Self.minimum), Self.maximum)
    }

    /// An answer after `rtt` nanoseconds.
    public mutating func answered(after rtt: Int64) {
        let sample = max(rtt, 0)
        if let srtt = smoothed {
            variation = (3 * variation + abs(srtt - sample)) / 4
            smoothed = (7 * srtt + sample) / 8
        } else {
            smoothed = sample
            variation = sample / 2
        }
        timeout = min(max(smoothed! + 4 * variation, Self.minimum), Self.maximum)
    }

    /// No answer within ``timeout``.
    public mutating func timedOut() {
        timeout = min(timeout * 2, Self.maximum)
    }
}
