import DNSFenceCore
import DNSFenceWire
import Testing

/// Hostile and broken packets: each must be rejected with its specific error, never crash.
struct MalformedCase: CustomTestStringConvertible, Sendable {
    var label: String
    var bytes: [UInt8]
    var expected: WireError
    var testDescription: String { label }
}

func header(id: UInt16 = 0xBEEF, flags: UInt16 = 0x0100, qd: UInt16 = 1, an: UInt16 = 0, ns: UInt16 = 0, ar: UInt16 = 0)
    -> [UInt8]
{
    [id, flags, qd, an, ns, ar].flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
}

let exampleName: [UInt8] = [7] + Array("example".utf8) + [3] + Array("com".utf8) + [0]
let questionA: [UInt8] = exampleName + [0, 1, 0, 1]
let optRecord: [UInt8] = [0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]

let malformedCorpus: [MalformedCase] = [
    MalformedCase(label: "zero length", bytes: [], expected: .tooShort(length: 0)),
    MalformedCase(label: "truncated header", bytes: Array(header().prefix(7)), expected: .tooShort(length: 7)),
    MalformedCase(
        label: "65,536 bytes", bytes: header() + questionA + [UInt8](repeating: 0, count: 65536 - 12 - questionA.count),
        expected: .tooLong(length: 65536)),
    MalformedCase(
        label: "counts larger than the data", bytes: header(an: 100) + questionA,
        expected: .countsExceedData(declaredMinimum: 5 + 1100, available: questionA.count)),
    MalformedCase(
        label: "question name runs past the end", bytes: header() + [7] + Array("exam".utf8),
        expected: .truncated(at: 12, needed: 3)),
    MalformedCase(
        label: "question without type and class",
        bytes: header() + exampleName + [0, 1, 0, 0, 0, 0, 0, 0].prefix(0) + [0, 0, 0],
        expected: .truncated(at: 25, needed: 1)),
    MalformedCase(
        label: "compression pointer to itself", bytes: header() + [0xC0, 12, 0, 1, 0, 1],
        expected: .badCompressionPointer(at: 12, target: 12)),
    MalformedCase(
        label: "forward compression pointer", bytes: header() + [0xC0, 14, 0, 1, 0, 1, 0],
        expected: .badCompressionPointer(at: 12, target: 14)),
    MalformedCase(
        label: "pointer loop through an earlier label",
        bytes: header(an: 1) + questionA + [1, 0x61, 0xC0, UInt8(12 + questionA.count)] + [
            0, 1, 0, 1, 0, 0, 0, 60, 0, 0,
        ],
        expected: .badCompressionPointer(at: 12 + questionA.count + 2, target: 12 + questionA.count)),
    MalformedCase(
        label: "label over 63 bytes", bytes: header() + [64] + [UInt8](repeating: 0x61, count: 64) + [0, 0, 1, 0, 1],
        expected: .labelTooLong(at: 12, length: 64)),
    MalformedCase(
        label: "reserved label type 0x80", bytes: header() + [0x80, 0, 0, 1, 0, 1],
        expected: .reservedLabelType(at: 12, byte: 0x80)),
    MalformedCase(
        label: "name over 255 bytes",
        bytes: header() + (0..<5).flatMap { _ in [63] + [UInt8](repeating: 0x61, count: 63) } + [0, 0, 1, 0, 1],
        expected: .nameTooLong(at: 12)),
    MalformedCase(
        label: "two OPT records", bytes: header(ar: 2) + questionA + optRecord + optRecord,
        expected: .multipleOPT(at: 12 + questionA.count + optRecord.count)),
    MalformedCase(
        label: "OPT in the answer section", bytes: header(an: 1) + questionA + optRecord,
        expected: .misplacedOPT(at: 12 + questionA.count)),
    MalformedCase(
        label: "OPT not owned by the root", bytes: header(ar: 1) + questionA + [1, 0x61, 0] + optRecord.dropFirst(),
        expected: .misplacedOPT(at: 12 + questionA.count)),
    MalformedCase(
        label: "EDNS option longer than the OPT",
        bytes: header(ar: 1) + questionA
            + [0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 6, 0, 15, 0, 9, 0, 0],
        expected: .badEDNSOption(at: 12 + questionA.count + 11)),
    MalformedCase(
        label: "trailing garbage", bytes: header() + questionA + [0xDE, 0xAD],
        expected: .trailingData(at: 12 + questionA.count, count: 2)),
    MalformedCase(
        label: "RDATA length past the end",
        bytes: header(an: 1) + questionA + [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2],
        expected: .truncated(at: 12 + questionA.count + 12, needed: 2)),
    MalformedCase(
        label: "CNAME target with a forward pointer",
        bytes: header(an: 1) + questionA + [0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xC0, 0xFF],
        expected: .badCompressionPointer(at: 12 + questionA.count + 12, target: 0xFF)),
]

@Suite("Malformed packets")
struct MalformedPacketTests {
    @Test("each malformed packet is rejected with its specific error", arguments: malformedCorpus)
    func rejected(_ item: MalformedCase) {
        #expect(throws: item.expected) { try DNSMessage(decoding: item.bytes) }
    }

    @Test func wireErrorsMapToFormErr() {
        for item in malformedCorpus { #expect(item.expected.responseCode == .formErr) }
    }

    @Test("an A record with 3 bytes of RDATA is rejected by ldns, not crashed on")
    func badAddressLength() {
        let bytes = header(an: 1) + questionA + [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 3, 1, 2, 3]
        #expect(throws: WireError.self) { try DNSMessage(decoding: bytes) }
    }

    @Test("a maximal 65,535-byte message decodes")
    func largestMessage() throws {
        // One TXT record padded to fill the message exactly.
        let fixed = header(an: 1) + questionA + [0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 60]
        let rdLength = 65535 - fixed.count - 2
        var rdata: [UInt8] = []
        while rdata.count < rdLength {
            let chunk = min(255, rdLength - rdata.count - 1)
            rdata += [UInt8(chunk)] + [UInt8](repeating: 0x78, count: chunk)
        }
        let bytes = fixed + [UInt8(rdLength >> 8), UInt8(rdLength & 0xFF)] + rdata
        #expect(bytes.count == 65535)
        let message = try DNSMessage(decoding: bytes)
        #expect(message.answers.first?.rdata.count == rdLength)
    }

    @Test("random mutations of a golden packet never crash the decoder")
    func mutationsDoNotCrash() throws {
        let base = try Fixture.bytes("nsd-alias-answer")
        var generator = SplitMix64(seed: 0x5eed)
        var rejected = 0
        for _ in 0..<20_000 {
            var bytes = base
            for _ in 0..<Int(generator.next() % 4 + 1) {
                let index = Int(generator.next() % UInt64(bytes.count))
                bytes[index] = UInt8(truncatingIfNeeded: generator.next())
            }
            if generator.next() % 5 == 0 { bytes.removeLast(Int(generator.next() % UInt64(bytes.count))) }
            do {
                let message = try DNSMessage(decoding: bytes)
                // Whatever decodes must encode to something that decodes to the same value.
                #expect(try DNSMessage(decoding: message.encoded()) == message)
            } catch {
                rejected += 1
            }
        }
        #expect(rejected > 0)
    }
}
