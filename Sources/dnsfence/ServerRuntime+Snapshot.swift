import DNSFenceConfig
import DNSFenceCore
import DNSFenceFirewall
import DNSFenceIO
import DNSFenceObserve
import DNSFenceResolve
import DNSFenceServe
import DNSFenceTransfer
import Dispatch
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

extension ServerRuntime {
    /// A snapshot for `compiled`, reusing from `previous` (the configuration and snapshot now
    /// serving) what did not change: the upstream forwarder and its sockets when the upstreams
    /// are the same, and the cache when its limits are (less the entries of policies that are
    /// gone or whose firewall changed: they were shaped and published for what no longer is).
    /// Sets are created or verified before anything is swapped in. Throws a message for the
    /// operator, leaving nothing new running.
    static func buildSnapshot(
        _ compiled: CompiledConfiguration, previous: (config: CompiledConfiguration, snapshot: Snapshot)?,
        publisher: inout NftablesSetPublisher?, group: any EventLoopGroup, loops: [DatagramLoop],
        logWriter: QueryLogWriter, zones: ZoneTransfers, shedder: KernelShedder?,
        logger: Logger
    ) async throws -> Snapshot {
        let config = compiled.configuration
        let forwarder: UpstreamForwarder
        if let previous, previous.config.configuration.upstreams == config.upstreams {
            forwarder = previous.snapshot.forwarder
        } else {
            let upstreams = try config.upstreams.map {
                try SocketAddress(ipAddress: $0.address.description, port: Int($0.port))
            }
            forwarder = UpstreamForwarder(settings: .init(upstreams: upstreams), group: group, logger: logger)
            do {
                try await forwarder.start(loops: loops)
            } catch {
                throw RuntimeError("cannot open upstream sockets: \(error)")
            }
        }
        // A policy whose sets cannot be made or verified fails closed alone.
        var (firewalls, unavailable) = await prepareFirewalls(config, publisher: &publisher, logger: logger)
        // A policy whose transferred zone has nothing to serve fails closed too.
        unavailable.merge(compiled.unavailable) { firewall, _ in firewall }
        let cache: AnswerCache
        if let previous, previous.config.configuration.cache == config.cache {
            cache = previous.snapshot.cache
            let now = Dictionary(uniqueKeysWithValues: config.policies.map { ($0.name, $0.firewall) })
            let stale = previous.config.configuration.policies.filter { old in
                guard let firewall = now[old.name] else { return true }
                return firewall != old.firewall
            }
            cache.removeAll(policies: Set(stale.map(\.name)))
        } else {
            cache = AnswerCache(
                limits: .init(
                    maxEntries: config.cache.maxEntries, minTTL: config.cache.minTTL, maxTTL: config.cache.maxTTL,
                    failure: config.cache.failureTTL, staleMax: config.cache.staleMax),
                clock: { UInt64(DispatchTime.now().uptimeNanoseconds / 1_000_000_000) })
        }
        var notify: (@Sendable ([UInt8], IPAddress) -> [UInt8]?)? = nil
        if !compiled.transfers.isEmpty {
            notify = { bytes, client in zones.answerNotify(bytes, from: client) }
        }
        return Snapshot(
            selector: compiled.selector, cache: cache, forwarder: forwarder, firewalls: firewalls,
            unavailable: unavailable, queryLog: Observability.queryLog(config.queryLog, writer: logWriter),
            reasons: previous?.snapshot.reasons ?? ReasonRegistry(),
            ledger: previous?.snapshot.ledger ?? TunnelLedger(),
            rateLimiter: config.rateLimits.map {
                RateLimiter($0, previous: previous?.snapshot.rateLimiter, shedder: shedder)
            },
            notify: notify
        )
    }

    /// The binding of every policy with a firewall, its sets created or verified; the policies
    /// whose sets cannot be (their namespace is missing, a set has the wrong type, …) with why:
    /// they fail closed alone, the others serve. One publisher serves every namespace; a
    /// namespace named for the first time, or made again, gets its worker then.
    static func prepareFirewalls(
        _ config: ServerConfiguration, publisher: inout NftablesSetPublisher?, logger: Logger
    ) async -> (bindings: [String: FirewallBinding], unavailable: [String: String]) {
        let policies = config.policies.filter { $0.firewall != nil }
        guard !policies.isEmpty else { return ([:], [:]) }
        let namespaces = config.firewallNamespaces
        let nft: NftablesSetPublisher
        if let publisher {
            publisher.addNamespaces(namespaces)
            nft = publisher
        } else {
            nft = NftablesSetPublisher(
                namespaces: namespaces, clock: { UInt64(DispatchTime.now().uptimeNanoseconds / 1_000_000_000) },
                logger: logger)
            publisher = nft
        }
        var bindings: [String: FirewallBinding] = [:]
        var unavailable: [String: String] = [:]
        for policy in policies {
            guard let fw = policy.firewall else { continue }
            let (v4, v6) = fw.targets
            if let netns = fw.netns, !FileManagerless.exists(netns) {
                unavailable[policy.name] = "firewall unavailable: network namespace \(netns) does not exist"
                logger.error("policy fails closed", metadata: ["policy": "\(policy.name)", "netns": "\(netns)"])
                continue
            }
            do {
                try await nft.prepare([v4, v6].compactMap { $0 }, create: fw.create)
            } catch {
                unavailable[policy.name] = "firewall unavailable: \(error)"
                logger.error("policy fails closed", metadata: ["policy": "\(policy.name)", "error": "\(error)"])
                continue
            }
            bindings[policy.name] = FirewallBinding(
                publisher: nft, ipv4: v4, ipv6: v6, minTTL: fw.minTTL, maxTTL: fw.maxTTL, grace: fw.grace,
                admitPrivate: fw.admitPrivate, revokesConnections: fw.revokeConnections,
                publishesLocal: fw.publishLocal)
            logger.info(
                "firewall sets ready",
                metadata: [
                    "policy": "\(policy.name)", "ipv4": "\(v4.map(\.description) ?? "-")",
                    "ipv6": "\(v6.map(\.description) ?? "-")",
                ])
        }
        return (bindings, unavailable)
    }
}

/// File tests without Foundation.
enum FileManagerless {
    static func exists(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0
    }
}

/// The secondaries' zones, but `zone` as `content` (a transfer being applied; nil: as it is).
struct OverlaidZones: ZoneProvider {
    let base: ZoneTransfers
    let zone: String
    let content: ZoneContent?

    func state(of source: ZoneTransferSource) -> ZoneState {
        if source.zone == zone, let content { return .serving(content.text) }
        return base.state(of: source)
    }
}
