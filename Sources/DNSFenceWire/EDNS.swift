/// The EDNS(0) pseudo-record (RFC 6891): the OPT record of a message, folded out of the
/// additional section.
public struct EDNS: Hashable, Sendable {
    /// Requestor's UDP payload size (the OPT record's CLASS field).
    public var udpPayloadSize: UInt16
    /// Upper 8 bits of the extended RCODE (the OPT TTL's first byte).
    public var extendedRCode: UInt8
    public var version: UInt8
    /// The DO bit (RFC 3225).
    public var dnssecOK: Bool
    /// The remaining 15 Z bits, which must be zero on send and ignored on receipt.
    public var z: UInt16
    public var options: [EDNSOption]

    public init(
        udpPayloadSize: UInt16 = 1232, extendedRCode: UInt8 = 0, version: UInt8 = 0, dnssecOK: Bool = false,
        z: UInt16 = 0, options: [EDNSOption] = []
    ) {
        self.udpPayloadSize = udpPayloadSize
        self.extendedRCode = extendedRCode
        self.version = version
        self.dnssecOK = dnssecOK
        self.z = z
        self.options = options
    }

    /// The Extended DNS Errors carried in ``options`` (RFC 8914).
    public var extendedErrors: [ExtendedDNSError] {
        options.compactMap(ExtendedDNSError.init(option:))
    }
}

/// One EDNS option: code and raw data.
public struct EDNSOption: Hashable, Sendable {
    public var code: UInt16
    public var data: [UInt8]

    public init(code: UInt16, data: [UInt8]) {
        self.code = code
        self.data = data
    }

    public static let cookieCode: UInt16 = 10
    public static let paddingCode: UInt16 = 12
    public static let extendedErrorCode: UInt16 = 15
}

/// An Extended DNS Error (RFC 8914): INFO-CODE plus optional UTF-8 EXTRA-TEXT.
public struct ExtendedDNSError: Hashable, Sendable, CustomStringConvertible {
    public var infoCode: UInt16
    public var extraText: String

    public init(_ infoCode: UInt16, _ extraText: String = "") {
        self.infoCode = infoCode
        self.extraText = extraText
    }

    /// RFC 8914 section 4 codes dnsfence uses.
    public static let otherError: UInt16 = 0
    public static let staleAnswer: UInt16 = 3
    public static let forgedAnswer: UInt16 = 4
    public static let prohibited: UInt16 = 18
    public static let blocked: UInt16 = 15
    public static let censored: UInt16 = 16
    public static let filtered: UInt16 = 17
    public static let notReady: UInt16 = 14
    public static let noReachableAuthority: UInt16 = 22
    public static let networkError: UInt16 = 23

    /// Reads an EDE from an option with code 15; nil for other options or a short one.
    public init?(option: EDNSOption) {
        guard option.code == EDNSOption.extendedErrorCode, option.data.count >= 2 else { return nil }
        infoCode = UInt16(option.data[0]) << 8 | UInt16(option.data[1])
        // RFC 8914: EXTRA-TEXT is not NUL-terminated, but tolerate a trailing NUL.
        var text = option.data.dropFirst(2)
        if text.last == 0 { text = text.dropLast() }
        extraText = String(decoding: text, as: UTF8.self)
    }

    /// The option carrying this error.
    public var option: EDNSOption {
        EDNSOption(
            code: EDNSOption.extendedErrorCode,
            data: [UInt8(infoCode >> 8), UInt8(infoCode & 0xFF)] + Array(extraText.utf8))
    }

    public var description: String { extraText.isEmpty ? "EDE \(infoCode)" : "EDE \(infoCode) (\(extraText))" }
}
