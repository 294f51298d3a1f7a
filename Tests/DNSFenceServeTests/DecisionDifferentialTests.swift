import DNSFenceCore
import DNSFenceFirewall
import DNSFencePolicy
import DNSFenceRelease
import DNSFenceResolve
import DNSFenceWire
import Foundation
import Logging
import NIOPosix
import Testing

@testable import DNSFenceServe

/// Generated cases for "decide once, render twice": a seeded generator makes snapshots (policies
/// with every RPZ action, wildcards, query-type filters, deny modes, client prefixes; cache
/// entries of every shape and age; firewall bindings with and without sets, some addresses
/// already in them) and queries (names in any case, types, EDNS variants, header bits, opcodes,
/// classes, transports, clients). Each query goes through the same snapshot twice, once with the
/// byte renderer on and once with everything rendered by the message renderer: the outcomes,
/// the bytes, what waits and what it commits, and the query record (the labels metrics are
/// written from) must be identical. Every failure names its seed and case.
@Suite("Decision differential")
struct DecisionDifferentialTests {
    /// Fixed seeds, plus one from DNSFENCE_DIFF_SEED (to replay a failure) or from the clock.
    static let seeds: [UInt64] = {
        let extra = ProcessInfo.processInfo.environment["DNSFENCE_DIFF_SEED"].flatMap { UInt64($0) }
        return [1, 2, 3, extra ?? UInt64(Date().timeIntervalSince1970)]
    }()

    /// Keeps every record logged, as its JSON line (latency 0: `now` before `started`).
    final class Log: QueryLogSink, @unchecked Sendable {
        // @unchecked Sendable: used from one test thread.
        var lines: [String] = []
        var logsAnswers: Bool { true }
        func record(_ record: QueryRecord, rcode: UInt8?) {
            lines.append(record.jsonLine(rcode: rcode, now: 0, wallClock: "t"))
        }
    }

    /// One generated world: a snapshot's parts and the names its queries draw from.
    struct World {
        var selector: ClientPolicySelector
        var cache: AnswerCache
        var firewalls: [String: FirewallBinding]
        var names: [String]
        var policies: [String]
    }

    static let zones = ["ok.test", "wild.test", "proxy.test", "multi.test", "alias.test", "gone.test", "empty.test"]

    /// An RPZ zone with a random selection of rules (every action appears across seeds).
    static func zone(_ random: inout SplitMix64) -> String {
        var lines = ["$TTL 60", "@ SOA a. b. 1 2 3 4 5", "  NS localhost."]
        let candidates = [
            "ok.test CNAME rpz-passthru.", "*.wild.test CNAME rpz-passthru.", "wild.test CNAME rpz-passthru.",
            "proxy.test A 10.0.0.2", "multi.test A 192.0.2.9", "multi.test AAAA 2001:db8::9",
            "alias.test CNAME ok.test.", "gone.test CNAME .", "empty.test CNAME *.", "quiet.test CNAME rpz-drop.",
            "*.gone.test CNAME .", "deep.ok.test CNAME .",
        ]
        for line in candidates where random.next() % 4 != 0 { lines.append(line) }
        return lines.joined(separator: "\n") + "\n"
    }

    static func world(_ random: inout SplitMix64, clock: Clock) throws -> World {
        let typeChoices: [DNSType] = [.a, .aaaa, .cname, .https, .txt, .mx]
        var entries: [ClientPolicySelector.Entry] = []
        var firewalls: [String: FirewallBinding] = [:]
        let count = 1 + Int(random.next() % 2)
        for index in 0..<count {
            let name = "p\(index)"
            var types = Set(typeChoices.filter { _ in random.next() % 3 != 0 })
            types.insert(.a)
            let deny = DenyResponse.allCases[Int(random.next() % UInt64(DenyResponse.allCases.count))]
            let policy = try PolicyCompiler().compile(
                name: name, sources: [PolicySource(file: "\(name).rpz", text: zone(&random))], allowedTypes: types,
                denyResponse: deny
            ).policy
            let clients: [IPPrefix] = random.next() % 3 == 0 ? [IPPrefix("127.0.0.0/30")!] : []
            entries.append(.init(policy: policy, clients: clients))
            if random.next() % 2 == 0 {
                let publisher = InMemorySetPublisher(clock: { clock.now })
                let v4 = SetTarget(netns: nil, family: "inet", table: "t", set: "\(name)4", isIPv6: false)
                let v6 = SetTarget(netns: nil, family: "inet", table: "t", set: "\(name)6", isIPv6: true)
                firewalls[name] = FirewallBinding(
                    publisher: publisher, ipv4: v4, ipv6: random.next() % 3 == 0 ? nil : v6, minTTL: 30,
                    maxTTL: [120, 3600][Int(random.next() % 2)], grace: 10, admitPrivate: random.next() % 2 == 0)
            }
        }
        let cache = AnswerCache(limits: .init(maxEntries: 500, minTTL: 0, maxTTL: 3600), clock: { clock.now })
        var names = ["ok.test", "OK.Test", "a.wild.test", "B.Wild.Test", "wild.test", "proxy.test", "multi.test"]
        names += ["alias.test", "gone.test", "x.gone.test", "empty.test", "quiet.test", "deep.ok.test"]
        names += ["nowhere.example", "a.b.c.nowhere.example"]
        // Cache entries for allowed names: A (one to three addresses, some private or loopback),
        // AAAA (up to 40: over 512 bytes), TXT; DO/CD variants; kept as records or wire only.
        for policy in entries.map(\.policy.name) {
            for owner in ["ok.test", "a.wild.test", "b.wild.test", "wild.test"] {
                for type in [DNSType.a, .aaaa, .txt] where random.next() % 3 != 0 {
                    let name = try DNSName(owner)
                    let answers: [DNSRecord]
                    switch type {
                    case .a:
                        let pool = ["192.0.2.1", "192.0.2.2", "10.1.2.3", "127.0.0.1", "198.51.100.7"]
                        answers = (0...Int(random.next() % 3)).map { i in
                            DNSRecord(
                                name: name, ttl: UInt32(30 + random.next() % 600),
                                address: IPAddress(pool[(i + Int(random.next() % 5)) % pool.count])!)
                        }
                    case .aaaa:
                        answers = (0..<(1 + Int(random.next() % 40))).map {
                            DNSRecord(name: name, ttl: 300, address: IPAddress("2001:db8::\($0 + 1)")!)
                        }
                    default:
                        answers = [DNSRecord(name: name, type: .txt, ttl: 120, rdata: [3, 0x61, 0x62, 0x63])]
                    }
                    let dnssecOK = random.next() % 4 == 0
                    let checkingDisabled = random.next() % 4 == 0
                    let key = CacheKey(
                        policy: policy, name: name, type: type, dnssecOK: dnssecOK, checkingDisabled: checkingDisabled)
                    let stored = CachedAnswer(
                        rcode: .noError, authenticData: random.next() % 2 == 0, answers: answers, authorities: [],
                        additionals: [])
                    let binding = firewalls[policy]
                    cache.store(stored, for: key, keepRecords: random.next() % 2 == 0) {
                        WireAnswerBuilder.wire(
                            for: $0, question: DNSQuestion(name: name, type: type), dnssecOK: dnssecOK,
                            binding: binding)
                    }
                }
            }
        }
        return World(
            selector: ClientPolicySelector(entries), cache: cache, firewalls: firewalls, names: names,
            policies: entries.map(\.policy.name))
    }

    /// A query's bytes: a name from the world, a type, EDNS and header variants, sometimes an
    /// unusual opcode or class.
    static func query(_ world: World, _ random: inout SplitMix64) throws -> [UInt8] {
        var name = world.names[Int(random.next() % UInt64(world.names.count))]
        if random.next() % 4 == 0 { name = "z\(random.next() % 50)." + name }
        name = String(name.map { random.next() % 3 == 0 ? Character($0.uppercased()) : $0 })
        let types: [DNSType] = [.a, .a, .aaaa, .txt, .mx, .any, .axfr, .https, .cname, DNSType(rawValue: 65280)]
        let type = types[Int(random.next() % UInt64(types.count))]
        let ednsChoices: [EDNS?] = [
            nil, EDNS(), EDNS(udpPayloadSize: 512), EDNS(udpPayloadSize: 4096, dnssecOK: true),
            EDNS(dnssecOK: true), EDNS(options: [EDNSOption(code: 10, data: [1, 2, 3, 4, 5, 6, 7, 8])]),
        ]
        var message = DNSMessage.query(
            id: UInt16(truncatingIfNeeded: random.next()), DNSQuestion(name: try DNSName(name), type: type),
            recursionDesired: random.next() % 4 != 0, edns: ednsChoices[Int(random.next() % 6)])
        message.checkingDisabled = random.next() % 4 == 0
        message.authenticData = random.next() % 4 == 0
        var bytes = message.encoded()
        switch random.next() % 40 {
        case 0: bytes[2] |= 0x20  // opcode NOTIFY
        case 1: bytes[12 + message.questions[0].name.wire.count + 3] = 3  // class CH
        case 2 where message.edns != nil: bytes[bytes.count - 11 + 6] = 1  // EDNS version 1
        case 3: bytes[5] = 0  // QDCOUNT 0
        default: break
        }
        return bytes
    }

    final class Clock: @unchecked Sendable {
        // @unchecked Sendable: set between queries, on the test's thread.
        var now: UInt64 = 1_000
    }

    @Test("both renderers give the same answer, wait and record for every generated decision", arguments: seeds)
    func renderersAgree(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let logger = Logger(label: "test")
        let forwarder = UpstreamForwarder(
            settings: .init(upstreams: []), group: MultiThreadedEventLoopGroup.singleton, logger: logger)
        var cases = 0
        var renderedByBytes = 0
        var outcomes: [String: Int] = [:]
        for worldIndex in 0..<40 {
            let clock = Clock()
            let world = try Self.world(&random, clock: clock)
            let bytesLog = Log()
            let messagesLog = Log()
            let bytes = QueryPipeline(
                snapshot: Snapshot(
                    selector: world.selector, cache: world.cache, forwarder: forwarder, firewalls: world.firewalls,
                    queryLog: bytesLog),
                logger: logger)
            let messages = QueryPipeline(
                snapshot: Snapshot(
                    selector: world.selector, cache: world.cache, forwarder: forwarder, firewalls: world.firewalls,
                    queryLog: messagesLog),
                logger: logger, renderBytes: false)
            // Some addresses already in their sets, for long enough or not.
            for binding in world.firewalls.values where random.next() % 2 == 0 {
                let elements = ["192.0.2.1", "192.0.2.2", "198.51.100.7"].map {
                    SetElement(
                        target: binding.ipv4!, address: IPAddress($0)!, timeout: UInt32(5 + random.next() % 4000))
                }
                binding.publisher.publish(elements) { _ in }
            }
            for queryIndex in 0..<60 {
                clock.now = 1_000 + random.next() % 700
                let query = try Self.query(world, &random)
                let transport: Transport = random.next() % 4 == 0 ? .tcp : .udp
                let listener: String? =
                    random.next() % 5 == 0 ? nil : world.policies[Int(random.next() % UInt64(world.policies.count))]
                let client: IPAddress = random.next() % 4 == 0 ? .v4(0x0A00_0001) : .v4(0x7F00_0001)
                let context = QueryContext(client: client, listenerPolicy: listener, transport: transport)
                let label = "seed \(seed) world \(worldIndex) query \(queryIndex): \(query)"
                cases += 1
                if bytes.byteAnswer(query, context: context) != nil { renderedByBytes += 1 }
                bytesLog.lines = []
                messagesLog.lines = []
                let fast = bytes.process(query, context: context)
                let full = messages.process(query, context: context)
                switch (fast, full) {
                case (.respond(let a), .respond(let b)):
                    outcomes["respond", default: 0] += 1
                    #expect(a == b, "\(label)")
                case (.drop, .drop):
                    outcomes["drop", default: 0] += 1
                case (.forward(let a), .forward(let b)):
                    outcomes["forward", default: 0] += 1
                    #expect(a.key == b.key && a.bytes == b.bytes && a.transport == b.transport, "\(label)")
                    #expect(
                        a.record.jsonLine(rcode: nil, now: 0, wallClock: "t")
                            == b.record.jsonLine(rcode: nil, now: 0, wallClock: "t"), "\(label)")
                case (.publish(let a), .publish(let b)):
                    outcomes["publish", default: 0] += 1
                    #expect(a.response == b.response && a.elements == b.elements, "\(label)")
                    #expect(
                        a.record.jsonLine(rcode: nil, now: 0, wallClock: "t")
                            == b.record.jsonLine(rcode: nil, now: 0, wallClock: "t"), "\(label)")
                default:
                    Issue.record("\(label): the renderers disagree on what happens: \(fast) vs \(full)")
                }
                #expect(bytesLog.lines == messagesLog.lines, "\(label)")
            }
        }
        // Not vacuous: thousands of cases, a good share rendered from bytes, and (for the fixed
        // seeds, whose worlds are known) every outcome seen; a random seed may draw no world
        // with a hit waiting for a commit.
        #expect(cases == 40 * 60)
        #expect(renderedByBytes > cases / 5, "seed \(seed): only \(renderedByBytes) byte-rendered answers")
        for outcome in ["respond", "drop", "forward", "publish"] where seed <= 3 || outcome != "publish" {
            #expect(outcomes[outcome, default: 0] > 0, "seed \(seed): no \(outcome) outcome generated")
        }
    }
}
