public import DNSFenceCore
public import DNSFenceWire

/// What identifies a cached answer: the policy that allowed it and the question, lower-cased,
/// plus the DO and CD bits that change what an upstream returns.
public struct CacheKey: Hashable, Sendable {
    /// The name, type and bits (not the policy: one name rarely sits in several policies, and
    /// `==` still tells them apart), so a lookup hashes no string.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(name)
        hasher.combine(UInt32(type.rawValue) | (dnssecOK ? 0x1_0000 : 0) | (checkingDisabled ? 0x2_0000 : 0))
    }

    public var policy: String
    public var name: DNSName
    public var type: DNSType
    public var dnssecOK: Bool
    public var checkingDisabled: Bool

    public init(policy: String, name: DNSName, type: DNSType, dnssecOK: Bool, checkingDisabled: Bool) {
        self.init(
            policy: policy, lowercasedName: name.lowercased(), type: type, dnssecOK: dnssecOK,
            checkingDisabled: checkingDisabled)
    }

    /// The same for a name already in lower case (the byte-level path folds it once).
    package init(policy: String, lowercasedName: DNSName, type: DNSType, dnssecOK: Bool, checkingDisabled: Bool) {
        self.policy = policy
        self.name = lowercasedName
        self.type = type
        self.dnssecOK = dnssecOK
        self.checkingDisabled = checkingDisabled
    }
}

/// An answer in wire form and the addresses it hands out (TTLs as stored).
public struct WireAnswer: Sendable, Hashable {
    public var template: ResponseTemplate
    public var addresses: [AnswerAddress]

    public init(template: ResponseTemplate, addresses: [AnswerAddress] = []) {
        self.template = template
        self.addresses = addresses
    }
}

/// A cached upstream answer: rcode, sections and flags as received, with TTLs to count down.
public struct CachedAnswer: Sendable, Hashable {
    public var rcode: DNSRCode
    public var authenticData: Bool
    public var answers: [DNSRecord]
    public var authorities: [DNSRecord]
    public var additionals: [DNSRecord]
    /// The same answer in wire form, as the caller shapes responses for this key (set by
    /// `store`'s `template` closure; TTLs are as stored and aged on use).
    public var template: ResponseTemplate?
    /// The addresses that wire form hands out, with their TTLs as stored (set with it).
    public var addresses: [AnswerAddress] = []
    /// Why its addresses are handed out, for the firewall (``SetElement/reason``): the policy
    /// and name it was asked under; 0: none.
    public var reason: UInt64 = 0

    public init(
        rcode: DNSRCode, authenticData: Bool, answers: [DNSRecord], authorities: [DNSRecord],
        additionals: [DNSRecord], template: ResponseTemplate? = nil
    ) {
        self.rcode = rcode
        self.authenticData = authenticData
        self.answers = answers
        self.authorities = authorities
        self.additionals = additionals
        self.template = template
    }

    /// An answer kept in wire form only (no records), with the addresses it hands out.
    public init(wire: WireAnswer, reason: UInt64 = 0) {
        self.init(
            rcode: wire.template.rcode, authenticData: wire.template.authenticData, answers: [], authorities: [],
            additionals: [], template: wire.template)
        addresses = wire.addresses
        self.reason = reason
    }

    /// The same answer with every TTL reduced by `elapsed` seconds.
    public func aged(by elapsed: UInt32) -> CachedAnswer {
        func age(_ records: [DNSRecord]) -> [DNSRecord] {
            records.map {
                var r = $0; r.ttl = r.ttl > elapsed ? r.ttl - elapsed : 0; return r
            }
        }
        var copy = self
        copy.answers = age(answers)
        copy.authorities = age(authorities)
        copy.additionals = age(additionals)
        return copy
    }
}

/// A cached answer as the cache holds it: immutable, behind one reference, so a hit hands it
/// on with one retain instead of copying every field.
public final class CacheEntry: Sendable {
    public let answer: CachedAnswer

    public init(_ answer: CachedAnswer) { self.answer = answer }

    /// What a freed node holds until it is reused.
    static let empty = CacheEntry(
        CachedAnswer(rcode: .noError, authenticData: false, answers: [], authorities: [], additionals: []))
}
