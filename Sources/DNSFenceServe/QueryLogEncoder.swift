import DNSFenceCore
import DNSFenceWire

#if canImport(Glibc)
    public import Glibc
#endif

/// The query log's JSON, written as bytes into a reused buffer: no `String` per field, no
/// intermediate arrays (a line used to cost more than the query it described).
extension QueryRecord {
    /// Appends one JSON object (no newline) to `out`. `time`: the RFC 3339 timestamp's bytes;
    /// `rcode`: the response's RCODE (low four bits), nil when nothing was sent.
    public func encodeJSON(into out: inout [UInt8], rcode: UInt8?, now: UInt64, time: some Collection<UInt8>) {
        out.append(contentsOf: #"{"time":""#.utf8)
        out.append(contentsOf: time)
        out.append(contentsOf: #"","client":""#.utf8)
        Self.append(client, to: &out)
        out.append(contentsOf: #"","transport":""#.utf8)
        out.append(contentsOf: transport.rawValue.utf8)
        out.append(contentsOf: #"","listener_policy":"#.utf8)
        Self.appendString(listenerPolicy, to: &out)
        out.append(contentsOf: #","policy":"#.utf8)
        Self.appendString(policy, to: &out)
        out.append(contentsOf: #","qname":"#.utf8)
        if let question { Self.append(question.name, to: &out) } else { out.append(contentsOf: "null".utf8) }
        out.append(contentsOf: #","qtype":"#.utf8)
        Self.appendString(question?.type.description, to: &out)
        out.append(contentsOf: #","action":"#.utf8)
        Self.appendString(action, to: &out)
        out.append(contentsOf: #","rule":"#.utf8)
        Self.appendString(rule?.description, to: &out)
        out.append(contentsOf: #","rcode":"#.utf8)
        Self.appendString(rcode.map { DNSRCode(rawValue: UInt16($0 & 0x0F)).description } ?? "dropped", to: &out)
        out.append(contentsOf: #","ede":"#.utf8)
        if let ede { Self.appendDecimal(UInt64(ede.infoCode), to: &out) } else { out.append(contentsOf: "null".utf8) }
        out.append(contentsOf: #","ede_text":"#.utf8)
        Self.appendString(ede?.extraText, to: &out)
        out.append(contentsOf: #","latency_us":"#.utf8)
        Self.appendDecimal((now > started ? now - started : 0) / 1_000, to: &out)
        out.append(contentsOf: #","upstream":"#.utf8)
        out.append(contentsOf: (upstream ? "true" : "false").utf8)
        out.append(contentsOf: #","published":["#.utf8)
        for (i, address) in published.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "\""))
            Self.append(address, to: &out)
            out.append(UInt8(ascii: "\""))
        }
        out.append(contentsOf: "]}".utf8)
    }

    /// A name as a JSON string of its presentation form (as `DNSName.description` writes it),
    /// straight from the wire bytes.
    static func append(_ name: DNSName, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        out.reserveCapacity(out.count + name.wire.count + 8)
        name.wire.withUnsafeBufferPointer { wire in
            var i = 0
            if wire.count <= 1 { out.append(UInt8(ascii: ".")) }
            while i < wire.count, wire[i] != 0 {
                let end = i + 1 + Int(wire[i])
                i += 1
                while i < end && i < wire.count {
                    let byte = wire[i]
                    switch byte {
                    case UInt8(ascii: "\\"), UInt8(ascii: "\""):
                        out.append(contentsOf: #"\\\"#.utf8)
                        out.append(byte)
                    case UInt8(ascii: "."), UInt8(ascii: ";"), UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "@"),
                        UInt8(ascii: "$"):
                        out.append(contentsOf: #"\\"#.utf8)
                        out.append(byte)
                    case 0x21...0x7E:
                        out.append(byte)
                    default:
                        out.append(contentsOf: #"\\"#.utf8)
                        out.append(UInt8(ascii: "0") + byte / 100)
                        out.append(UInt8(ascii: "0") + byte / 10 % 10)
                        out.append(UInt8(ascii: "0") + byte % 10)
                    }
                    i += 1
                }
                out.append(UInt8(ascii: "."))
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// A JSON string, or `null`.
    static func appendString(_ text: String?, to out: inout [UInt8]) {
        guard var text else { return out.append(contentsOf: "null".utf8) }
        out.append(UInt8(ascii: "\""))
        // Most strings need no escaping: copied whole.
        let plain = text.withUTF8 { bytes in
            guard !bytes.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else {
                return false
            }
            out.append(contentsOf: bytes)
            return true
        }
        if plain { return out.append(UInt8(ascii: "\"")) }
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case UInt8(ascii: "\n"): out.append(contentsOf: #"\n"#.utf8)
            case UInt8(ascii: "\r"): out.append(contentsOf: #"\r"#.utf8)
            case UInt8(ascii: "\t"): out.append(contentsOf: #"\t"#.utf8)
            case 0..<0x20:
                out.append(contentsOf: #"\u00"#.utf8)
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0x0F)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    static func appendDecimal(_ value: UInt64, to out: inout [UInt8]) {
        if value < 10 { return out.append(UInt8(ascii: "0") + UInt8(value)) }
        var digits:
            (
                UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8
            ) =
                (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        var rest = value
        withUnsafeMutableBytes(of: &digits) { buffer in
            while rest > 0 {
                buffer[count] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
                count += 1
            }
            for i in stride(from: count - 1, through: 0, by: -1) { out.append(buffer[i]) }
        }
    }

    /// An address in its usual text form (IPv4 written here; IPv6 through inet_ntop).
    static func append(_ address: IPAddress, to out: inout [UInt8]) {
        guard case .v4(let value) = address else { return out.append(contentsOf: address.description.utf8) }
        for shift in stride(from: 24, through: 0, by: -8) {
            appendDecimal(UInt64((value >> UInt32(shift)) & 0xFF), to: &out)
            if shift > 0 { out.append(UInt8(ascii: ".")) }
        }
    }
}

/// RFC 3339 UTC timestamps with microseconds, the date and time part formatted once a second.
public struct WallClock: Sendable {
    private var second: Int = -1
    private var prefix: [UInt8] = []

    public init() {}

    /// The time now, as the query log writes it.
    public static func now() -> timespec {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return ts
    }

    /// Appends `ts` as `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`.
    public mutating func append(_ ts: timespec, to out: inout [UInt8]) {
        if ts.tv_sec != second {
            second = ts.tv_sec
            var seconds = ts.tv_sec
            var parts = tm()
            gmtime_r(&seconds, &parts)
            prefix.removeAll(keepingCapacity: true)
            func two(_ value: Int32) {
                prefix.append(UInt8(ascii: "0") + UInt8(value / 10 % 10))
                prefix.append(UInt8(ascii: "0") + UInt8(value % 10))
            }
            let year = parts.tm_year + 1900
            two(year / 100)
            two(year % 100)
            prefix.append(UInt8(ascii: "-"))
            two(parts.tm_mon + 1)
            prefix.append(UInt8(ascii: "-"))
            two(parts.tm_mday)
            prefix.append(UInt8(ascii: "T"))
            two(parts.tm_hour)
            prefix.append(UInt8(ascii: ":"))
            two(parts.tm_min)
            prefix.append(UInt8(ascii: ":"))
            two(parts.tm_sec)
            prefix.append(UInt8(ascii: "."))
        }
        out.append(contentsOf: prefix)
        let micros = Int(ts.tv_nsec / 1000)
        var divisor = 100_000
        while divisor > 0 {
            out.append(UInt8(ascii: "0") + UInt8(micros / divisor % 10))
            divisor /= 10
        }
        out.append(UInt8(ascii: "Z"))
    }
}
