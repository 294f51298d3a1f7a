public import DNSFenceWire

/// Which addresses may enter an egress set at all (DESIGN.md: "an admission filter").
/// Loopback, unspecified, link-local (which holds the cloud metadata address
/// 169.254.169.254), multicast, broadcast and the IPv6 metadata address fd00:ec2::254 never do;
/// private ranges (RFC 1918, RFC 6598 shared space, RFC 4193 ULA) only when allowed.
public enum AddressAdmission {
    static let alwaysDenied: [IPPrefix] = [
        "0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "fe80::/10", "ff00::/8", "fd00:ec2::254/128", "::ffff:0:0/96",
    ].compactMap { IPPrefix($0) }

    static let privateRanges: [IPPrefix] = [
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7",
    ].compactMap { IPPrefix($0) }

    /// The same ranges as (network, mask) pairs per family: every published address is checked,
    /// and generic prefix matching cost ~1,000 instructions per address.
    static let denied4 = masks4(alwaysDenied)
    static let private4 = masks4(privateRanges)
    static let denied6 = masks6(alwaysDenied)
    static let private6 = masks6(privateRanges)

    /// Whether `address` may be published.
    public static func admits(_ address: IPAddress, admitPrivate: Bool) -> Bool {
        switch address {
        case .v4(let value):
            if denied4.contains(where: { value & $0.mask == $0.network }) { return false }
            return admitPrivate || !private4.contains(where: { value & $0.mask == $0.network })
        case .v6(let high, let low):
            let inside = { (p: V6Mask) in high & p.maskHigh == p.high && low & p.maskLow == p.low }
            if denied6.contains(where: inside) { return false }
            return admitPrivate || !private6.contains(where: inside)
        }
    }

    struct V6Mask {
        var high: UInt64
        var low: UInt64
        var maskHigh: UInt64
        var maskLow: UInt64
    }

    static func masks4(_ prefixes: [IPPrefix]) -> [(network: UInt32, mask: UInt32)] {
        prefixes.compactMap { prefix in
            guard case .v4(let network) = prefix.address else { return nil }
            return (network, prefix.length == 0 ? 0 : ~UInt32(0) << UInt32(32 - prefix.length))
        }
    }

    static func masks6(_ prefixes: [IPPrefix]) -> [V6Mask] {
        prefixes.compactMap { prefix in
            guard case .v6(let high, let low) = prefix.address else { return nil }
            let length = prefix.length
            let maskHigh = length == 0 ? 0 : length >= 64 ? ~UInt64(0) : ~UInt64(0) << UInt64(64 - length)
            let maskLow = length <= 64 ? 0 : length == 128 ? ~UInt64(0) : ~UInt64(0) << UInt64(128 - length)
            return V6Mask(high: high, low: low, maskHigh: maskHigh, maskLow: maskLow)
        }
    }
}
