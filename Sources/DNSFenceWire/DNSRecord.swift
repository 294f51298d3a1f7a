public import DNSFenceCore

/// A question: name, type and class (RFC 1035 4.1.2).
public struct DNSQuestion: Hashable, Sendable, CustomStringConvertible {
    public var name: DNSName
    public var type: DNSType
    public var rrClass: DNSClass

    public init(name: DNSName, type: DNSType, rrClass: DNSClass = .in) {
        self.name = name
        self.type = type
        self.rrClass = rrClass
    }

    public var description: String { "\(name) \(rrClass) \(type)" }
}

/// A resource record with its RDATA in uncompressed wire form.
///
/// Names inside RDATA (CNAME targets, SOA names, …) are stored uncompressed; the encoder may
/// compress them again for the types RFC 3597 section 4 allows.
public struct DNSRecord: Hashable, Sendable, CustomStringConvertible {
    public var name: DNSName
    public var type: DNSType
    public var rrClass: DNSClass
    public var ttl: UInt32
    public var rdata: [UInt8]

    public init(name: DNSName, type: DNSType, rrClass: DNSClass = .in, ttl: UInt32, rdata: [UInt8]) {
        self.name = name
        self.type = type
        self.rrClass = rrClass
        self.ttl = ttl
        self.rdata = rdata
    }

    /// An A or AAAA record for `address`.
    /// The same record with owner `name` (local data answers with the name as asked).
    public func renamed(_ name: DNSName) -> DNSRecord {
        var copy = self
        copy.name = name
        return copy
    }

    public init(name: DNSName, ttl: UInt32, address: IPAddress) {
        self.init(name: name, type: address.isIPv4 ? .a : .aaaa, ttl: ttl, rdata: address.bytes)
    }

    /// A CNAME record pointing at `target`.
    public init(name: DNSName, ttl: UInt32, cname target: DNSName) {
        self.init(name: name, type: .cname, ttl: ttl, rdata: target.wire)
    }

    /// The address of an A or AAAA record.
    public var address: IPAddress? {
        switch type {
        case .a where rdata.count == 4, .aaaa where rdata.count == 16: return IPAddress(bytes: rdata)
        default: return nil
        }
    }

    /// The target of a CNAME (or DNAME) record.
    public var target: DNSName? {
        guard type == .cname || type == .dname else { return nil }
        return try? DNSName(wire: rdata)
    }

    /// The SOA MINIMUM field (RFC 2308 negative-caching TTL), if this is a well-formed SOA.
    public var soaMinimum: UInt32? {
        guard type == .soa, rdata.count >= 22 else { return nil }
        // MNAME and RNAME are uncompressed names; skip both, then SERIAL REFRESH RETRY EXPIRE MINIMUM.
        var i = 0
        for _ in 0..<2 {
            while i < rdata.count, rdata[i] != 0 { i += 1 + Int(rdata[i]) }
            i += 1
        }
        guard i + 20 == rdata.count else { return nil }
        return rdata[(i + 16)..<(i + 20)].reduce(0) { $0 << 8 | UInt32($1) }
    }

    public var description: String {
        var text = "\(name) \(ttl) \(rrClass) \(type)"
        if let address {
            text += " \(address)"
        } else if let target {
            text += " \(target)"
        } else {
            text += " \\# \(rdata.count)"
        }
        return text
    }
}
