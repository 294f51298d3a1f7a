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
    /// owner (lowercased) → `CLASS<TAB>TYPE<TAB>data` → TTL.
    private var records: [String: [String: UInt32]] = [:]
    /// Records besides the SOA.
    public private(set) var count = 0

    public init(origin: String, soaLine: String) throws(Incoherent) {
        guard let soa = SOA(line: soaLine) else { throw Incoherent(description: "not an SOA record: '\(soaLine)'") }
        self.origin = origin.lowercased()
        self.soaLine = soaLine
        self.soa = soa
    }

    /// Takes `line` (an ldns presentation line) as the new SOA.
    public mutating func setSOA(_ line: String) throws(Incoherent) {
        guard let soa = SOA(line: line) else { throw Incoherent(description: "not an SOA record: '\(line)'") }
        self.soa = soa
        soaLine = line
    }

    /// Adds the record on `line`; false if it was there already (its TTL is updated).
    @discardableResult
    public mutating func add(_ line: String) throws(Incoherent) -> Bool {
        let (owner, rest, ttl) = try Self.split(line)
        let new = records[owner, default: [:]].updateValue(ttl, forKey: rest) == nil
        if new { count += 1 }
        return new
    }

    /// Removes the record on `line` (TTL ignored); throws if the zone does not have it.
    public mutating func remove(_ line: String) throws(Incoherent) {
        let (owner, rest, _) = try Self.split(line)
        guard records[owner]?.removeValue(forKey: rest) != nil else {
            throw Incoherent(description: "IXFR deletes a record the zone does not have: '\(line)'")
        }
        if records[owner]?.isEmpty == true { records[owner] = nil }
        count -= 1
    }

    /// Whether the zone has the record `rest` (`CLASS<TAB>TYPE<TAB>data`) at `owner`.
    func has(_ owner: String, _ rest: String) -> Bool { records[owner]?[rest] != nil }

    /// Applies an IXFR's changes in place (checked against this zone when they were read).
    public mutating func apply(_ delta: ZoneDelta) {
        for (owner, rests) in delta.removed {
            for rest in rests where records[owner]?.removeValue(forKey: rest) != nil { count -= 1 }
            if records[owner]?.isEmpty == true { records[owner] = nil }
        }
        for (owner, data) in delta.added {
            for (rest, ttl) in data where records[owner, default: [:]].updateValue(ttl, forKey: rest) == nil {
                count += 1
            }
        }
        if let soa = SOA(line: delta.soaLine) {
            self.soa = soa
            soaLine = delta.soaLine
        }
    }

    /// The records of `owner` (lowercased), as lines.
    public func lines(of owner: String) -> [String] {
        (records[owner] ?? [:]).map { "\(owner)\t\($0.value)\t\($0.key)" }.sorted()
    }

    /// Zone-file text: the SOA first (the RPZ reader needs it there), then every record.
    public var text: String {
        var out = soaLine + "\n"
        out.reserveCapacity(count * 64)
        for (owner, data) in records {
            for (rest, ttl) in data {
                out += owner
                out += "\t\(ttl)\t"
                out += rest
                out += "\n"
            }
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

    /// `owner TTL rest` → (owner lowercased, rest, TTL).
    static func split(_ line: String) throws(Incoherent) -> (String, String, UInt32) {
        let fields = line.split(separator: "\t", maxSplits: 2, omittingEmptySubsequences: false)
        guard fields.count == 3, let ttl = UInt32(fields[1]), !fields[0].isEmpty, !fields[2].isEmpty else {
            throw Incoherent(description: "not a record line: '\(line)'")
        }
        return (fields[0].lowercased(), String(fields[2]), ttl)
    }

    /// RFC 1982: whether serial `a` is newer than `b`.
    public static func isNewer(_ a: UInt32, than b: UInt32) -> Bool { Int32(bitPattern: a &- b) > 0 }
}

/// An IXFR's changes to a zone, read and checked against it without copying it (a million
/// records are not copied for ten changes); applied in place when the transfer goes into
/// service (``ZoneContent/apply(_:)``).
public struct ZoneDelta: Sendable, Equatable {
    /// owner → `CLASS<TAB>TYPE<TAB>data` → TTL: records added (or given another TTL).
    var added: [String: [String: UInt32]] = [:]
    /// owner → records of the zone removed.
    var removed: [String: Set<String>] = [:]
    /// The SOA the changes lead to.
    public private(set) var soaLine: String
    public private(set) var serial: UInt32

    init(soaLine: String, serial: UInt32) {
        self.soaLine = soaLine
        self.serial = serial
    }

    mutating func setSOA(_ line: String) throws(ZoneContent.Incoherent) {
        guard let soa = ZoneContent.SOA(line: line) else {
            throw ZoneContent.Incoherent(description: "not an SOA record: '\(line)'")
        }
        soaLine = line
        serial = soa.serial
    }

    /// Adds the record on `line`; false if `base` with the changes so far has it already.
    mutating func add(_ line: String, to base: ZoneContent) throws(ZoneContent.Incoherent) -> Bool {
        let (owner, rest, ttl) = try ZoneContent.split(line)
        let present = added[owner]?[rest] != nil || (base.has(owner, rest) && removed[owner]?.contains(rest) != true)
        added[owner, default: [:]][rest] = ttl
        return !present
    }

    /// Removes the record on `line`; throws if `base` with the changes so far does not have it.
    mutating func remove(_ line: String, from base: ZoneContent) throws(ZoneContent.Incoherent) {
        let (owner, rest, _) = try ZoneContent.split(line)
        if added[owner]?.removeValue(forKey: rest) != nil {
            if added[owner]?.isEmpty == true { added[owner] = nil }
            return
        }
        guard base.has(owner, rest), removed[owner]?.contains(rest) != true else {
            throw ZoneContent.Incoherent(description: "IXFR deletes a record the zone does not have: '\(line)'")
        }
        removed[owner, default: []].insert(rest)
    }

    /// The records of `owner` in `base` with the changes, as lines.
    func lines(of owner: String, in base: ZoneContent) -> [String] {
        var data: [String: UInt32] = [:]
        for line in base.lines(of: owner) {
            if let (_, rest, ttl) = try? ZoneContent.split(line), removed[owner]?.contains(rest) != true {
                data[rest] = ttl
            }
        }
        for (rest, ttl) in added[owner] ?? [:] { data[rest] = ttl }
        return data.map { "\(owner)\t\($0.value)\t\($0.key)" }.sorted()
    }
}
