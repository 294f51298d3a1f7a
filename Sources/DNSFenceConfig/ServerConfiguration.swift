public import DNSFenceCore
public import DNSFencePolicy
import DNSFenceTransfer
public import DNSFenceWire

/// An IP address and port, written `127.0.0.1:5353` or `[::1]:5353`.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses `ADDR:PORT`, `[ADDR6]:PORT`, or a bare address with `defaultPort`.
    public init?(_ text: String, defaultPort: UInt16? = nil) {
        var host = Substring(text)
        var portText: Substring? = nil
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            let rest = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { return nil }
                portText = rest.dropFirst()
            }
        } else if host.filter({ $0 == ":" }).count == 1, let colon = host.firstIndex(of: ":") {
            portText = host[host.index(after: colon)...]
            host = host[..<colon]
        }
        guard let address = IPAddress(String(host)) else { return nil }
        if let portText {
            guard let port = UInt16(portText), port > 0 else { return nil }
            self.init(address: address, port: port)
        } else {
            guard let defaultPort else { return nil }
            self.init(address: address, port: defaultPort)
        }
    }

    public var description: String {
        address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)"
    }

    /// Whether a socket bound to `self` would receive traffic sent to `other`.
    public func covers(_ other: Endpoint) -> Bool {
        guard port == other.port else { return false }
        if address == other.address { return true }
        switch address {
        case .v4(0): return other.address.isIPv4
        case .v6(0, 0): return true
        default: return false
        }
    }
}

/// One listening address (UDP and TCP) and the policy its clients get.
public struct ListenerConfiguration: Hashable, Sendable {
    public var endpoint: Endpoint
    /// The policy for every client of this listener; nil selects by client prefix.
    public var policy: String?

    public init(endpoint: Endpoint, policy: String? = nil) {
        self.endpoint = endpoint
        self.policy = policy
    }
}

/// Where a policy's addresses are published (the Firewall layer acts on it).
public struct FirewallConfiguration: Hashable, Sendable {
    /// Network namespace path (`/run/netns/NAME`); nil is dnsfence's own.
    public var netns: String?
    public var family: String
    public var table: String
    public var ipv4Set: String?
    public var ipv6Set: String?
    public var create: Bool
    public var minTTL: UInt32
    public var maxTTL: UInt32
    public var grace: UInt32
    /// Whether private addresses (RFC 1918, RFC 6598, ULA) may enter the sets.
    public var admitPrivate: Bool = true
    /// `revoke: connections`: a revoked element also cuts the flows established to its address
    /// (their conntrack entries are deleted in the namespace), not only new ones.
    public var revokeConnections: Bool = false
    /// `publish-local`: local data's addresses (a rewrite to a proxy) are published like an
    /// upstream's; false for operators who allow the proxy statically.
    public var publishLocal: Bool = true

    public init(
        netns: String? = nil, family: String = "inet", table: String = "dnsfence", ipv4Set: String? = nil,
        ipv6Set: String? = nil, create: Bool = true, minTTL: UInt32 = 60, maxTTL: UInt32 = 86400,
        grace: UInt32 = 30
    ) {
        self.netns = netns
        self.family = family
        self.table = table
        self.ipv4Set = ipv4Set
        self.ipv6Set = ipv6Set
        self.create = create
        self.minTTL = minTTL
        self.maxTTL = maxTTL
        self.grace = grace
    }
}

/// One named policy as configured (before its zone files are read).
public struct PolicyConfiguration: Hashable, Sendable {
    public var name: String
    public var zones: [String]
    /// Names allowed directly (from `--allow`), compiled as a plain list.
    public var inlineAllow: [String]
    public var clients: [IPPrefix]
    public var deny: DenyResponse
    public var qtypes: Set<DNSType>
    public var firewall: FirewallConfiguration?
    /// `mode: audit` (true) or `mode: enforce` (false, the default).
    public var audit = false
    /// `audit: [PATTERN]`: deny rules that only log what they would deny.
    public var auditedRules: [String] = []
    /// `cname-targets: strict` (true) or `follow` (false, the default).
    public var strictCNAMETargets = false
    /// `budget:`: the tunnel budget of the policy's wildcard pass rules (nil: `off`).
    public var budget: TunnelBudget? = .standard
    /// `budgets:`: per wildcard rule, by pattern as written (nil: `off`).
    public var ruleBudgets: [String: TunnelBudget?] = [:]

    public init(
        name: String, zones: [String] = [], inlineAllow: [String] = [], clients: [IPPrefix] = [],
        deny: DenyResponse = .nxdomain, qtypes: Set<DNSType> = Policy.defaultTypes,
        firewall: FirewallConfiguration? = nil
    ) {
        self.name = name
        self.zones = zones
        self.inlineAllow = inlineAllow
        self.clients = clients
        self.deny = deny
        self.qtypes = qtypes
        self.firewall = firewall
    }
}

/// Answer cache bounds.
public struct CacheConfiguration: Hashable, Sendable {
    public var maxEntries: Int
    public var minTTL: UInt32
    public var maxTTL: UInt32
    /// `failure-ttl`: how long a question every upstream failed on is answered SERVFAIL from
    /// the cache (RFC 9520).
    public var failureTTL: UInt32 = 5
    /// `stale-max`: serve-stale (RFC 8767): how long past expiry an answer may still be given
    /// (TTL 30, EDE 3) when every upstream fails. 0: off (the default, as in Unbound).
    public var staleMax: UInt32 = 0

    public init(maxEntries: Int = 100_000, minTTL: UInt32 = 0, maxTTL: UInt32 = 86400) {
        self.maxEntries = maxEntries
        self.minTTL = minTTL
        self.maxTTL = maxTTL
    }
}

/// DNS-over-TCP bounds (RFC 7766 section 6.2.3).
public struct TCPConfiguration: Hashable, Sendable {
    public var maxConnections: Int
    public var maxPerClient: Int
    /// Seconds a connection may stay without a query.
    public var idleTimeout: UInt32

    public init(maxConnections: Int = 1024, maxPerClient: Int = 256, idleTimeout: UInt32 = 10) {
        self.maxConnections = maxConnections
        self.maxPerClient = maxPerClient
        self.idleTimeout = idleTimeout
    }
}

/// Which queries the query log records.
public enum QueryLogMode: String, Hashable, Sendable, CaseIterable {
    case off
    case denied
    case all
}

/// The whole configuration, typed. Produced by ``ConfigurationParser``, checked by
/// ``ConfigurationCompiler``.
public struct ServerConfiguration: Hashable, Sendable {
    /// Where it came from (a path, or `<default>`), for messages.
    public var source: String
    public var listeners: [ListenerConfiguration]
    public var upstreams: [Endpoint]
    public var policies: [PolicyConfiguration]
    public var cache: CacheConfiguration
    public var tcp = TCPConfiguration()
    /// `rate-limit:`: per-client UDP query limits (nil: `off`).
    public var rateLimits: RateLimits? = .standard
    public var metrics: Endpoint?
    public var queryLog: QueryLogMode
    /// `log.file`: the query log's file (appended to, reopened on SIGUSR1); nil: standard output.
    public var queryLogFile: String?
    /// `log.repeat-limit`: identical lines per second before the rest are summarised.
    public var queryLogRepeatLimit = 10
    /// `log.max-bytes-per-second`: the query log's byte budget per second (0: none).
    public var queryLogMaxBytesPerSecond = 8_000_000
    /// The control socket (a Unix socket path) `dnsfence reload` talks to; nil: none.
    public var control: String?
    /// A directory of drop-ins (`*.yaml`, each with `listen:` and `policies:` only: one
    /// sandbox a file), read at start and on every reload; relative to the configuration file.
    public var dropIns: String?
    /// `zones: [{ transfer: … }]`: the policy zones kept from primaries, by zone name (a
    /// policy's `zones` names each as `transfer:ZONE`).
    public var transfers: [String: ZoneTransferConfiguration] = [:]
    /// Line of each item for messages at validation time (key path → line).
    public var lines: [String: Int]

    /// The network namespaces policies publish into (nil: dnsfence's own), one each.
    public var firewallNamespaces: Set<String?> { Set(policies.compactMap(\.firewall).map(\.netns)) }

    public init(
        source: String, listeners: [ListenerConfiguration] = [], upstreams: [Endpoint] = [],
        policies: [PolicyConfiguration] = [], cache: CacheConfiguration = CacheConfiguration(),
        metrics: Endpoint? = nil, queryLog: QueryLogMode = .denied, lines: [String: Int] = [:]
    ) {
        self.source = source
        self.listeners = listeners
        self.upstreams = upstreams
        self.policies = policies
        self.cache = cache
        self.metrics = metrics
        self.queryLog = queryLog
        self.lines = lines
    }
}

/// `zones: [{ transfer: { zone, primaries, tsig: { name, algorithm, secret-file }, cache-dir } }]`.
public struct ZoneTransferConfiguration: Hashable, Sendable {
    /// Absolute and lowercased.
    public var zone: String
    public var primaries: [Endpoint]
    public var keyName: String?
    public var algorithm = "hmac-sha256"
    /// As written (relative to the configuration file's directory).
    public var secretFile: String?
    public var cacheDirectory: String?
    /// The file and line it was written at, for messages.
    public var file: String
    public var line: Int

    public init(zone: String, primaries: [Endpoint], file: String, line: Int) {
        self.zone = zone
        self.primaries = primaries
        self.file = file
        self.line = line
    }
}
