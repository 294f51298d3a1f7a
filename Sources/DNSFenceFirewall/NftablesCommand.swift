public import DNSFenceCore

/// Renders nftables commands from typed values: the one place text is made, pure and tested.
/// Names must be identifiers (`[A-Za-z][A-Za-z0-9_]*`); anything else is refused rather than
/// interpolated.
public enum NftablesCommand {
    static let families: Set<String> = ["ip", "ip6", "inet"]

    static func isIdentifier(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, text.utf8.count <= 63,
            (first >= "A" && first <= "Z") || (first >= "a" && first <= "z")
        else { return false }
        return text.unicodeScalars.allSatisfy {
            ($0 >= "A" && $0 <= "Z") || ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "_"
        }
    }

    /// Whether `target`'s names are safe to render.
    public static func isValid(_ target: SetTarget) -> Bool {
        families.contains(target.family) && isIdentifier(target.table) && isIdentifier(target.set)
    }

    /// Idempotent creation of the table and set (`add` leaves existing ones, and their
    /// elements and rules, untouched).
    public static func create(_ target: SetTarget) -> String {
        let type = target.isIPv6 ? "ipv6_addr" : "ipv4_addr"
        return "add table \(target.family) \(target.table)\n"
            + "add set \(target.family) \(target.table) \(target.set) { type \(type); flags timeout; }"
    }

    /// Deletes `addresses` from `target` (one command; in a buffer with others, one transaction).
    public static func delete(_ addresses: [IPAddress], from target: SetTarget) -> String {
        "delete element \(target.family) \(target.table) \(target.set) { "
            + addresses.map(\.description).joined(separator: ", ") + " }"
    }

    public static func list(_ target: SetTarget) -> String {
        "list set \(target.family) \(target.table) \(target.set)"
    }

    /// What a `list set` output says about the set: its type, whether it has `flags timeout`,
    /// and its elements with the seconds each has left.
    public struct Listing: Sendable, Equatable {
        public var type: String?
        public var hasTimeoutFlag: Bool
        public var elements: [Element]

        public struct Element: Sendable, Equatable {
            public var address: IPAddress
            public var expiresIn: UInt32?
        }
    }

    /// Parses `nft list set` text output.
    public static func parseListing(_ text: String) -> Listing {
        var listing = Listing(type: nil, hasTimeoutFlag: false, elements: [])
        let flat = text.replacingNewlines()
        for line in text.split(separator: "\n") {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.hasPrefix("type ") { listing.type = String(trimmed.dropFirst(5)) }
            if trimmed.hasPrefix("flags ") { listing.hasTimeoutFlag = trimmed.contains("timeout") }
        }
        guard let open = flat.range(of: "elements = {"), let close = flat[open.upperBound...].firstIndex(of: "}") else {
            return listing
        }
        for item in flat[open.upperBound..<close].split(separator: ",") {
            let words = item.split(separator: " ")
            guard let first = words.first, let address = IPAddress(String(first)) else { continue }
            var expires: UInt32? = nil
            if let index = words.firstIndex(of: "expires"), index + 1 < words.count {
                expires = parseDuration(String(words[index + 1]))
            }
            listing.elements.append(Listing.Element(address: address, expiresIn: expires))
        }
        return listing
    }

    /// `1d2h3m4s500ms` → whole seconds (rounded down).
    static func parseDuration(_ text: String) -> UInt32? {
        var total: UInt64 = 0
        var number: UInt64 = 0
        var sawDigit = false
        var chars = Array(text)
        chars.append(" ")
        var i = 0
        while i < chars.count - 1 {
            let c = chars[i]
            if let digit = c.wholeNumberValue {
                number = number * 10 + UInt64(digit)
                sawDigit = true
                i += 1
                continue
            }
            guard sawDigit else { return nil }
            switch c {
            case "d": total += number * 86400
            case "h": total += number * 3600
            case "m" where chars[i + 1] == "s": i += 1  // milliseconds: ignored
            case "m": total += number * 60
            case "s": total += number
            default: return nil
            }
            number = 0
            sawDigit = false
            i += 1
        }
        return UInt32(clamping: total)
    }
}

extension String {
    func replacingNewlines() -> String {
        String(map { $0 == "\n" || $0 == "\t" ? " " : $0 })
    }

    func range(of needle: String) -> Range<String.Index>? {
        var index = startIndex
        while index < endIndex {
            if self[index...].hasPrefix(needle) { return index..<self.index(index, offsetBy: needle.count) }
            index = self.index(after: index)
        }
        return nil
    }
}
