import DNSFenceCore
import DNSFenceFirewall
import DNSFenceRelease
import DNSFenceResolve
import DNSFenceWire
import Testing

@testable import DNSFenceServe

/// Upstream replies cached from their bytes (``PlainReply``) against the decoded path: for
/// seeded random replies — CNAME chains in mixed case, addresses in and out of the chain,
/// private and loopback ones, NS and glue, random TTLs, cache limits and firewall bindings —
/// the template made from the bytes must exist exactly when the decoded path makes one, list
/// the same addresses with the same TTLs, live as long, and answer any client query with the
/// same message (the bytes may differ: the upstream's compression is kept).
@Suite("Plain upstream replies")
struct PlainReplyTests {
    static let v4 = SetTarget(netns: nil, family: "inet", table: "t", set: "a4", isIPv6: false)
    static let v6 = SetTarget(netns: nil, family: "inet", table: "t", set: "a6", isIPv6: true)

    static func mixedCase(_ text: String, _ random: inout SplitMix64) -> String {
        String(text.map { random.next() % 2 == 0 ? Character($0.uppercased()) : $0 })
    }

    /// A random upstream reply to `question`, as an authoritative server might send it.
    static func reply(to question: DNSQuestion, _ random: inout SplitMix64) throws -> DNSMessage {
        var answers: [DNSRecord] = []
        var owner = question.name
        for step in 0..<Int(random.next() % 4) {
            let target = try DNSName(mixedCase("c\(step).cdn\(random.next() % 3).test", &random))
            answers.append(DNSRecord(name: owner, ttl: UInt32(random.next() % 4000), cname: target))
            owner = try DNSName(mixedCase(target.description, &random))
        }
        let addresses = [
            "192.0.2.\(1 + random.next() % 200)", "2001:db8::\(1 + random.next() % 200)", "10.1.2.3", "127.0.0.1",
            "fd00::7",
        ]
        for _ in 0..<(1 + Int(random.next() % 3)) {
            let address = IPAddress(addresses[Int(random.next() % UInt64(addresses.count))])!
            // Now and then an address for a name outside the chain (the guard withholds it).
            let name = random.next() % 8 == 0 ? try DNSName("elsewhere.test") : owner
            answers.append(DNSRecord(name: name, ttl: UInt32(random.next() % 100_000), address: address))
        }
        var message = DNSMessage(
            id: UInt16(truncatingIfNeeded: random.next()), isResponse: true, authoritative: true,
            recursionDesired: true, authenticData: random.next() % 2 == 0, questions: [question], answers: answers)
        if random.next() % 2 == 0 {
            let zone = try DNSName("test")
            message.authorities = [DNSRecord(name: zone, type: .ns, ttl: 3600, rdata: try DNSName("ns.test").wire)]
            message.additionals = [
                DNSRecord(name: try DNSName("ns.test"), ttl: 3600, address: IPAddress("192.0.2.53")!)
            ]
        }
        if random.next() % 2 == 0 { message.edns = EDNS() }
        return message
    }

    @Test("a template from the bytes is the decoded path's template", arguments: [1, 2, 3] as [UInt64])
    func sameAsDecoded(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        for _ in 0..<600 {
            let type: DNSType = random.next() % 2 == 0 ? .a : .aaaa
            let question = DNSQuestion(name: try DNSName(Self.mixedCase("www.example.test", &random)), type: type)
            let reply = try Self.reply(to: question, &random)
            let bytes = reply.encoded()
            let plain = try #require(PlainReply(bytes))
            #expect(plain.answers(question) && plain.id == reply.id)

            let limits = AnswerCache.Limits(
                maxEntries: 10, minTTL: [0, 30, 600][Int(random.next() % 3)],
                maxTTL: [60, 3600, 86400][Int(random.next() % 3)])
            let binding: FirewallBinding? =
                random.next() % 4 == 0
                ? nil
                : FirewallBinding(
                    publisher: InMemorySetPublisher(clock: { 0 }), ipv4: random.next() % 5 == 0 ? nil : Self.v4,
                    ipv6: random.next() % 5 == 0 ? nil : Self.v6, minTTL: 60,
                    maxTTL: [30, 3600][Int(random.next() % 2)],
                    grace: 30, admitPrivate: random.next() % 2 == 0)

            // The decoded path, as QueryPipeline+Upstream stores it.
            let cache = AnswerCache(limits: limits, clock: { 0 })
            let key = CacheKey(policy: "p", name: question.name, type: type, dnssecOK: false, checkingDisabled: false)
            let decoded = try DNSMessage(decoding: bytes)
            let cached = CachedAnswer(
                rcode: decoded.rcode, authenticData: decoded.authenticData, answers: decoded.answers, authorities: [],
                additionals: [])
            let slow = cache.store(cached, for: key, keepRecords: false) { stored in
                WireAnswerBuilder.wire(for: stored, question: question, dnssecOK: false, binding: binding)
            }
            let fast = WireAnswerBuilder.wire(for: plain, limits: limits, binding: binding)
            #expect((slow == nil) == (fast == nil), "\(decoded) limits \(limits)")
            guard let slow, let fast else { continue }
            #expect(fast.lifetime == cache.lifetime(of: cached))
            #expect(fast.wire.addresses == slow.addresses)
            #expect(
                fast.wire.template.answerCount == slow.template.answerCount
                    && fast.wire.template.recordCount == slow.template.recordCount)
            #expect(
                fast.wire.template.authenticData == slow.template.authenticData
                    && fast.wire.template.rcode == slow.template.rcode)

            // Any client asking the same question (in its own case, with or without EDNS, after
            // some seconds) gets the same message from both.
            let asked = DNSQuestion(name: try DNSName(Self.mixedCase("www.example.test", &random)), type: type)
            let query = DNSMessage.query(
                id: UInt16(truncatingIfNeeded: random.next()), asked, edns: random.next() % 2 == 0 ? EDNS() : nil)
            let queryBytes = query.encoded()
            let elapsed = UInt32(random.next() % 100)
            let ours = try #require(
                fast.wire.template.response(
                    to: query, bytes: queryBytes, elapsed: elapsed, maxSize: 65535, ednsPayload: 1232))
            let theirs = try #require(
                slow.template.response(
                    to: query, bytes: queryBytes, elapsed: elapsed, maxSize: 65535, ednsPayload: 1232))
            #expect(try DNSMessage(decoding: ours) == (try DNSMessage(decoding: theirs)))
            #expect(Array(ours[12..<(12 + asked.name.wire.count)]) == asked.name.wire)  // the client's case
        }
    }

    @Test("what is not a plain positive answer is left to the decoder")
    func declines() throws {
        let question = DNSQuestion(name: try DNSName("www.example.test"), type: .a)
        let address = DNSRecord(name: question.name, ttl: 60, address: IPAddress("192.0.2.1")!)
        let good = DNSMessage(id: 7, isResponse: true, questions: [question], answers: [address])
        #expect(PlainReply(good.encoded()) != nil)
        var variants: [DNSMessage] = []
        var truncated = good
        truncated.truncated = true
        variants.append(truncated)
        var negative = good
        negative.rcode = .nxDomain
        variants.append(negative)
        var empty = good
        empty.answers = []
        variants.append(empty)
        var query = good
        query.isResponse = false
        variants.append(query)
        var other = good
        other.answers.append(DNSRecord(name: question.name, type: .txt, ttl: 60, rdata: [1, 0x41]))
        variants.append(other)
        var chaos = good
        chaos.answers[0].rrClass = .ch
        variants.append(chaos)
        var extended = good
        extended.edns = EDNS()
        extended.rcode = .badVers
        variants.append(extended)
        for variant in variants { #expect(PlainReply(variant.encoded()) == nil, "\(variant)") }

        // An A record whose RDATA is not 4 bytes, and trailing garbage.
        var bytes = good.encoded()
        bytes[bytes.count - 5] = 5
        bytes.append(0)
        #expect(PlainReply(bytes) == nil)
        #expect(PlainReply(good.encoded() + [0]) == nil)

        // The question must be the one asked: name (any case), type and class.
        let plain = try #require(PlainReply(good.encoded()))
        #expect(plain.answers(DNSQuestion(name: try DNSName("WWW.Example.TEST"), type: .a)))
        #expect(!plain.answers(DNSQuestion(name: try DNSName("www.example.test"), type: .aaaa)))
        #expect(!plain.answers(DNSQuestion(name: try DNSName("ww.example.test"), type: .a)))
    }
}
