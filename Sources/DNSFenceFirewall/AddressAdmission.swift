public import DNSFenceCore

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

    /// Whether `address` may be published.
    public static func admits(_ address: IPAddress, admitPrivate: Bool) -> Bool {
        if alwaysDenied.contains(where: { $0.contains(address) }) { return false }
        if !admitPrivate && privateRanges.contains(where: { $0.contains(address) }) { return false }
        return true
    }
}
