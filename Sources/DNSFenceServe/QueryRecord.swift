public import DNSFenceCore
public import DNSFencePolicy
public import DNSFenceWire

#if canImport(Glibc)
    import Glibc
#endif

/// What is known about one query by the time it is answered: the input of the metrics and of
/// the query log.
public struct QueryRecord: Sendable {
    /// When the query was taken up, in monotonic nanoseconds (``monotonicNow()``). Not a
    /// `ContinuousClock.Instant`: that type is resilient, which made every copy and destroy of
    /// a record go through run-time value witnesses (~1,000 instructions per query).
    public var started: UInt64
    public var client: IPAddress
    public var transport: Transport
    public var listenerPolicy: String?
    public var policy: String?
    public var question: DNSQuestion?
    /// `pass`, `local`, `deny`, or `error` (malformed, refused before policy).
    public var action = "error"
    public var rule: RuleID?
    public var ede: ExtendedDNSError?
    /// Whether the answer came from an upstream (not the cache).
    public var upstream = false
    /// Addresses committed to the firewall for this answer.
    public var published: [IPAddress] = []

    /// CLOCK_MONOTONIC in nanoseconds.
    public static func monotonicNow() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    public init(started: UInt64, client: IPAddress, transport: Transport, listenerPolicy: String?) {
        self.started = started
        self.client = client
        self.transport = transport
        self.listenerPolicy = listenerPolicy
    }

    /// One JSON object (no trailing newline) for the query log, as a string (tests, messages;
    /// the log itself uses ``encodeJSON(into:rcode:now:time:)``).
    public func jsonLine(rcode: UInt8?, now: UInt64, wallClock: String) -> String {
        var out: [UInt8] = []
        encodeJSON(into: &out, rcode: rcode, now: now, time: Array(wallClock.utf8))
        return String(decoding: out, as: UTF8.self)
    }

    /// A JSON string literal.
    package static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// Where finished queries go for the query log; implementations must not block.
public protocol QueryLogSink: Sendable {
    /// `rcode`: the response's RCODE (low four bits), nil when nothing was sent.
    func record(_ record: QueryRecord, rcode: UInt8?)
    /// Whether answered queries (pass, local data) are logged too, not only denials and errors:
    /// if not, cache hits may take the byte-level path, which makes no record.
    var logsAnswers: Bool { get }
}
