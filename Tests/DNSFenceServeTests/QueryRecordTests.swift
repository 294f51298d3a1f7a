import CoreMetrics
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

extension QueryRecordTests {
    @Test("qname is written from the wire exactly as DNSName.description presents it, for every byte")
    func names() throws {
        let low = try DNSName(labels: [Array(0...62), Array(63...125), Array(126...127)])
        let high = try DNSName(labels: [Array(128...190), Array(191...253), [254, 255]])
        for name in [low, high, try DNSName("a.b.test"), DNSName.root] {
            var record = QueryRecord(started: 0, client: IPAddress("10.0.0.1")!, transport: .tcp, listenerPolicy: nil)
            record.question = DNSQuestion(name: name, type: .a)
            let line = record.jsonLine(rcode: 0, now: 0, wallClock: "t")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(object["qname"] as? String == name.description)
        }
    }
}

@Suite("Query log writer")
struct QueryLogWriterTests {
    static func record(_ name: String, client: String = "192.0.2.7") throws -> QueryRecord {
        var record = QueryRecord(
            started: QueryRecord.monotonicNow(), client: IPAddress(client)!, transport: .udp, listenerPolicy: "p")
        record.policy = "p"
        record.question = DNSQuestion(name: try DNSName(name), type: .a)
        record.action = "deny"
        return record
    }

    /// A writer to a fresh temporary file: the writer and the file's path.
    static func writer(_ limits: QueryLogWriter.Limits) -> (QueryLogWriter, String) {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ql-\(UUID().uuidString).log").path
        return (QueryLogWriter(fd: 1, path: path, limits: limits, dropped: Counter(label: "test_dropped")), path)
    }

    static func lines(_ path: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    @Test("identical lines beyond the repeat limit become one summary line with their count")
    func repeats() throws {
        let (writer, path) = Self.writer(.init(repeatLimit: 10, maxBytesPerSecond: 0))
        for _ in 0..<25 { writer.submit(try Self.record("flood.test"), rcode: 3) }
        writer.submit(try Self.record("other.test"), rcode: 3)
        writer.flush()
        var lines = try Self.lines(path)
        #expect(lines.filter { $0.contains("flood.test") }.count == 10)
        #expect(lines.filter { $0.contains("other.test") }.count == 1)
        // The summary comes with the next second.
        usleep(1_100_000)
        writer.flush()
        lines = try Self.lines(path)
        let summary = try #require(lines.first { $0.contains("suppressed") }, "\(lines)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(summary.utf8)) as? [String: Any])
        #expect(object["suppressed"] as? Int == 15)
        #expect(object["qname"] as? String == "flood.test." && object["client"] as? String == "192.0.2.7")
        #expect(object["action"] as? String == "deny")
    }

    @Test("a flood of unique names writes at most the byte budget; SIGUSR1's reopen starts a new file")
    func cap() throws {
        let (writer, path) = Self.writer(.init(repeatLimit: 10, maxBytesPerSecond: 4096))
        for i in 0..<1000 { writer.submit(try Self.record("n\(i).flood.test"), rcode: 3) }
        writer.flush()
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int ?? 0
        #expect(size > 3000 && size <= 4096, "\(size) bytes")
        for line in try Self.lines(path) {
            #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil, "whole lines only: \(line)")
        }
        // logrotate moves the file; the writer keeps appending to the moved file until told.
        try FileManager.default.moveItem(atPath: path, toPath: path + ".1")
        writer.reopen()
        usleep(1_100_000)
        writer.submit(try Self.record("after.test"), rcode: 3)
        writer.flush()
        #expect(try Self.lines(path).contains { $0.contains("after.test") })
        #expect(try !Self.lines(path + ".1").contains { $0.contains("after.test") })
    }
}
