/// A DNS message (RFC 1035 4.1) as Swift values. The OPT record is held in ``edns``, never in
/// ``additionals``.
public struct DNSMessage: Hashable, Sendable {
    public var id: UInt16
    /// QR: this is a response.
    public var isResponse: Bool
    public var opcode: DNSOpcode
    public var authoritative: Bool
    public var truncated: Bool
    public var recursionDesired: Bool
    public var recursionAvailable: Bool
    /// The Z bit (must be zero).
    public var zero: Bool
    public var authenticData: Bool
    public var checkingDisabled: Bool
    /// The full response code; the encoder splits it between the header and ``edns``.
    public var rcode: DNSRCode
    public var questions: [DNSQuestion]
    public var answers: [DNSRecord]
    public var authorities: [DNSRecord]
    public var additionals: [DNSRecord]
    public var edns: EDNS?

    public init(
        id: UInt16 = 0, isResponse: Bool = false, opcode: DNSOpcode = .query, authoritative: Bool = false,
        truncated: Bool = false, recursionDesired: Bool = false, recursionAvailable: Bool = false,
        zero: Bool = false, authenticData: Bool = false, checkingDisabled: Bool = false, rcode: DNSRCode = .noError,
        questions: [DNSQuestion] = [], answers: [DNSRecord] = [], authorities: [DNSRecord] = [],
        additionals: [DNSRecord] = [], edns: EDNS? = nil
    ) {
        self.id = id
        self.isResponse = isResponse
        self.opcode = opcode
        self.authoritative = authoritative
        self.truncated = truncated
        self.recursionDesired = recursionDesired
        self.recursionAvailable = recursionAvailable
        self.zero = zero
        self.authenticData = authenticData
        self.checkingDisabled = checkingDisabled
        self.rcode = rcode
        self.questions = questions
        self.answers = answers
        self.authorities = authorities
        self.additionals = additionals
        self.edns = edns
    }

    /// A query for one question.
    public static func query(id: UInt16, _ question: DNSQuestion, recursionDesired: Bool = true, edns: EDNS? = EDNS())
        -> DNSMessage
    {
        DNSMessage(id: id, recursionDesired: recursionDesired, questions: [question], edns: edns)
    }

    /// The header flags word as on the wire (bytes 2–3), with the low 4 bits of ``rcode``.
    public var flagsWord: UInt16 {
        var word: UInt16 = 0
        if isResponse { word |= 0x8000 }
        word |= UInt16(opcode.rawValue) << 11
        if authoritative { word |= 0x0400 }
        if truncated { word |= 0x0200 }
        if recursionDesired { word |= 0x0100 }
        if recursionAvailable { word |= 0x0080 }
        if zero { word |= 0x0040 }
        if authenticData { word |= 0x0020 }
        if checkingDisabled { word |= 0x0010 }
        word |= rcode.rawValue & 0x000F
        return word
    }

    /// Sets every header flag from the wire flags word (the RCODE's low 4 bits only).
    public mutating func setFlags(_ word: UInt16) {
        isResponse = word & 0x8000 != 0
        opcode = DNSOpcode(rawValue: UInt8(word >> 11 & 0x0F))
        authoritative = word & 0x0400 != 0
        truncated = word & 0x0200 != 0
        recursionDesired = word & 0x0100 != 0
        recursionAvailable = word & 0x0080 != 0
        zero = word & 0x0040 != 0
        authenticData = word & 0x0020 != 0
        checkingDisabled = word & 0x0010 != 0
        rcode = DNSRCode(rawValue: (rcode.rawValue & 0x0FF0) | (word & 0x000F))
    }

    /// The first question, if any.
    public var question: DNSQuestion? { questions.first }
}
