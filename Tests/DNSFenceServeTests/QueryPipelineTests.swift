import DNSFenceCore
import DNSFencePolicy
import DNSFenceResolve
import DNSFenceWire
import Logging
import NIOCore
import NIOPosix
import Testing

@testable import DNSFenceServe

/// The synchronous pipeline stage, in process: protocol behaviour without sockets.
struct PipelineFixture {
    let pipeline: QueryPipeline

    init() throws {
        let policy = try PolicyCompiler().compile(
            name: "p",
            sources: [
                PolicySource(
                    file: "t.rpz",
                    text: """
                        $TTL 60
                        @ SOA a. b. 1 2 3 4 5
                        ok.test CNAME rpz-passthru.
                        proxy.test A 10.0.0.2
                        """)
            ]
        ).policy
        let logger = Logger(label: "test")
        let forwarder = UpstreamForwarder(
            settings: .init(upstreams: []), group: MultiThreadedEventLoopGroup.singleton,
            logger: logger)
        let cache = AnswerCache(limits: .init(maxEntries: 10, minTTL: 0, maxTTL: 600), clock: { 0 })
        pipeline = QueryPipeline(
            selector: ClientPolicySelector([.init(policy: policy, clients: [])]), cache: cache,
            forwarder: forwarder, logger: logger)
    }

    func answer(_ bytes: [UInt8], transport: Transport = .udp) -> DNSMessage? {
        let context = QueryContext(client: .v4(0x7F00_0001), listenerPolicy: "p", transport: transport)
        guard case .respond(let response) = pipeline.process(bytes, context: context) else { return nil }
        return try? DNSMessage(decoding: response)
    }

    func answer(_ message: DNSMessage) -> DNSMessage? { answer(message.encoded()) }

    static func query(_ name: String, _ type: DNSType = .a, edns: EDNS? = EDNS()) throws -> DNSMessage {
        DNSMessage.query(id: 0x1234, DNSQuestion(name: try DNSName(name), type: type), edns: edns)
    }
}

@Suite("Query pipeline protocol behaviour")
struct QueryPipelineTests {
    let f: PipelineFixture
    init() throws { f = try PipelineFixture() }

    @Test("QDCOUNT 0 or 2 → FORMERR")
    func questionCount() throws {
        var q = try PipelineFixture.query("ok.test")
        q.questions.append(q.questions[0])
        #expect(f.answer(q)?.rcode == .formErr)
        q.questions = []
        #expect(f.answer(q)?.rcode == .formErr)
    }

    @Test("an undecodable query gets FORMERR with its ID")
    func formErr() {
        let bytes: [UInt8] = [0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1]
        let response = f.answer(bytes)
        #expect(response?.rcode == .formErr)
        #expect(response?.id == 0xABCD)
        #expect(response?.isResponse == true)
    }

    @Test("responses and runts are dropped")
    func dropped() throws {
        var q = try PipelineFixture.query("ok.test")
        q.isResponse = true
        let context = QueryContext(client: .v4(1), listenerPolicy: "p", transport: .udp)
        guard case .drop = f.pipeline.process(q.encoded(), context: context) else {
            Issue.record("expected drop"); return
        }
        guard case .drop = f.pipeline.process([1, 2, 3], context: context) else {
            Issue.record("expected drop"); return
        }
    }

    @Test("NOTIMP for an opcode we do not implement, without RA, CD or AD")
    func notImp() throws {
        var q = try PipelineFixture.query("ok.test")
        q.opcode = .update
        q.checkingDisabled = true
        let answer = try #require(f.answer(q))
        #expect(answer.rcode == .notImp)
        #expect(!answer.recursionAvailable && !answer.checkingDisabled && !answer.authenticData)
    }

    @Test func badVers() throws {
        let q = try PipelineFixture.query("ok.test", edns: EDNS(version: 1))
        let r = f.answer(q)
        #expect(r?.rcode == .badVers)
        #expect(r?.edns?.version == 0)
    }

    @Test("class other than IN → REFUSED")
    func chaos() throws {
        var q = try PipelineFixture.query("ok.test", .txt)
        q.questions[0].rrClass = .ch
        #expect(f.answer(q)?.rcode == .refused)
    }

    @Test("EDNS is echoed only to EDNS clients, EDE only with EDNS")
    func ednsEcho() throws {
        let with = f.answer(try PipelineFixture.query("denied.test"))
        #expect(with?.edns?.udpPayloadSize == 1232)
        #expect(with?.edns?.extendedErrors.first?.infoCode == 15)
        let without = f.answer(try PipelineFixture.query("denied.test", edns: nil))
        #expect(without?.rcode == .nxDomain)
        #expect(without?.edns == nil)
    }

    @Test("the question is echoed as asked; RA set; local data is authoritative")
    func echo() throws {
        let r = try #require(f.answer(try PipelineFixture.query("PrOxY.TeSt")))
        #expect(r.questions[0].name.wire == (try DNSName("PrOxY.TeSt")).wire)
        #expect(r.recursionAvailable)
        #expect(r.authoritative)
        #expect(r.answers.first?.address == IPAddress("10.0.0.2"))
        #expect(r.answers.first?.name.wire == (try DNSName("PrOxY.TeSt")).wire)
        #expect(r.id == 0x1234)
    }

    @Test("a client with no policy is refused with EDE 18")
    func noPolicy() throws {
        let context = QueryContext(client: .v4(1), listenerPolicy: "other", transport: .udp)
        guard
            case .respond(let bytes) = f.pipeline.process(
                try PipelineFixture.query("ok.test").encoded(), context: context)
        else { Issue.record("expected an answer"); return }
        let r = try DNSMessage(decoding: bytes)
        #expect(r.rcode == .refused)
        #expect(r.edns?.extendedErrors.first?.infoCode == 18)
    }

    @Test("an allowed name that misses the cache goes upstream; AXFR is refused")
    func forwardAndAXFR() throws {
        let context = QueryContext(client: .v4(1), listenerPolicy: "p", transport: .udp)
        guard case .forward = f.pipeline.process(try PipelineFixture.query("ok.test").encoded(), context: context)
        else {
            Issue.record("expected forward")
            return
        }
        #expect(f.answer(try PipelineFixture.query("ok.test", .axfr))?.rcode == .refused)
    }
}

@Suite("Denials synthesised from the question bytes")
struct DenialBytesTests {
    /// What each renderer makes of a denial of `bytes` (nil: the byte renderer declined).
    static func rendered(_ bytes: [UInt8], rcode: DNSRCode, error: ExtendedDNSError) throws -> (
        bytes: [UInt8]?, message: [UInt8]?
    ) {
        try bytes.withUnsafeBytes { raw in
            let view = try QueryView(raw)
            let decision = QueryDecision(.deny(rcode), action: .deny, ede: error)
            var fast: [UInt8]? = nil
            _ = ByteRenderer.render(decision, view: view) { fast = QueryPipeline.array($0, $1) }
            return (fast, MessageRenderer.render(decision, view: view, maxSize: 65535))
        }
    }

    @Test("byte for byte what the message encoder would produce", arguments: [true, false])
    func sameAsEncoder(withEDNS: Bool) throws {
        for (name, rcode, dnssec) in [
            ("Evil.Example.COM", DNSRCode.nxDomain, false), ("x.test", .refused, true),
            ("a.b.c.d.e.f.test", .noError, false),
        ] {
            var query = DNSMessage.query(
                id: 0xBEEF, DNSQuestion(name: try DNSName(name), type: .aaaa),
                edns: withEDNS ? EDNS(udpPayloadSize: 4096, dnssecOK: dnssec) : nil)
            query.checkingDisabled = dnssec
            let bytes = query.encoded()
            for error in [ExtendedDNSError(15, "dnsfence: policy p: not allowlisted"), ExtendedDNSError(17)] {
                let (fast, slow) = try Self.rendered(bytes, rcode: rcode, error: error)
                var expected = DNSMessage.response(to: query, rcode: rcode, error: error)
                // NXDOMAIN and NODATA carry the synthetic SOA (RFC 2308); REFUSED does not.
                if rcode != .refused { expected.authorities = [DNSMessage.denialSOA] }
                #expect(try #require(fast) == expected.encoded())
                #expect(fast == slow)
            }
        }
    }

    @Test("a question that is not one name at offset 12 takes the message path")
    func notVerbatim() throws {
        // Two questions, the second a pointer to the first: decodable, but not one question
        // the byte renderer can copy.
        let bytes: [UInt8] =
            [0, 1, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1, 0x78, 4, 0x74, 0x65, 0x73, 0x74, 0, 0, 1, 0, 1]
            + [0xC0, 12, 0, 28, 0, 1]
        let (fast, slow) = try Self.rendered(bytes, rcode: .nxDomain, error: ExtendedDNSError(15))
        #expect(fast == nil)
        #expect(slow != nil)
    }
}
