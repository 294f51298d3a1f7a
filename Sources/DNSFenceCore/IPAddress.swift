#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An IPv4 or IPv6 address as a value (no sockets involved).
public enum IPAddress: Hashable, Sendable, CustomStringConvertible, Comparable {
    /// Host byte order.
    case v4(UInt32)
    /// Network order bytes as two big-endian halves.
    case v6(high: UInt64, low: UInt64)

    /// Builds from 4 or 16 network-order bytes.
    @inlinable
    public init?<C: Collection>(bytes: C) where C.Element == UInt8 {
        switch bytes.count {
        case 4:
            var value: UInt32 = 0
            for byte in bytes { value = value << 8 | UInt32(byte) }
            self = .v4(value)
        case 16:
            var high: UInt64 = 0
            var low: UInt64 = 0
            var index = 0
            for byte in bytes {
                if index < 8 { high = high << 8 | UInt64(byte) } else { low = low << 8 | UInt64(byte) }
                index += 1
            }
            self = .v6(high: high, low: low)
        default:
            return nil
        }
    }

    /// Parses dotted-quad or RFC 4291 text (via `inet_pton`).
    public init?(_ text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self = .v4(UInt32(bigEndian: v4.s_addr))
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            let bytes = withUnsafeBytes(of: &v6) { Array($0) }
            self.init(bytes: bytes)
            return
        }
        return nil
    }

    /// Network-order bytes (4 or 16).
    public var bytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(isIPv4 ? 4 : 16)
        appendBytes(to: &bytes)
        return bytes
    }

    /// Appends the network-order bytes (4 or 16) to `buffer`, without an array of their own.
    @inlinable
    public func appendBytes(to buffer: inout [UInt8]) {
        switch self {
        case .v4(let value):
            withUnsafeBytes(of: value.bigEndian) { buffer.append(contentsOf: $0) }
        case .v6(let high, let low):
            withUnsafeBytes(of: high.bigEndian) { buffer.append(contentsOf: $0) }
            withUnsafeBytes(of: low.bigEndian) { buffer.append(contentsOf: $0) }
        }
    }

    /// A cheap seeded mix of the address bits (for tables of our own; `Hasher` is SipHash).
    @inlinable
    public func mixedHash(seed: UInt64) -> UInt64 {
        let bits: UInt64
        switch self {
        case .v4(let value): bits = UInt64(value)
        case .v6(let high, let low): bits = high ^ (low &* 0x9E37_79B9_7F4A_7C15)
        }
        var mixed = (bits ^ seed) &* 0xBF58_476D_1CE4_E5B9
        mixed ^= mixed >> 31
        return mixed
    }

    @inlinable
    public var isIPv4: Bool {
        if case .v4 = self { return true }
        return false
    }

    /// Standard text form (`inet_ntop`).
    public var description: String {
        var buffer = [CChar](repeating: 0, count: 64)
        var raw = bytes
        let family = isIPv4 ? AF_INET : AF_INET6
        let ok = raw.withUnsafeMutableBytes { ptr in
            inet_ntop(family, ptr.baseAddress, &buffer, socklen_t(buffer.count)) != nil
        }
        guard ok else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
        switch (lhs, rhs) {
        case (.v4(let a), .v4(let b)): return a < b
        case (.v4, .v6): return true
        case (.v6, .v4): return false
        case (.v6(let ah, let al), .v6(let bh, let bl)): return (ah, al) < (bh, bl)
        }
    }
}

/// An address prefix such as `10.200.0.0/24` or `fd00::/8`.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let length: Int

    /// Parses `ADDRESS/LEN` or a bare address (full length). Host bits must be zero.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2, let address = IPAddress(String(parts[0])) else { return nil }
        let maxLength = address.isIPv4 ? 32 : 128
        let length: Int
        if parts.count == 2 {
            guard let parsed = Int(parts[1]), parsed >= 0, parsed <= maxLength else { return nil }
            length = parsed
        } else {
            length = maxLength
        }
        guard IPPrefix.mask(address, length) == address else { return nil }
        self.address = address
        self.length = length
    }

    public init(address: IPAddress, length: Int) {
        self.address = IPPrefix.mask(address, length)
        self.length = length
    }

    /// Whether `other` lies inside this prefix (same family only). Bit operations on the
    /// address words, no address built: every published address and every client is checked
    /// against a few prefixes.
    @inlinable
    public func contains(_ other: IPAddress) -> Bool {
        switch (address, other) {
        case (.v4(let network), .v4(let value)):
            return value & Self.mask4(length) == network
        case (.v6(let high, let low), .v6(let otherHigh, let otherLow)):
            let (maskHigh, maskLow) = Self.mask6(length)
            return otherHigh & maskHigh == high && otherLow & maskLow == low
        default:
            return false
        }
    }

    public var description: String { "\(address)/\(length)" }

    static func mask(_ address: IPAddress, _ length: Int) -> IPAddress {
        switch address {
        case .v4(let v):
            return .v4(v & mask4(length))
        case .v6(let high, let low):
            let (maskHigh, maskLow) = mask6(length)
            return .v6(high: high & maskHigh, low: low & maskLow)
        }
    }

    /// The network mask of an IPv4 prefix of `length` bits (0...32).
    @inlinable
    static func mask4(_ length: Int) -> UInt32 {
        length == 0 ? 0 : ~UInt32(0) << UInt32(32 - length)
    }

    /// The network mask of an IPv6 prefix of `length` bits (0...128), as its high and low words.
    @inlinable
    static func mask6(_ length: Int) -> (high: UInt64, low: UInt64) {
        let high = length == 0 ? 0 : length >= 64 ? ~UInt64(0) : ~UInt64(0) << UInt64(64 - length)
        let low = length <= 64 ? 0 : length == 128 ? ~UInt64(0) : ~UInt64(0) << UInt64(128 - length)
        return (high, low)
    }
}
