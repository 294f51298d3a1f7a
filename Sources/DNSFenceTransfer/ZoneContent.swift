/// A policy zone as transferred: its SOA and its other records, one line each in presentation
/// format, keyed without the TTL so that an IXFR deletion finds the record it names (RFC 1995:
/// a record is its owner, class, type and data). Rendered back as zone-file text for the
/// policy compiler and the cache file.
public struct ZoneContent: Sendable, Equatable {
    /// The zone's SOA (its serial and timers).
    public struct SOA: Sendable, Equatable {
        public var serial: UInt32
        public var refresh: UInt32
        public var retry: UInt32
        public var expire: UInt32
        public var minimum: UInt32

        public init(serial: UInt32, refresh: UInt32, retry: UInt32, expire: UInt32, minimum: UInt32) {
            self.serial = serial
            self.refresh = refresh
            self.retry = retry
            self.expire = expire
            self.minimum = minimum
        }

        /// Reads the SOA fields from a presentation line (`owner TTL IN SOA mname rname serial
        /// refresh retry expire minimum`).
        init?(line: String) {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let soa = fields.firstIndex(where: { $0.uppercased() == "SOA" }), fields.count >= soa + 8 else {
                return nil
            }
            let numbers = fields[(soa + 3)...(soa + 7)].compactMap { UInt32($0) }
            guard numbers.count == 5 else { return nil }
            self.init(
                serial: numbers[0], refresh: numbers[1], retry: numbers[2], expire: numbers[3], minimum: numbers[4])
        }
    }

    /// A record that could not be applied.
    public struct Incoherent: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// The zone's name, absolute and lowercased.
    public let origin: String
    public private(set) var soaLine: String
    public private(set) var soa: SOA
    /// `owner<TAB>CLASS<TAB>TYPE<TAB>data` → TTL.
    private var records: [String: UInt32] = [:]

    public init(origin: String, soaLine: String) throws(Incoherent) {
        guard let soa = SOA(line: soaLine) else { throw Incoherent(description: "not an SOA record: '\(soaLine)'") }
        self.origin = origin.lowercased()
        self.soaLine = soaLine
        self.soa = soa
    }

    /// Records besides the SOA.
    public var count: Int { records.count }

    /// Takes `line` (an ldns presentation line) as the new SOA.
    public mutating func setSOA(_ line: String) throws(Incoherent) {
        guard let soa = SOA(line: line) else { throw Incoherent(description: "not an SOA record: '\(line)'") }
        self.soa = soa
        soaLine = line
    }

    /// Adds the record on `line`; false if it was there already (its TTL is updated).
    @discardableResult
    public mutating func add(_ line: String) throws(Incoherent) -> Bool {
        let (key, ttl) = try Self.split(line)
        return records.updateValue(ttl, forKey: key) == nil
    }

    /// Removes the record on `line` (TTL ignored); throws if the zone does not have it.
    public mutating func remove(_ line: String) throws(Incoherent) {
        let (key, _) = try Self.split(line)
        guard records.removeValue(forKey: key) != nil else {
            throw Incoherent(description: "IXFR deletes a record the zone does not have: '\(line)'")
        }
    }

    /// Zone-file text: the SOA first (the RPZ reader needs it there), then every record.
    public var text: String {
        var out = soaLine + "\n"
        out.reserveCapacity(records.count * 64)
        for (key, ttl) in records {
            guard let tab = key.firstIndex(of: "\t") else { continue }
            out += key[..<tab]
            out += "\t\(ttl)"
            out += key[tab...]
            out += "\n"
        }
        return out
    }

    /// Reads what ``text`` wrote (a cache file; `;` lines are comments). Nil if it is not that.
    public static func parse(_ text: String, origin: String) -> ZoneContent? {
        var content: ZoneContent? = nil
        for line in text.split(separator: "\n") where !line.hasPrefix(";") && !line.isEmpty {
            do {
                if content == nil {
                    content = try ZoneContent(origin: origin, soaLine: String(line))
                } else {
                    try content!.add(String(line))
                }
            } catch {
                return nil
            }
        }
        return content
    }

    /// `owner TTL rest` → (`owner<TAB>rest`, TTL), the owner lowercased.
    static func split(_ line: String) throws(Incoherent) -> (String, UInt32) {
        let fields = line.split(separator: "\t", maxSplits: 2, omittingEmptySubsequences: false)
        guard fields.count == 3, let ttl = UInt32(fields[1]), !fields[0].isEmpty, !fields[2].isEmpty else {
            throw Incoherent(description: "not a record line: '\(line)'")
        }
        return (fields[0].lowercased() + "\t" + fields[2], ttl)
    }

    /// RFC 1982: whether serial `a` is newer than `b`.
    public static func isNewer(_ a: UInt32, than b: UInt32) -> Bool { Int32(bitPattern: a &- b) > 0 }
}
