import CoreMetrics
public import DNSFenceIO
public import DNSFenceWire
public import Logging
public import NIOCore
import NIOPosix
import Synchronization

/// Forwards questions to upstream resolvers (RFC 5452 care: a fresh socket with a random source
/// port and a random ID per query, replies accepted only from the queried address and port with
/// the same ID and question), retries over TCP on TC, fails over between upstreams and backs
/// off from unhealthy ones, and coalesces identical questions in flight.
public final class UpstreamForwarder: Sendable {
    public struct Settings: Sendable {
        public var upstreams: [SocketAddress]
        /// Per-attempt timeout until an upstream has answered; then each upstream's own
        /// (``RetransmissionTimeout``).
        public var timeout: TimeAmount
        /// Attempts per upstream in one resolution.
        public var attemptsPerUpstream: Int

        public init(upstreams: [SocketAddress], timeout: TimeAmount = .milliseconds(1500), attemptsPerUpstream: Int = 1)
        {
            self.upstreams = upstreams
            self.timeout = timeout
            self.attemptsPerUpstream = attemptsPerUpstream
        }
    }

    /// Outcome counters, for metrics and tests.
    public struct Counters: Sendable {
        public var sent = 0
        public var answered = 0
        public var timeouts = 0
        public var tcpRetries = 0
        public var coalesced = 0
        public var rejectedReplies = 0
    }

    let settings: Settings
    public let group: any EventLoopGroup
    let logger: Logger
    /// Where a resolution's outcome goes: called once, on the event loop the caller named.
    public typealias Completion = @Sendable (Result<UpstreamReply, any Error>) -> Void

    struct Waiter {
        var loop: any EventLoop
        var completion: Completion
    }

    /// Questions in flight, with everyone waiting for each.
    private let inflight = Mutex<[CacheKey: [Waiter]]>([:])
    private let health: Mutex<[Int: (failures: Int, until: NIODeadline)]> = Mutex([:])
    /// Each upstream's learned timeout, by index.
    private let timeouts: Mutex<[RetransmissionTimeout]>
    let counters = Mutex(Counters())
    private let metrics: UpstreamMetrics
    private let pools = Mutex<(v4: UpstreamSocketPool?, v6: UpstreamSocketPool?)>((nil, nil))
    /// The upstreams' indices in configured order.
    private let allUpstreams: [Int]

    public init(settings: Settings, group: any EventLoopGroup, logger: Logger) {
        self.settings = settings
        timeouts = Mutex(
            Array(repeating: RetransmissionTimeout(initial: settings.timeout), count: settings.upstreams.count))
        self.allUpstreams = Array(settings.upstreams.indices)
        self.group = group
        self.logger = logger
        self.metrics = UpstreamMetrics(
            upstreams: settings.upstreams.map { address in
                let host = address.ipAddress ?? "?"
                let port = address.port ?? 0
                return address.protocol == .inet6 ? "[\(host)]:\(port)" : "\(host):\(port)"
            })
    }

    public var statistics: Counters { counters.withLock { $0 } }

    /// Binds the pool of upstream sockets (`socketsPerFamily` each for the address families the
    /// upstreams use), spread over `loops`: a query from a loop goes out on one of that loop's
    /// sockets and its reply is read there. Without a pool every query opens a socket of its own.
    public func start(socketsPerFamily: Int = 64, loops: [DatagramLoop]) async throws {
        let v4 =
            settings.upstreams.contains { $0.protocol == .inet }
            ? try await UpstreamSocketPool.make(loops: loops, count: socketsPerFamily, ipv6: false) : nil
        let v6: UpstreamSocketPool?
        do {
            v6 =
                settings.upstreams.contains { $0.protocol == .inet6 }
                ? try await UpstreamSocketPool.make(loops: loops, count: socketsPerFamily, ipv6: true) : nil
        } catch {
            v4?.close()
            throw error
        }
        pools.withLock { $0 = (v4, v6) }
    }

    /// Closes the pool's sockets.
    public func stop() {
        let (v4, v6) = pools.withLock { pools in
            defer { pools = (nil, nil) }
            return pools
        }
        v4?.close()
        v6?.close()
    }

    /// Resolves `question`; identical concurrent questions (same `key`) share one upstream query.
    /// `verdict` is the policy action that sent the question upstream; it labels
    /// `dnsfence_upstream_queries_total`, whose `verdict="deny"` series must stay 0.
    public func resolve(_ question: DNSQuestion, key: CacheKey, verdict: String = "pass") async throws -> DNSMessage {
        let loop = group.next()
        let reply = try await withCheckedThrowingContinuation { continuation in
            resolve(question, key: key, verdict: verdict, on: loop) { continuation.resume(with: $0) }
        }
        return try reply.decoded()
    }

    /// The same on `loop`: the exchange continues as callbacks there (the pool prefers sockets
    /// on `loop`), so a query costs no task, no future chain and no thread switch.
    public func resolve(
        _ question: DNSQuestion, key: CacheKey, verdict: String = "pass", on loop: any EventLoop,
        completion: @escaping Completion
    ) {
        metrics.queries(verdict: verdict)
        let first = inflight.withLock { table -> Bool in
            if table[key] != nil {
                table[key]!.append(Waiter(loop: loop, completion: completion))
                return false
            }
            table[key] = [Waiter(loop: loop, completion: completion)]
            return true
        }
        guard first else {
            counters.withLock { $0.coalesced += 1 }
            return
        }
        let resolution = Resolution { result in
            let waiters = self.inflight.withLock { $0.removeValue(forKey: key) ?? [] }
            for waiter in waiters {
                if waiter.loop.inEventLoop {
                    waiter.completion(result)
                } else {
                    waiter.loop.execute { waiter.completion(result) }
                }
            }
        }
        attempt(question, key: key, plan: order(), step: 0, lastFailure: .unreachable, on: loop, resolution: resolution)
    }

    /// One resolution's progress through its plan. Every callback of its exchanges runs on the
    /// resolution's loop, one at a time, so plain fields suffice.
    private final class Resolution: @unchecked Sendable {
        // @unchecked Sendable: read and written only on `loop` (the pool and the TCP retry
        // report there).
        let finish: Completion
        /// The attempt now running; an older one that timed out may still answer.
        var current = 0
        var finished = false

        init(_ finish: @escaping Completion) { self.finish = finish }

        /// Reports the outcome, once.
        func end(_ result: Result<UpstreamReply, any Error>) {
            guard !finished else { return }
            finished = true
            finish(result)
        }
    }

    /// Attempt `step` of the plan (each upstream `attemptsPerUpstream` times, in order); the
    /// next attempt starts from this one's failure. An attempt that timed out still takes its
    /// reply while later ones run: whichever usable answer comes first ends the resolution.
    private func attempt(
        _ question: DNSQuestion, key: CacheKey, plan: [Int], step: Int, lastFailure: ForwardError,
        on loop: any EventLoop, resolution: Resolution
    ) {
        guard !resolution.finished else { return }
        guard step < plan.count * settings.attemptsPerUpstream else { return resolution.end(.failure(lastFailure)) }
        resolution.current = step
        let index = plan[step / settings.attemptsPerUpstream]
        let upstream = settings.upstreams[index]
        let query = DNSMessage(
            id: RandomPool.shared.next16(), recursionDesired: true, checkingDisabled: key.checkingDisabled,
            questions: [question], edns: EDNS(udpPayloadSize: 1232, dnssecOK: key.dnssecOK)
        )
        counters.withLock { $0.sent += 1 }
        let timeout = timeouts.withLock { $0[index].timeout }
        let sent = NIODeadline.now()
        exchange(
            query, with: upstream, timeout: .nanoseconds(timeout), late: .nanoseconds(RetransmissionTimeout.maximum),
            on: loop
        ) { result in
            var failure = lastFailure
            switch result {
            case .success(let reply):
                let rtt = (NIODeadline.now() - sent).nanoseconds
                self.timeouts.withLock { $0[index].answered(after: rtt) }
                self.metrics.response(upstream: index, result: Self.resultLabel(reply.rcode))
                switch reply.rcode {
                case .noError, .nxDomain:
                    self.record(index, ok: true)
                    self.counters.withLock { $0.answered += 1 }
                    return resolution.end(.success(reply))
                default:
                    self.logger.debug(
                        "upstream answered with failure",
                        metadata: ["upstream": "\(upstream)", "rcode": "\(reply.rcode)"])
                    failure = .failed(reply.rcode)
                }
            case .failure(let error as UpstreamTimeout):
                // First "still listening" (or a plain timeout from an exchange without a late
                // window): go on. A final timeout after that changes nothing.
                guard error.stillListening || resolution.current == step else { return }
                self.timeouts.withLock { $0[index].timedOut() }
                self.counters.withLock { $0.timeouts += 1 }
                self.metrics.response(upstream: index, result: "timeout")
            case .failure(let error):
                self.metrics.response(upstream: index, result: "error")
                self.logger.debug(
                    "upstream exchange failed", metadata: ["upstream": "\(upstream)", "error": "\(error)"])
            }
            // A late failure of an attempt already left behind changes nothing.
            guard resolution.current == step else { return }
            self.record(index, ok: false)
            self.attempt(
                question, key: key, plan: plan, step: step + 1, lastFailure: failure, on: loop, resolution: resolution)
        }
    }

    /// One exchange with one upstream (waiting `timeout` for the pool's UDP answer; default: the
    /// configured one): UDP from the socket pool (a socket of its own when the
    /// pool is not started), then TCP if the reply is truncated. `completion` runs on `loop`.
    func exchange(
        _ query: DNSMessage, with upstream: SocketAddress, timeout: TimeAmount? = nil, late: TimeAmount = .zero,
        on loop: any EventLoop, completion: @escaping Completion
    ) {
        let udpDone: Completion = { result in
            guard case .success(let reply) = result, reply.truncated else { return completion(result) }
            self.counters.withLock { $0.tcpRetries += 1 }
            loop.makeFutureWithTask { try await self.exchangeTCP(query, with: upstream) }.whenComplete {
                completion($0.map(UpstreamReply.message))
            }
        }
        if let pool = pools.withLock({ upstream.protocol == .inet6 ? $0.v6 : $0.v4 }) {
            pool.exchange(
                query, upstream: upstream, timeout: timeout ?? settings.timeout, late: late, on: loop,
                completion: udpDone)
        } else {
            loop.makeFutureWithTask { try await self.exchangeUDP(query, with: upstream) }.whenComplete {
                udpDone($0.map(UpstreamReply.message))
            }
        }
    }

    /// Upstream order for this resolution: healthy ones first (in configured order), then the
    /// ones in back-off, so a total outage still gets tried.
    func order() -> [Int] {
        // All healthy (the usual case): the configured order, with no clock read or copies.
        if health.withLock({ $0.isEmpty }) { return allUpstreams }
        let now = NIODeadline.now()
        let states = health.withLock { $0 }
        let all = allUpstreams
        let healthy = all.filter { (states[$0]?.until ?? .distantPast) <= now }
        return healthy + all.filter { !healthy.contains($0) }
    }

    func record(_ index: Int, ok: Bool) {
        health.withLock { table in
            if ok {
                if table[index] != nil { table[index] = nil }
            } else {
                let failures = (table[index]?.failures ?? 0) + 1
                // 1 s, 2 s, 4 s … up to 60 s.
                let seconds = min(Int64(1) << Int64(min(failures - 1, 6)), 60)
                table[index] = (failures, .now() + .seconds(seconds))
            }
        }
    }

    static func resultLabel(_ rcode: DNSRCode) -> String {
        switch rcode {
        case .noError: return "noerror"
        case .nxDomain: return "nxdomain"
        case .servFail: return "servfail"
        case .refused: return "refused"
        default: return "other"
        }
    }

    /// Whether at least one upstream is not backing off (for readiness).
    public var hasHealthyUpstream: Bool {
        let now = NIODeadline.now()
        let states = health.withLock { $0 }
        return settings.upstreams.indices.contains { (states[$0]?.until ?? .distantPast) <= now }
    }

    /// Sends `question` to every upstream once and says which answered at all (any RCODE);
    /// used by readiness checks with a name that is not a sandbox's (the root NS).
    public func probe() async -> [SocketAddress: Bool] {
        var result: [SocketAddress: Bool] = [:]
        let query = DNSMessage(
            id: UInt16.random(in: 0...UInt16.max), recursionDesired: true,
            questions: [DNSQuestion(name: .root, type: .ns)], edns: EDNS())
        for (index, upstream) in settings.upstreams.enumerated() {
            var probeQuery = query
            probeQuery.id = UInt16.random(in: 0...UInt16.max)
            let answered = (try? await exchangeUDP(probeQuery, with: upstream)) != nil
            record(index, ok: answered)
            result[upstream] = answered
        }
        return result
    }
}
