/// Why bytes could not be decoded as a DNS message. Every case names the offset where the
/// problem was found so a capture can be checked by hand.
public enum WireError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Fewer than the 12 bytes of a header.
    case tooShort(length: Int)
    /// More than 65,535 bytes, the largest DNS message.
    case tooLong(length: Int)
    /// The header's counts promise more records than the bytes can hold.
    case countsExceedData(declaredMinimum: Int, available: Int)
    /// A field runs past the end of the message.
    case truncated(at: Int, needed: Int)
    case labelTooLong(at: Int, length: Int)
    case nameTooLong(at: Int)
    /// A compression pointer that does not point strictly backwards to an earlier label.
    case badCompressionPointer(at: Int, target: Int)
    /// Label type 0x40 or 0x80 (RFC 6891 removed extended labels).
    case reservedLabelType(at: Int, byte: UInt8)
    /// Bytes left after the last record the counts announce.
    case trailingData(at: Int, count: Int)
    /// More than one OPT record (RFC 6891 6.1.1).
    case multipleOPT(at: Int)
    /// OPT outside the additional section, or with an owner other than the root.
    case misplacedOPT(at: Int)
    /// An EDNS option whose length runs past its OPT record.
    case badEDNSOption(at: Int)
    /// RDATA that does not fit its type (reported by ldns).
    case badRData(type: DNSType, at: Int, reason: String)
    /// ldns rejected the message for a reason not caught above.
    case rejected(reason: String)

    public var description: String {
        switch self {
        case .tooShort(let length): return "message is \(length) bytes, shorter than a 12-byte header"
        case .tooLong(let length): return "message is \(length) bytes, longer than 65535"
        case .countsExceedData(let minimum, let available):
            return "header counts need at least \(minimum) bytes, only \(available) follow the header"
        case .truncated(let at, let needed): return "field at offset \(at) needs \(needed) bytes past the end"
        case .labelTooLong(let at, let length): return "label at offset \(at) is \(length) bytes; the limit is 63"
        case .nameTooLong(let at): return "name at offset \(at) is longer than 255 bytes"
        case .badCompressionPointer(let at, let target):
            return "compression pointer at offset \(at) points to \(target), not to an earlier label"
        case .reservedLabelType(let at, let byte):
            return "reserved label type 0x\(String(byte, radix: 16)) at offset \(at)"
        case .trailingData(let at, let count): return "\(count) bytes of trailing data at offset \(at)"
        case .multipleOPT(let at): return "second OPT record at offset \(at)"
        case .misplacedOPT(let at):
            return "OPT record at offset \(at) outside the additional section or not owned by the root"
        case .badEDNSOption(let at): return "EDNS option at offset \(at) runs past its OPT record"
        case .badRData(let type, let at, let reason): return "\(type) record at offset \(at): \(reason)"
        case .rejected(let reason): return "rejected by ldns: \(reason)"
        }
    }

    /// The response code a server answers with for this error (RFC 1035: FORMERR for a
    /// message it cannot interpret). One place, so Serve never decides this itself.
    public var responseCode: DNSRCode { .formErr }
}
