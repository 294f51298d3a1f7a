import DNSFenceCore
import DNSFencePolicy
import DNSFenceWire
import Foundation
import Testing

@testable import DNSFenceServe

@Suite("Query log line")
struct QueryRecordTests {
    @Test("one JSON object with every field, quoted safely, latency from the monotonic clock")
    func jsonLine() throws {
        var record = QueryRecord(
            started: 5_000_000, client: IPAddress("192.0.2.7")!, transport: .udp, listenerPolicy: "sandbox")
        record.policy = "sandbox"
        record.question = DNSQuestion(name: try DNSName("odd\"name.test"), type: .aaaa)
        record.action = "deny"
        record.rule = RuleID(file: "zones/a.rpz", line: 7)
        record.ede = ExtendedDNSError(15, "blocked \\ by \"policy\"")
        record.published = [IPAddress("2001:db8::1")!]
        let line = record.jsonLine(rcode: 3, now: 5_000_000 + 1_234_567, wallClock: "2026-11-29T00:00:00Z")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["client"] as? String == "192.0.2.7")
        #expect(object["transport"] as? String == "udp")
        #expect(object["policy"] as? String == "sandbox")
        #expect(object["qname"] as? String == #"odd"name.test."# || object["qname"] as? String == #"odd\"name.test."#)
        #expect(object["qtype"] as? String == "AAAA")
        #expect(object["action"] as? String == "deny")
        #expect(object["rule"] as? String == "zones/a.rpz:7")
        #expect(object["rcode"] as? String == "NXDOMAIN")
        #expect(object["ede"] as? Int == 15)
        #expect(object["ede_text"] as? String == "blocked \\ by \"policy\"")
        #expect(object["latency_us"] as? Int == 1_234)
        #expect(object["published"] as? [String] == ["2001:db8::1"])
        // A clock that went backwards never yields a negative latency.
        let early = record.jsonLine(rcode: nil, now: 0, wallClock: "t")
        #expect(early.contains(#""latency_us":0"#) && early.contains(#""rcode":"dropped""#))
    }
}
