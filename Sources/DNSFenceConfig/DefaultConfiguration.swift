import DNSFenceCore
import DNSFenceWire

/// What `dnsfence serve` runs with no configuration file: listen on 127.0.0.1:5353, the
/// sample policy of `zones/default.allow` (embedded, so the binary runs from anywhere), and the
/// host's resolvers from resolv.conf minus dnsfence's own listener.
public enum DefaultConfiguration {
    public static let listener = Endpoint(address: .v4(0x7F00_0001), port: 5353)
    public static let metrics = Endpoint(address: .v4(0x7F00_0001), port: 9153)
    public static let policyName = "default"
    public static let zonePath = "zones/default.allow"

    /// The embedded copy of `zones/default.allow` (a test keeps the two identical).
    public static let zoneText = """
        # zones/default.allow: the embedded default policy of `dnsfence serve`.
        # One name per line; '*.name' allows the subdomains of name (not name itself).
        # A sandbox that installs packages from Debian and PyPI and nothing else:
        deb.debian.org
        security.debian.org
        pypi.org
        files.pythonhosted.org

        """

    /// The default configuration with upstreams from `resolvConf` (the text of /etc/resolv.conf).
    public static func make(resolvConf: String) -> ServerConfiguration {
        let listeners = [ListenerConfiguration(endpoint: listener, policy: policyName)]
        let upstreams = ResolvConf.nameservers(resolvConf).filter { upstream in
            !listeners.contains { $0.endpoint.covers(upstream) }
        }
        return ServerConfiguration(
            source: "<default>", listeners: listeners, upstreams: upstreams,
            policies: [PolicyConfiguration(name: policyName, zones: [zonePath])]
        )
    }
}

/// Reads `nameserver` lines from resolv.conf text.
public enum ResolvConf {
    public static func nameservers(_ text: String) -> [Endpoint] {
        text.split(whereSeparator: \.isNewline).compactMap { line in
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2, fields[0] == "nameserver" else { return nil }
            // Drop a zone index (fe80::1%eth0): it cannot be used without an interface.
            let host = String(fields[1].split(separator: "%").first ?? fields[1])
            return IPAddress(host).map { Endpoint(address: $0, port: 53) }
        }
    }
}
