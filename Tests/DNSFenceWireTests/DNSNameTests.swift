import DNSFenceCore
import DNSFenceWire
import Testing

@Suite("DNSName")
struct DNSNameTests {
    @Test func parsesAndPrints() throws {
        let name = try DNSName("WWW.Example.com.")
        #expect(name.labelCount == 3)
        #expect(name.description == "WWW.Example.com.")
        #expect(name.lowercased().description == "www.example.com.")
        #expect(try DNSName("www.example.com") == name)
        #expect(DNSName.root.description == ".")
    }

    @Test func caseInsensitiveEqualityAndHashing() throws {
        let a = try DNSName("ExAmPlE.CoM")
        let b = try DNSName("example.com")
        #expect(a == b)
        #expect(Set([a, b]).count == 1)
        #expect(a.wire != b.wire)
    }

    @Test func escapes() throws {
        let name = try DNSName(#"a\.b.c\032d"#)
        #expect(name.labels.map { Array($0) } == [Array("a.b".utf8), Array("c d".utf8)])
        #expect(name.description == #"a\.b.c\032d."#)
    }

    @Test func limits() throws {
        #expect(throws: DNSNameError.labelTooLong(label: String(repeating: "a", count: 64), length: 64)) {
            try DNSName(String(repeating: "a", count: 64) + ".com")
        }
        let label = String(repeating: "a", count: 63)
        #expect(throws: DNSNameError.nameTooLong(length: 257)) {
            try DNSName([label, label, label, label].joined(separator: "."))
        }
        #expect(throws: DNSNameError.emptyLabel) { try DNSName("a..b") }
        _ = try DNSName([label, label, label, String(repeating: "a", count: 61)].joined(separator: "."))
    }

    @Test("a U-label is rejected with its A-label named")
    func nonASCII() {
        #expect(throws: DNSNameError.nonASCII(label: "bücher", aLabel: "xn--bcher-kva")) {
            try DNSName("bücher.example")
        }
        #expect(throws: DNSNameError.nonASCII(label: "münchen", aLabel: "xn--mnchen-3ya")) { try DNSName("münchen.de") }
    }

    @Test func subdomains() throws {
        let name = try DNSName("a.b.example.com")
        #expect(name.isSubdomain(of: try DNSName("EXAMPLE.com")))
        #expect(name.isSubdomain(of: .root))
        #expect(!name.isSubdomain(of: try DNSName("ample.com")))
        #expect(
            name.relative(to: try DNSName("example.com"))?.map { String(decoding: $0, as: UTF8.self) } == ["a", "b"])
        #expect(name.parent() == (try DNSName("b.example.com")))
    }
}

@Suite("IP addresses")
struct IPAddressTests {
    @Test func parseAndFormat() throws {
        #expect(IPAddress("10.0.0.1")?.description == "10.0.0.1")
        #expect(IPAddress("2001:DB8::1")?.description == "2001:db8::1")
        #expect(IPAddress("300.1.1.1") == nil)
        let prefix = try #require(IPPrefix("10.200.0.0/24"))
        #expect(prefix.contains(IPAddress("10.200.0.77")!))
        #expect(!prefix.contains(IPAddress("10.201.0.1")!))
        #expect(IPPrefix("10.200.0.1/24") == nil)
        #expect(IPPrefix("fd00::/8")?.contains(IPAddress("fd12::1")!) == true)
    }
}

@Suite("Encoder")
struct EncoderTests {
    @Test("names are compressed and the result decodes with ldns")
    func compression() throws {
        let name = try DNSName("www.example.com")
        var message = DNSMessage(
            id: 7, isResponse: true, recursionDesired: true, recursionAvailable: true,
            questions: [DNSQuestion(name: name, type: .a)])
        message.answers = [
            DNSRecord(name: name, ttl: 60, cname: try DNSName("cdn.example.com")),
            DNSRecord(name: try DNSName("cdn.example.com"), ttl: 60, address: IPAddress("192.0.2.1")!),
        ]
        message.edns = EDNS(options: [ExtendedDNSError(15, "blocked").option])
        let bytes = message.encoded()
        // The question name occurs once in full; the rest are pointers.
        #expect(bytes.count < 12 + 21 + 2 * 12 + 6 + 6 + 4 + 11 + 4 + 2 + 7 + 20)
        let decoded = try DNSMessage(decoding: bytes)
        #expect(decoded == message)
        #expect(decoded.edns?.extendedErrors == [ExtendedDNSError(15, "blocked")])
    }

    @Test("an extended RCODE goes into the OPT record")
    func badVers() throws {
        let message = DNSMessage(
            id: 1, isResponse: true, rcode: .badVers, questions: [DNSQuestion(name: try DNSName("a.test"), type: .a)])
        let decoded = try DNSMessage(decoding: message.encoded())
        #expect(decoded.rcode == .badVers)
        #expect(decoded.edns != nil)
    }
}
