// A fixed, socket-free replay of the query pipeline's synchronous path, for repeatable
// instruction counts under callgrind (scripts/callgrind.sh): hot cache hits and denials.
// `hot-nft` is hot under a firewall whose real nftables set already holds every address (as
// root, in a network namespace of its own), so each hit checks the set's shadow first.
// `cold` and `cold-nft` replay the asynchronous path instead, through real sockets
// (ColdReplay.swift).
//
// `limited` and `slipped`: a flooding client over its rate limit, dropped or answered TC.
//
// Usage: QueryReplay hot|hot-nft|denied|limited|slipped|memory|cold|cold-nft ITERATIONS

import DNSFenceCore
import DNSFenceFirewall
import DNSFencePolicy
import DNSFenceRelease
import DNSFenceResolve
import DNSFenceServe
import DNSFenceWire
import Foundation
import Logging
import Metrics
import NIOPosix
import Prometheus
import Synchronization

// The metrics backend the server runs with, so that recording costs what it costs there.
MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: PrometheusCollectorRegistry()))

let arguments = CommandLine.arguments
let workload = arguments.count > 1 ? arguments[1] : "hot"
let iterations = arguments.count > 2 ? Int(arguments[2]) ?? 10_000 : 10_000

/// Runs `body` to its end from synchronous code. Not a top-level await: that makes main
/// async, and valgrind cannot run libdispatch's main-thread wait (sigsuspend) it brings.
func waitFor(_ body: @escaping @Sendable () async throws -> Void) throws {
    let finished = DispatchSemaphore(value: 0)
    let failure = Mutex<(any Error)?>(nil)
    Task.detached {
        do { try await body() } catch { failure.withLock { $0 = error } }
        finished.signal()
    }
    finished.wait()
    if let error = failure.withLock({ $0 }) { throw error }
}

/// The firewall of `hot-nft` (``ColdReplay/firewall()``), from synchronous code.
func preparedFirewall() throws -> FirewallBinding {
    let made = Mutex<FirewallBinding?>(nil)
    try waitFor {
        let binding = try await ColdReplay.firewall()
        made.withLock { $0 = binding }
    }
    return made.withLock { $0! }
}

if workload.hasPrefix("cold") {
    let (count, publishing) = (iterations, workload == "cold-nft")
    do {
        try waitFor { try await ColdReplay.run(iterations: count, publishing: publishing) }
    } catch {
        print("cold replay: \(error)")
        exit(1)
    }
    exit(0)
}

let policy = try PolicyCompiler().compile(
    name: "replay", sources: [PolicySource(file: "replay.allow", text: "*.allowed.test\n")]
).policy
let logger = Logger(label: "replay")
let hits = workload == "hot" || workload == "hot-nft"
let binding = workload == "hot-nft" ? try preparedFirewall() : nil
let cache = AnswerCache(limits: .init(maxEntries: 1000, minTTL: 0, maxTTL: 86400), clock: { 1000 })
// The client (10.0.0.1) goes through the rate limiter on every query: for hot and denied one
// that never refuses (the check's full cost, two compare-and-swaps), for `limited` one that
// refuses everything after the first query (a flood's cost: dropped, or with `slipped`
// answered TC).
let refusing = workload == "limited" || workload == "slipped"
let limits = RateLimits(
    queries: refusing ? 1 : 10_000_000, burst: refusing ? 1 : 10_000_000, ipv4Prefix: 24, ipv6Prefix: 56,
    slip: workload == "slipped" ? 1 : 0, exempt: [])
let pipeline = QueryPipeline(
    snapshot: Snapshot(
        selector: ClientPolicySelector([.init(policy: policy, clients: [])]), cache: cache,
        forwarder: UpstreamForwarder(
            settings: .init(upstreams: []), group: MultiThreadedEventLoopGroup.singleton, logger: logger),
        firewalls: binding.map { ["replay": $0] } ?? [:], rateLimiter: RateLimiter(limits)),
    logger: logger)

var queries: [[UInt8]] = []
var elements: [SetElement] = []
for i in 0..<100 {
    let name = try DNSName(hits ? "h\(i).allowed.test" : "x\(i * 7919).example.com")
    if hits {
        let key = CacheKey(policy: "replay", name: name, type: .a, dnssecOK: false, checkingDisabled: false)
        var answer = CachedAnswer(
            rcode: .noError, authenticData: false,
            answers: [DNSRecord(name: name, ttl: 300, address: .v4(0xC612_0000 + UInt32(i)))],
            authorities: [], additionals: [])
        // As the server stores it under a firewall: with the reason its addresses carry.
        if binding != nil { answer.reason = UInt64(i + 1) }
        cache.store(answer, for: key) { stored in
            WireAnswerBuilder.wire(
                for: stored, question: DNSQuestion(name: name, type: .a), dnssecOK: false, binding: binding)
        }
        if let binding, let target = binding.ipv4 {
            elements.append(SetElement(target: target, address: .v4(0xC612_0000 + UInt32(i)), timeout: 3600))
        }
    }
    queries.append(DNSMessage.query(id: UInt16(i), DNSQuestion(name: name, type: .a), edns: EDNS()).encoded())
}
if let binding {
    // Every address in the set for an hour, so that each hit finds it there.
    // (Captured by value: the task must not reach for main's globals while main waits.)
    try waitFor { [publisher = binding.publisher, elements] in try await publisher.publish(elements) }
}
if workload == "memory" {
    // Memory per cached answer: `iterations` answers (one A record each, with their wire
    // templates) stored in a cache of that size; resident memory before and after.
    func residentKiB() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }
    let big = AnswerCache(limits: .init(maxEntries: iterations, minTTL: 0, maxTTL: 86400), clock: { 1000 })
    let before = residentKiB()
    for i in 0..<iterations {
        let name = try DNSName("host-\(i).allowed.test")
        let question = DNSQuestion(name: name, type: .a)
        big.store(
            CachedAnswer(
                rcode: .noError, authenticData: false,
                answers: [DNSRecord(name: name, ttl: 300, address: .v4(0xC612_0000 + UInt32(i & 0xFFFF)))],
                authorities: [], additionals: []),
            for: CacheKey(policy: "replay", name: name, type: .a, dnssecOK: false, checkingDisabled: false),
            keepRecords: false
        ) { WireAnswerBuilder.wire(for: $0, question: question, dnssecOK: false) }
    }
    let after = residentKiB()
    print(
        "memory: \(big.statistics.entries) cached answers, resident \(before / 1024) -> \(after / 1024) MiB, "
            + "\((after - before) * 1024 / max(iterations, 1)) bytes per answer")
    exit(0)
}
let context = QueryContext(client: .v4(0x0A00_0001), listenerPolicy: "replay", transport: .udp)
var answered = 0
var scratch = [UInt8](repeating: 0, count: 65_536)
for i in 0..<iterations {
    // What the UDP listener does: the byte-level path writes into the send buffer (here a
    // reused scratch buffer), anything else takes the full pipeline.
    _ = queries[i % queries.count].withUnsafeBytes { query in
        pipeline.handle(
            query, context: context,
            emit: { count, write in
                scratch.withUnsafeMutableBufferPointer { write(UnsafeMutableBufferPointer(rebasing: $0[0..<count])) }
                answered += count > 12 ? 1 : 0
            })
    }
}
print("workload=\(workload) iterations=\(iterations) answered=\(answered)")
