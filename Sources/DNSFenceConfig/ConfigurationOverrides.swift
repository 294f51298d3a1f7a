import DNSFencePolicy
import DNSFenceWire

/// Command-line settings that override the file (DESIGN.md, "Command line").
public struct ConfigurationOverrides: Sendable, Hashable {
    public var listen: [String] = []
    public var upstreams: [String] = []
    public var allow: [String] = []
    public var policyFiles: [String] = []
    public var metrics: String? = nil
    public var noFirewall = false
    /// `FAMILY:TABLE:SET` for the ad-hoc policy's sets.
    public var nftSet4: String? = nil
    public var nftSet6: String? = nil
    /// `off`, `denied` or `all`.
    public var queryLog: String? = nil
    public var control: String? = nil
    /// `--audit`: every policy in audit mode.
    public var audit = false
    /// `dnsfence run`: the sandbox's one listener and sets, which replace the file's.
    public var sandbox: SandboxBinding? = nil

    public init() {}

    /// Where `dnsfence run` serves its sandbox: one listener (the host end of the sandbox's
    /// link), and the sets `allow4`/`allow6` of table `inet TABLE` in the sandbox's namespace.
    public struct SandboxBinding: Sendable, Hashable {
        public var listener: Endpoint
        public var netns: String
        public var table: String

        public init(listener: Endpoint, netns: String, table: String) {
            self.listener = listener
            self.netns = netns
            self.table = table
        }
    }

    /// Applies the flags. `--allow`/`--policy` replace the file's policies with one ad-hoc
    /// policy, `default`, that every listener serves.
    public func apply(to base: ServerConfiguration) throws(ConfigurationError) -> ServerConfiguration {
        var config = base
        var errors: [ConfigDiagnostic] = []
        func flagError(_ message: String) {
            errors.append(ConfigDiagnostic(file: "command line", line: 0, message: message))
        }

        let adHoc = !allow.isEmpty || !policyFiles.isEmpty
        if adHoc {
            var policy = PolicyConfiguration(name: "default", zones: policyFiles, inlineAllow: allow)
            if let firewall = try? firewallFromFlags(&errors) { policy.firewall = firewall }
            config.policies = [policy]
            config.listeners = config.listeners.map { ListenerConfiguration(endpoint: $0.endpoint, policy: "default") }
        } else if nftSet4 != nil || nftSet6 != nil {
            flagError(
                "--nft-set4/--nft-set6 apply to the ad-hoc policy of --allow/--policy; use the file's firewall section otherwise"
            )
        }
        if !listen.isEmpty {
            let policy = adHoc ? "default" : (config.listeners.first?.policy ?? config.policies.first?.name)
            config.listeners = listen.compactMap { text in
                guard let endpoint = Endpoint(text) else {
                    flagError("--listen '\(text)' is not ADDR:PORT (e.g. 127.0.0.1:5353 or [::1]:5353)")
                    return nil
                }
                return ListenerConfiguration(endpoint: endpoint, policy: policy)
            }
        }
        if !upstreams.isEmpty {
            config.upstreams = upstreams.compactMap { text in
                guard let endpoint = Endpoint(text, defaultPort: 53) else {
                    flagError("--upstream '\(text)' is not ADDR[:PORT]")
                    return nil
                }
                return endpoint
            }
        }
        if let metrics {
            guard let endpoint = Endpoint(metrics) else {
                flagError("--metrics '\(metrics)' is not ADDR:PORT")
                throw ConfigurationError(errors)
            }
            config.metrics = endpoint
        }
        if let queryLog {
            if let mode = QueryLogMode(rawValue: queryLog) {
                config.queryLog = mode
            } else {
                flagError("--query-log '\(queryLog)' must be off, denied or all")
            }
        }
        if let control {
            if control.hasPrefix("/") {
                config.control = control
            } else {
                flagError("--control '\(control)' must be an absolute path to a Unix socket")
            }
        }
        if noFirewall {
            for i in config.policies.indices { config.policies[i].firewall = nil }
        }
        if audit {
            for i in config.policies.indices { config.policies[i].audit = true }
        }
        if let sandbox {
            // The policy the file's first listener serves (or the ad-hoc one) serves the sandbox
            // alone, publishing into the sandbox's sets; its TTL settings stay.
            let served = adHoc ? "default" : (config.listeners.first?.policy ?? config.policies.first?.name)
            if var policy = config.policies.first(where: { $0.name == served }) {
                var firewall = policy.firewall ?? FirewallConfiguration()
                firewall.netns = sandbox.netns
                firewall.family = "inet"
                firewall.table = sandbox.table
                firewall.ipv4Set = "allow4"
                firewall.ipv6Set = "allow6"
                firewall.create = false
                policy.firewall = firewall
                policy.clients = []
                config.policies = [policy]
                config.listeners = [ListenerConfiguration(endpoint: sandbox.listener, policy: policy.name)]
                config.control = nil
            } else {
                flagError("dnsfence run: the configuration has no policy to serve the sandbox")
            }
        }
        if !errors.isEmpty { throw ConfigurationError(errors) }
        return config
    }

    private func firewallFromFlags(_ errors: inout [ConfigDiagnostic]) throws -> FirewallConfiguration? {
        guard !noFirewall, nftSet4 != nil || nftSet6 != nil else { return nil }
        var fw = FirewallConfiguration()
        var table: (String, String)? = nil
        for (flag, value) in [("--nft-set4", nftSet4), ("--nft-set6", nftSet6)] {
            guard let value else { continue }
            let parts = value.split(separator: ":").map(String.init)
            guard parts.count == 3, ["ip", "ip6", "inet"].contains(parts[0]),
                ConfigurationParser.isNftIdentifier(Substring(parts[1])),
                ConfigurationParser.isNftIdentifier(Substring(parts[2]))
            else {
                errors.append(
                    ConfigDiagnostic(
                        file: "command line", line: 0,
                        message: "\(flag) '\(value)' is not FAMILY:TABLE:SET (e.g. inet:fence:allow4)"))
                continue
            }
            if let table, table != (parts[0], parts[1]) {
                errors.append(
                    ConfigDiagnostic(
                        file: "command line", line: 0,
                        message: "--nft-set4 and --nft-set6 must name the same table"))
            }
            table = (parts[0], parts[1])
            fw.family = parts[0]
            fw.table = parts[1]
            if flag == "--nft-set4" { fw.ipv4Set = parts[2] } else { fw.ipv6Set = parts[2] }
        }
        return fw
    }
}
