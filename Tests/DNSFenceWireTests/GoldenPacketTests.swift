import DNSFenceCore
import DNSFenceWire
import Foundation
import Testing

/// Packets captured from real tools (dig, kdig, drill) and a real server (nsd 4.6).
enum Fixture {
    static func bytes(_ name: String) throws -> [UInt8] {
        let url = try #require(Bundle.module.url(forResource: name, withExtension: "bin", subdirectory: "Fixtures"))
        return Array(try Data(contentsOf: url))
    }
}

@Suite("Golden packets")
struct GoldenPacketTests {
    @Test(
        "queries from dig, kdig and drill round-trip byte for byte",
        arguments: ["dig-a-query", "kdig-aaaa-query", "drill-mx-query"])
    func queryRoundTrip(name: String) throws {
        let bytes = try Fixture.bytes(name)
        let message = try DNSMessage(decoding: bytes)
        #expect(!message.isResponse)
        #expect(message.questions.count == 1)
        #expect(message.encoded() == bytes)
    }

    @Test(
        "nsd answers round-trip byte for byte",
        arguments: ["nsd-alias-answer", "nsd-mx-answer", "nsd-nx-answer", "nsd-soa-answer", "nsd-txt-answer"])
    func answerRoundTrip(name: String) throws {
        let bytes = try Fixture.bytes(name)
        let message = try DNSMessage(decoding: bytes)
        #expect(message.isResponse)
        #expect(try DNSMessage(decoding: message.encoded()) == message)
        #expect(message.encoded() == bytes)
    }

    @Test func digQueryFields() throws {
        let message = try DNSMessage(decoding: try Fixture.bytes("dig-a-query"))
        let question = try #require(message.question)
        #expect(question.name.wire == [3, 119, 119, 119, 7, 69, 120, 97, 109, 112, 108, 101, 3, 99, 111, 109, 0])
        #expect(question.name == (try DNSName("www.example.com")))
        #expect(question.type == .a)
        #expect(message.recursionDesired)
        #expect(message.authenticData)
        let edns = try #require(message.edns)
        #expect(edns.udpPayloadSize == 1232)
        #expect(edns.options.map(\.code) == [EDNSOption.cookieCode])
    }

    @Test func kdigQueryHasDO() throws {
        let message = try DNSMessage(decoding: try Fixture.bytes("kdig-aaaa-query"))
        #expect(message.question?.type == .aaaa)
        #expect(message.edns?.dnssecOK == true)
    }

    @Test func nsdAliasAnswerChain() throws {
        let message = try DNSMessage(decoding: try Fixture.bytes("nsd-alias-answer"))
        #expect(message.authoritative)
        #expect(message.answers.first?.type == .cname)
        #expect(message.answers.first?.target == (try DNSName("www.example.test")))
        let addresses = message.answers.compactMap(\.address).map(\.description).sorted()
        #expect(addresses == ["192.0.2.10", "192.0.2.11"])
    }

    @Test func nsdNegativeAnswer() throws {
        let message = try DNSMessage(decoding: try Fixture.bytes("nsd-nx-answer"))
        #expect(message.rcode == .nxDomain)
        #expect(message.answers.isEmpty)
        #expect(message.authorities.first?.soaMinimum == 60)
    }
}

@Suite("Query fast path")
struct QueryFastPathTests {
    @Test(
        "the fast path decodes golden queries exactly as ldns does",
        arguments: ["dig-a-query", "kdig-aaaa-query", "drill-mx-query"])
    func sameAsLDNS(name: String) throws {
        let bytes = try Fixture.bytes(name)
        let fast = try #require(bytes.withUnsafeBytes { DNSMessage(fastQuery: $0) })
        #expect(fast == (try DNSMessage(decoding: bytes)))
    }

    @Test("anything unusual falls back to the full decoder")
    func fallsBack() throws {
        let answer = try Fixture.bytes("nsd-alias-answer")
        #expect(answer.withUnsafeBytes { DNSMessage(fastQuery: $0) } == nil)  // a response
        for item in malformedCorpus {
            #expect(item.bytes.withUnsafeBytes { DNSMessage(fastQuery: $0) } == nil, "\(item.label)")
        }
        // A compressed question name is legal but rare: the full decoder handles it.
        let compressed = header() + [0xC0, 12, 0, 1, 0, 1]
        #expect(compressed.withUnsafeBytes { DNSMessage(fastQuery: $0) } == nil)
    }

    @Test("mutated queries: whenever the fast path accepts, it agrees with ldns")
    func agreesUnderMutation() throws {
        let base = try Fixture.bytes("dig-a-query")
        var generator = SplitMix64(seed: 42)
        var accepted = 0
        for _ in 0..<20_000 {
            var bytes = base
            let index = Int(generator.next() % UInt64(bytes.count))
            bytes[index] = UInt8(truncatingIfNeeded: generator.next())
            guard let fast = bytes.withUnsafeBytes({ DNSMessage(fastQuery: $0) }) else { continue }
            accepted += 1
            #expect(fast == (try? DNSMessage(decoding: bytes)), "\(bytes)")
        }
        #expect(accepted > 0)
    }
}
