import DNSFenceCore
import DNSFenceRelease
import DNSFenceResolve
import DNSFenceWire
import Testing

@testable import DNSFenceServe

/// Wire-level cache hits must be byte for byte what building and encoding the response gives.
@Suite("wire-level cache hits")
struct ResponseTemplateTests {
    static func soa(_ zone: String) throws -> DNSRecord {
        let mname = try DNSName("ns.\(zone)").wire
        let rname = try DNSName("host.\(zone)").wire
        let numbers: [UInt32] = [1, 3600, 600, 86400, 30]
        let tail = numbers.flatMap {
            [UInt8($0 >> 24), UInt8(($0 >> 16) & 0xFF), UInt8(($0 >> 8) & 0xFF), UInt8($0 & 0xFF)]
        }
        return DNSRecord(name: try DNSName(zone), type: .soa, ttl: 300, rdata: mname + rname + tail)
    }

    static func answers() throws -> [(String, CachedAnswer)] {
        let www = try DNSName("www.example.test")
        let edge = try DNSName("edge.cdn.test")
        return [
            (
                "CNAME chain, NS and glue",
                CachedAnswer(
                    rcode: .noError, authenticData: true,
                    answers: [
                        DNSRecord(name: www, ttl: 300, cname: edge),
                        DNSRecord(name: edge, ttl: 20, address: IPAddress("192.0.2.7")!),
                        DNSRecord(name: edge, ttl: 200, address: IPAddress("192.0.2.8")!),
                    ],
                    authorities: [
                        DNSRecord(
                            name: try DNSName("cdn.test"), type: .ns, ttl: 900, rdata: try DNSName("ns.cdn.test").wire)
                    ],
                    additionals: [
                        DNSRecord(name: try DNSName("ns.cdn.test"), ttl: 900, address: IPAddress("192.0.2.53")!)
                    ])
            ),
            (
                "NXDOMAIN with SOA",
                CachedAnswer(
                    rcode: .nxDomain, authenticData: false, answers: [], authorities: [try soa("example.test")],
                    additionals: [])
            ),
            (
                "DNSSEC records (stripped for non-DO clients)",
                CachedAnswer(
                    rcode: .noError, authenticData: true,
                    answers: [
                        DNSRecord(name: www, ttl: 60, address: IPAddress("192.0.2.1")!),
                        DNSRecord(
                            name: www, type: .rrsig, ttl: 60, rdata: [0, 1, 8, 3] + Array(repeating: 7, count: 30)),
                    ], authorities: [], additionals: [])
            ),
        ]
    }

    @Test("fast bytes equal the encoder's, for every query shape and age")
    func identical() throws {
        var checked = 0
        for (label, answer) in try Self.answers() {
            for dnssecOK in [false, true] {
                let question = DNSQuestion(name: try DNSName("www.example.test"), type: .a)
                let template = try #require(WireAnswerBuilder.wire(for: answer, question: question, dnssecOK: dnssecOK))
                    .template
                for name in ["www.example.test", "WwW.ExAmPlE.tEsT"] {
                    for edns in [nil, EDNS(udpPayloadSize: 4096, dnssecOK: dnssecOK)] where edns != nil || !dnssecOK {
                        for (rd, cd, ad) in [(true, false, false), (false, true, true)] {
                            for elapsed: UInt32 in [0, 1, 100, 5000] {
                                var query = DNSMessage.query(
                                    id: 0xBEEF, DNSQuestion(name: try DNSName(name), type: .a), recursionDesired: rd,
                                    edns: edns)
                                query.checkingDisabled = cd
                                query.authenticData = ad
                                let bytes = query.encoded()
                                let decoded = try DNSMessage(decodingQuery: bytes)
                                let aged = elapsed == 0 ? answer : answer.aged(by: elapsed)
                                let slow = aged.response(to: decoded).encoded(fitting: 1232)
                                let fast = template.response(
                                    to: decoded, bytes: bytes, elapsed: elapsed, maxSize: 1232, ednsPayload: 1232)
                                #expect(
                                    fast == slow,
                                    "\(label), DO \(dnssecOK), \(name), EDNS \(edns != nil), age \(elapsed)")
                                checked += 1
                            }
                        }
                    }
                }
            }
        }
        #expect(checked == 3 * 2 * 2 * 2 * 4 + 3 * 2 * 1 * 2 * 4)
    }

    @Test("too big for the client, or a different question length: nil, the slow path decides")
    func declines() throws {
        let (_, answer) = try Self.answers()[0]
        let question = DNSQuestion(name: try DNSName("www.example.test"), type: .a)
        let template = try #require(WireAnswerBuilder.wire(for: answer, question: question, dnssecOK: false))
            .template
        let query = DNSMessage.query(id: 1, question, edns: nil)
        #expect(template.response(to: query, bytes: query.encoded(), elapsed: 0, maxSize: 60, ednsPayload: 1232) == nil)
        let other = DNSMessage.query(id: 1, DNSQuestion(name: try DNSName("w.example.test"), type: .a), edns: nil)
        #expect(
            template.response(to: other, bytes: other.encoded(), elapsed: 0, maxSize: 512, ednsPayload: 1232) == nil)
    }

    @Test("an answer kept in wire form only: whole when it fits, TC without records when it does not")
    func wireOnlyEntries() throws {
        let f = try PipelineFixture()
        let name = try DNSName("ok.test")
        let question = DNSQuestion(name: name, type: .a)
        let many = (1...40).map { DNSRecord(name: name, ttl: 60, address: .v4(0xC000_0200 + UInt32($0))) }
        let key = CacheKey(policy: "p", name: name, type: .a, dnssecOK: false, checkingDisabled: false)
        f.pipeline.cache.store(
            CachedAnswer(rcode: .noError, authenticData: false, answers: many, authorities: [], additionals: []),
            for: key, keepRecords: false
        ) { WireAnswerBuilder.wire(for: $0, question: question, dnssecOK: false) }
        #expect(f.pipeline.cache.lookup(key)?.answers.isEmpty == true)  // records really dropped

        let whole = try #require(f.answer(try PipelineFixture.query("ok.test")))  // EDNS, 1232 bytes
        #expect(whole.answers.count == 40 && !whole.truncated)
        let small = try #require(f.answer(try PipelineFixture.query("ok.test", edns: nil)))  // 512 bytes
        #expect(small.truncated && small.answers.isEmpty && small.rcode == .noError)
    }
}
