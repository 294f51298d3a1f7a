/// A resource record type (RFC 1035 3.2.2 and the IANA registry).
public struct DNSType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let a = DNSType(rawValue: 1)
    public static let ns = DNSType(rawValue: 2)
    public static let cname = DNSType(rawValue: 5)
    public static let soa = DNSType(rawValue: 6)
    public static let ptr = DNSType(rawValue: 12)
    public static let hinfo = DNSType(rawValue: 13)
    public static let mx = DNSType(rawValue: 15)
    public static let txt = DNSType(rawValue: 16)
    public static let aaaa = DNSType(rawValue: 28)
    public static let srv = DNSType(rawValue: 33)
    public static let naptr = DNSType(rawValue: 35)
    public static let dname = DNSType(rawValue: 39)
    public static let opt = DNSType(rawValue: 41)
    public static let ds = DNSType(rawValue: 43)
    public static let rrsig = DNSType(rawValue: 46)
    public static let nsec = DNSType(rawValue: 47)
    public static let dnskey = DNSType(rawValue: 48)
    public static let nsec3 = DNSType(rawValue: 50)
    public static let svcb = DNSType(rawValue: 64)
    public static let https = DNSType(rawValue: 65)
    public static let tsig = DNSType(rawValue: 250)
    public static let ixfr = DNSType(rawValue: 251)
    public static let axfr = DNSType(rawValue: 252)
    public static let any = DNSType(rawValue: 255)
    public static let caa = DNSType(rawValue: 257)

    private static let names: [(DNSType, String)] = [
        (.a, "A"), (.ns, "NS"), (.cname, "CNAME"), (.soa, "SOA"), (.ptr, "PTR"), (.hinfo, "HINFO"),
        (.mx, "MX"), (.txt, "TXT"), (.aaaa, "AAAA"), (.srv, "SRV"), (.naptr, "NAPTR"), (.dname, "DNAME"),
        (.opt, "OPT"), (.ds, "DS"), (.rrsig, "RRSIG"), (.nsec, "NSEC"), (.dnskey, "DNSKEY"),
        (.nsec3, "NSEC3"), (.svcb, "SVCB"), (.https, "HTTPS"), (.tsig, "TSIG"), (.ixfr, "IXFR"),
        (.axfr, "AXFR"), (.any, "ANY"), (.caa, "CAA"),
    ]

    /// Mnemonic (`AAAA`) or the RFC 3597 generic form (`TYPE65280`).
    public var description: String {
        Self.names.first { $0.0 == self }?.1 ?? "TYPE\(rawValue)"
    }

    /// Parses a mnemonic (case-insensitive) or `TYPEnnn`.
    public init?(mnemonic: String) {
        let upper = mnemonic.uppercased()
        if let found = Self.names.first(where: { $0.1 == upper }) {
            self = found.0
        } else if upper.hasPrefix("TYPE"), let value = UInt16(upper.dropFirst(4)) {
            self.init(rawValue: value)
        } else {
            return nil
        }
    }

    /// Meta and query-only types that never appear as data (RFC 6895 3.1).
    public var isMetaType: Bool {
        rawValue == 41 || (rawValue >= 128 && rawValue <= 255)
    }
}

/// A resource record class; dnsfence answers IN only.
public struct DNSClass: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let `in` = DNSClass(rawValue: 1)
    public static let ch = DNSClass(rawValue: 3)
    public static let hs = DNSClass(rawValue: 4)
    public static let none = DNSClass(rawValue: 254)
    public static let any = DNSClass(rawValue: 255)

    public var description: String {
        switch rawValue {
        case 1: return "IN"
        case 3: return "CH"
        case 4: return "HS"
        case 254: return "NONE"
        case 255: return "ANY"
        default: return "CLASS\(rawValue)"
        }
    }
}

/// The 4-bit OPCODE field (RFC 1035 4.1.1, RFC 6895).
public struct DNSOpcode: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue & 0x0F }

    public static let query = DNSOpcode(rawValue: 0)
    public static let iquery = DNSOpcode(rawValue: 1)
    public static let status = DNSOpcode(rawValue: 2)
    public static let notify = DNSOpcode(rawValue: 4)
    public static let update = DNSOpcode(rawValue: 5)
}

/// A response code, up to 12 bits wide: the header's 4 bits plus 8 bits from EDNS (RFC 6891 6.1.3).
public struct DNSRCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue & 0x0FFF }

    public static let noError = DNSRCode(rawValue: 0)
    public static let formErr = DNSRCode(rawValue: 1)
    public static let servFail = DNSRCode(rawValue: 2)
    public static let nxDomain = DNSRCode(rawValue: 3)
    public static let notImp = DNSRCode(rawValue: 4)
    public static let refused = DNSRCode(rawValue: 5)
    /// RFC 8945: the query's TSIG key is unknown (dnsfence has none).
    public static let notAuth = DNSRCode(rawValue: 9)
    /// RFC 6891: BADVERS, only expressible with an OPT record.
    public static let badVers = DNSRCode(rawValue: 16)

    public var description: String {
        switch rawValue {
        case 0: return "NOERROR"
        case 1: return "FORMERR"
        case 2: return "SERVFAIL"
        case 3: return "NXDOMAIN"
        case 4: return "NOTIMP"
        case 5: return "REFUSED"
        case 9: return "NOTAUTH"
        case 16: return "BADVERS"
        default: return "RCODE\(rawValue)"
        }
    }
}
