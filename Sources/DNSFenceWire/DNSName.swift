// DNSFenceWire: DNS wire-format values (names, records, messages, EDNS) over ldns.
//
// The types in this module are plain Swift values. `LDNSCodec.swift` is the only file that
// touches ldns; `DNSMessageEncoder` and `WireScanner` are byte-level fast paths
// (see DESIGN.md, "Performance notes").

/// A domain name, held in uncompressed wire form (length-prefixed labels ending in the root
/// label), case preserved as received.
///
/// Equality and hashing are case-insensitive for ASCII letters (RFC 4343); use ``wire`` when
/// the exact bytes matter (for example to echo a question as asked).
public struct DNSName: Sendable, CustomStringConvertible {
    /// RFC 1035 section 2.3.4: labels are 63 octets or less.
    public static let maxLabelLength = 63
    /// RFC 1035 section 2.3.4: names are 255 octets or less in wire form.
    public static let maxWireLength = 255

    /// Uncompressed wire form, ending with the zero-length root label.
    public let wire: [UInt8]

    /// The root name `.`.
    public static let root = DNSName(uncheckedWire: [0])

    /// Wraps wire bytes the caller has already validated (labels ≤ 63, total ≤ 255, root-terminated).
    package init(uncheckedWire: [UInt8]) {
        self.wire = uncheckedWire
    }

    /// Validates and wraps an uncompressed wire-form name.
    public init(wire bytes: [UInt8]) throws(DNSNameError) {
        guard bytes.count <= Self.maxWireLength else { throw .nameTooLong(length: bytes.count) }
        var i = 0
        while true {
            guard i < bytes.count else { throw .notTerminated }
            let len = Int(bytes[i])
            if len == 0 {
                guard i == bytes.count - 1 else { throw .notTerminated }
                break
            }
            guard len <= Self.maxLabelLength else { throw .labelTooLong(label: "", length: len) }
            i += 1 + len
        }
        self.wire = bytes
    }

    /// Builds a name from labels given as raw bytes.
    public init(labels: [[UInt8]]) throws(DNSNameError) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(labels.reduce(1) { $0 + $1.count + 1 })
        for label in labels {
            guard !label.isEmpty else { throw .emptyLabel }
            guard label.count <= Self.maxLabelLength else {
                throw .labelTooLong(label: String(decoding: label, as: UTF8.self), length: label.count)
            }
            bytes.append(UInt8(label.count))
            bytes.append(contentsOf: label)
        }
        bytes.append(0)
        guard bytes.count <= Self.maxWireLength else { throw .nameTooLong(length: bytes.count) }
        self.wire = bytes
    }

    /// Parses presentation format (`www.example.com`, trailing dot optional, `\.` and `\DDD`
    /// escapes). Every name is taken as absolute. Non-ASCII labels are rejected with the
    /// A-label (RFC 5891) that should be written instead.
    public init(_ text: String) throws(DNSNameError) {
        var text = text
        let result = text.withUTF8 { utf8 in
            Result { () throws(DNSNameError) -> DNSName in try DNSName(presentation: utf8) }
        }
        self = try result.get()
    }

    /// Parses presentation format from UTF-8 bytes in one pass, writing wire form directly.
    public init(presentation utf8: UnsafeBufferPointer<UInt8>) throws(DNSNameError) {
        if utf8.isEmpty { throw .emptyName }
        if utf8.count == 1 && utf8.first == UInt8(ascii: ".") {
            self = .root
            return
        }
        var wire: [UInt8] = []
        wire.reserveCapacity(utf8.count + 2)
        var labelStart = 0
        wire.append(0)  // length placeholder of the first label
        var nonASCII = false
        var i = utf8.startIndex
        func finishLabel() throws(DNSNameError) {
            let length = wire.count - labelStart - 1
            guard length > 0 else { throw .emptyLabel }
            let label = Array(wire[(labelStart + 1)...])
            if nonASCII {
                let text = String(decoding: label, as: UTF8.self)
                throw .nonASCII(label: text, aLabel: Punycode.aLabel(for: text) ?? "?")
            }
            guard length <= Self.maxLabelLength else {
                throw .labelTooLong(label: String(decoding: label, as: UTF8.self), length: length)
            }
            wire[labelStart] = UInt8(length)
        }
        var endedWithDot = false
        while i != utf8.endIndex {
            let c = utf8[i]
            endedWithDot = false
            if c == UInt8(ascii: ".") {
                try finishLabel()
                labelStart = wire.count
                wire.append(0)
                nonASCII = false
                endedWithDot = true
                i = utf8.index(after: i)
                continue
            }
            if c == UInt8(ascii: "\\") {
                let j = utf8.index(after: i)
                guard j != utf8.endIndex else { throw .badEscape(String(decoding: utf8, as: UTF8.self)) }
                let d = utf8[j]
                if d >= UInt8(ascii: "0") && d <= UInt8(ascii: "9") {
                    var value = 0
                    var k = j
                    for _ in 0..<3 {
                        guard k != utf8.endIndex, utf8[k] >= UInt8(ascii: "0"), utf8[k] <= UInt8(ascii: "9") else {
                            throw .badEscape(String(decoding: utf8, as: UTF8.self))
                        }
                        value = value * 10 + Int(utf8[k] - UInt8(ascii: "0"))
                        k = utf8.index(after: k)
                    }
                    guard value <= 255 else { throw .badEscape(String(decoding: utf8, as: UTF8.self)) }
                    wire.append(UInt8(value))
                    i = k
                } else {
                    wire.append(d)
                    i = utf8.index(after: j)
                }
                continue
            }
            if c >= 0x80 { nonASCII = true }
            wire.append(c)
            i = utf8.index(after: i)
        }
        if endedWithDot {
            wire.removeLast()  // the placeholder after the trailing dot is the root label
        } else {
            try finishLabel()
        }
        wire.append(0)
        guard wire.count <= Self.maxWireLength else { throw .nameTooLong(length: wire.count) }
        self.wire = wire
    }

    /// Number of labels, not counting the root label.
    public var labelCount: Int {
        var n = 0
        var i = 0
        while wire[i] != 0 {
            n += 1
            i += 1 + Int(wire[i])
        }
        return n
    }

    /// Whether this is the root name.
    public var isRoot: Bool { wire.count == 1 }

    /// The labels as raw bytes, leftmost first.
    public var labels: [ArraySlice<UInt8>] {
        var out: [ArraySlice<UInt8>] = []
        var i = 0
        while wire[i] != 0 {
            let len = Int(wire[i])
            out.append(wire[(i + 1)..<(i + 1 + len)])
            i += 1 + len
        }
        return out
    }

    /// Offsets in ``wire`` where each suffix starts: `[0, after first label, …]`, excluding the root.
    public var labelOffsets: [Int] {
        var out: [Int] = []
        var i = 0
        while wire[i] != 0 {
            out.append(i)
            i += 1 + Int(wire[i])
        }
        return out
    }

    /// The name with ASCII letters folded to lower case (the canonical form of RFC 4034 6.2).
    public func lowercased() -> DNSName {
        guard wire.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) else { return self }
        var bytes = wire
        DNSName.foldCase(&bytes)
        return DNSName(uncheckedWire: bytes)
    }

    /// Folds ASCII upper-case letters to lower case in place (label length bytes are < 64 and
    /// never in `A`…`Z`, so the whole buffer can be folded blindly).
    package static func foldCase(_ bytes: inout [UInt8]) {
        for i in bytes.indices { bytes[i] = foldCase(bytes[i]) }
    }

    /// One byte folded: ASCII `A`…`Z` to lower case, anything else as it is.
    @inlinable package static func foldCase(_ byte: UInt8) -> UInt8 {
        byte &- 0x41 < 26 ? byte | 0x20 : byte
    }

    /// The parent name (first label removed); root stays root.
    public func parent() -> DNSName {
        guard !isRoot else { return self }
        return DNSName(uncheckedWire: Array(wire[(1 + Int(wire[0]))...]))
    }

    /// Whether `self` equals `other` or lies below it.
    public func isSubdomain(of other: DNSName) -> Bool {
        guard other.wire.count <= wire.count else { return false }
        for start in labelOffsets + [wire.count - 1] {
            let suffixLength = wire.count - start
            if suffixLength == other.wire.count {
                return DNSName.equalFoldingCase(wire[start...], other.wire[...])
            }
            if suffixLength < other.wire.count { return false }
        }
        return false
    }

    /// `self` with `suffix` removed, or nil if `self` is not below `suffix`.
    public func relative(to suffix: DNSName) -> [ArraySlice<UInt8>]? {
        guard isSubdomain(of: suffix) else { return nil }
        let all = labels
        return Array(all.prefix(all.count - suffix.labelCount))
    }

    /// Prepends labels to this name.
    public func prepending(_ prefix: [ArraySlice<UInt8>]) throws(DNSNameError) -> DNSName {
        try DNSName(labels: prefix.map(Array.init) + labels.map(Array.init))
    }

    /// ASCII case-insensitive byte comparison.
    package static func equalFoldingCase(_ a: ArraySlice<UInt8>, _ b: ArraySlice<UInt8>) -> Bool {
        guard a.count == b.count else { return false }
        var i = a.startIndex
        var j = b.startIndex
        while i < a.endIndex {
            var x = a[i]
            var y = b[j]
            if x >= 0x41 && x <= 0x5A { x |= 0x20 }
            if y >= 0x41 && y <= 0x5A { y |= 0x20 }
            if x != y { return false }
            i += 1
            j += 1
        }
        return true
    }

    /// Presentation format with a trailing dot; bytes outside printable ASCII and the
    /// special characters `.`, `\`, `"`, `;`, `(`, `)`, `@`, `$` are escaped (RFC 1035 5.1).
    public var description: String {
        if isRoot { return "." }
        var out = ""
        for label in labels {
            for byte in label {
                switch byte {
                case UInt8(ascii: "."), UInt8(ascii: "\\"), UInt8(ascii: "\""), UInt8(ascii: ";"),
                    UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "@"), UInt8(ascii: "$"):
                    out.append("\\")
                    out.append(Character(Unicode.Scalar(byte)))
                case 0x21...0x7E:
                    out.append(Character(Unicode.Scalar(byte)))
                default:
                    let s = String(byte)
                    out.append("\\" + String(repeating: "0", count: 3 - s.count) + s)
                }
            }
            out.append(".")
        }
        return out
    }
}

extension DNSName: Hashable {
    public static func == (lhs: DNSName, rhs: DNSName) -> Bool {
        equalFoldingCase(lhs.wire[...], rhs.wire[...])
    }

    /// Hashes the case-folded bytes eight at a time (one `combine` per word, not per byte).
    public func hash(into hasher: inout Hasher) {
        var word: UInt64 = 0
        var shift: UInt64 = 0
        for var byte in wire {
            if byte >= 0x41 && byte <= 0x5A { byte |= 0x20 }
            word |= UInt64(byte) << shift
            shift += 8
            if shift == 64 {
                hasher.combine(word)
                word = 0
                shift = 0
            }
        }
        hasher.combine(word)
        hasher.combine(wire.count)
    }
}

extension DNSName {
    /// A name known valid at compile time (constants in code); traps if it is not.
    package init(constant text: StaticString) {
        do {
            try self.init(text.description)
        } catch {
            preconditionFailure("invalid DNS name constant \(text): \(error)")
        }
    }
}

/// Why a name could not be built.
public enum DNSNameError: Error, Hashable, Sendable, CustomStringConvertible {
    case emptyName
    case emptyLabel
    case labelTooLong(label: String, length: Int)
    case nameTooLong(length: Int)
    case badEscape(String)
    case notTerminated
    case nonASCII(label: String, aLabel: String)

    public var description: String {
        switch self {
        case .emptyName: return "empty name"
        case .emptyLabel: return "empty label (two dots in a row, or a leading dot)"
        case .labelTooLong(let label, let length):
            return "label '\(label.prefix(20))…' is \(length) bytes long; the limit is 63"
        case .nameTooLong(let length): return "name is \(length) bytes in wire form; the limit is 255"
        case .badEscape(let text): return "bad escape sequence in '\(text)'"
        case .notTerminated: return "name does not end with the root label"
        case .nonASCII(let label, let aLabel):
            return "label '\(label)' is not ASCII; write its A-label '\(aLabel)' instead"
        }
    }
}
