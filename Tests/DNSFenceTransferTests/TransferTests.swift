import DNSFenceCore
import Foundation
import Logging
import Testing

@testable import DNSFenceTransfer

@Suite("zone transfer: keys, zone content and the AXFR/IXFR reader")
struct TransferTests {
    static let secret = "pDPb0OsG3ZMoYXQ0UXQbTRwzlXeDwTugaLOjuBJvnIA="

    @Test("the TSIG secret is read from a bare file, a Knot key and a BIND key; anything else is refused")
    func keyFiles() {
        #expect(TSIGKey.secret(inKeyFile: Self.secret + "\n") == Self.secret)
        let knot = """
            # hmac-sha256:fleet-key:\(Self.secret)
            key:
              - id: fleet-key
                algorithm: hmac-sha256
                secret: \(Self.secret)
            """
        #expect(TSIGKey.secret(inKeyFile: knot) == Self.secret)
        let bind = "key \"fleet-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"\(Self.secret)\";\n};\n"
        #expect(TSIGKey.secret(inKeyFile: bind) == Self.secret)
        #expect(TSIGKey.secret(inKeyFile: "") == nil)
        #expect(TSIGKey.secret(inKeyFile: "c2hvcnQ=") == nil, "5 bytes is too short a key")
        #expect(TSIGKey.secret(inKeyFile: "not base64 at all!") == nil)
        #expect(TSIGKey(name: "Fleet-Key", algorithm: "HMAC-SHA256", secret: Self.secret).name == "fleet-key.")
        #expect(!"\(TSIGKey(name: "k", algorithm: "hmac-sha256", secret: Self.secret))".contains(Self.secret))
    }

    static func soa(_ serial: UInt32) -> String {
        "sandbox.rpz.\t60\tIN\tSOA\tprimary.invalid. hostmaster.invalid. \(serial) 2 2 60 30"
    }
    static let a = "a.test.sandbox.rpz.\t60\tIN\tCNAME\trpz-passthru."
    static let b = "b.test.sandbox.rpz.\t60\tIN\tA\t192.0.2.1"
    static let c = "c.test.sandbox.rpz.\t60\tIN\tA\t192.0.2.2"

    func read(_ lines: [String], current: ZoneContent? = nil) throws(TransferError) -> TransferOutcome {
        var reader = TransferReader(zone: "sandbox.rpz.", current: current)
        for line in lines { try reader.take(TransferRecord(line: line)) }
        if !reader.isComplete { try reader.endOfMessage() }
        return try reader.outcome()
    }

    func zone(_ serial: UInt32, _ records: [String]) throws -> ZoneContent {
        var content = try ZoneContent(origin: "sandbox.rpz.", soaLine: Self.soa(serial))
        for record in records { try content.add(record) }
        return content
    }

    @Test("AXFR: every record between the two SOAs; text round-trips through the cache format")
    func axfr() throws {
        guard case .full(let content) = try read([Self.soa(7), Self.a, Self.b, Self.soa(7)]) else {
            Issue.record("not a full transfer")
            return
        }
        #expect(content.soa.serial == 7 && content.count == 2)
        #expect(content.text.hasPrefix(Self.soa(7) + "\n"))
        #expect(ZoneContent.parse("; a comment\n" + content.text, origin: "sandbox.rpz.") == content)
        #expect(throws: TransferError.self) { try read([Self.a, Self.soa(7)]) }
        #expect(throws: TransferError.self) { try read([Self.soa(7), Self.a, Self.soa(8)]) }
        #expect(throws: TransferError.self) {
            try read(["other.zone.\t60\tIN\tSOA\tp. h. 1 2 2 60 30", Self.a, Self.soa(1)])
        }
        // Cut off before the closing SOA: no outcome.
        var reader = TransferReader(zone: "sandbox.rpz.", current: nil)
        try reader.take(TransferRecord(line: Self.soa(7)))
        try reader.take(TransferRecord(line: Self.a))
        #expect(!reader.isComplete)
        #expect(throws: TransferError.self) { try reader.outcome() }
    }

    @Test("IXFR: difference sequences applied in order to a copy; the SOA alone means up to date")
    func ixfr() throws {
        let held = try zone(1, [Self.a, Self.b])
        let outcome = try read(
            [Self.soa(3), Self.soa(1), Self.b, Self.soa(2), Self.c, Self.soa(2), Self.a, Self.soa(3), Self.soa(3)],
            current: held)
        guard case .incremental(let delta, let added, let removed, let owners) = outcome else {
            Issue.record("not incremental: \(outcome)")
            return
        }
        #expect(delta.serial == 3 && added == 1 && removed == 2)
        #expect(
            owners == [
                "a.test.sandbox.rpz.": [], "b.test.sandbox.rpz.": [], "c.test.sandbox.rpz.": [Self.c],
            ])
        var content = held
        content.apply(delta)
        #expect(content.soa.serial == 3 && content.count == 1)
        #expect(content.text.contains("c.test") && !content.text.contains("a.test") && !content.text.contains("b.test"))
        // A record removed and added again in one IXFR (a TTL change) stays, with the new TTL.
        let ttl = try read(
            [Self.soa(2), Self.soa(1), Self.a, Self.soa(2), Self.a.replacingTTL(300), Self.soa(2)], current: held)
        guard case .incremental(let retimed, 1, 1, _) = ttl else {
            Issue.record("not incremental: \(ttl)")
            return
        }
        var changed = held
        changed.apply(retimed)
        #expect(changed.lines(of: "a.test.sandbox.rpz.") == [Self.a.replacingTTL(300)] && changed.count == 2)
        #expect(held.count == 2 && held.soa.serial == 1, "the zone held is untouched")

        guard case .upToDate(let serial) = try read([Self.soa(1)], current: held) else {
            Issue.record("not up to date")
            return
        }
        #expect(serial == 1)
        // A newer serial answered with the SOA alone: ask for AXFR.
        #expect(throws: TransferError.self) { try read([Self.soa(2)], current: held) }
        // Deleting what the zone has not: incoherent (the client falls back to AXFR).
        #expect(throws: TransferError.incoherent("IXFR deletes a record the zone does not have: '\(Self.c)'")) {
            try read([Self.soa(2), Self.soa(1), Self.c, Self.soa(2), Self.soa(2)], current: held)
        }
        // An IXFR answered with the whole zone.
        guard case .full(let whole) = try read([Self.soa(2), Self.c, Self.soa(2)], current: held) else {
            Issue.record("an AXFR-style answer is a full transfer")
            return
        }
        #expect(whole.count == 1)
    }

    @Test("serial arithmetic (RFC 1982)")
    func serials() {
        #expect(ZoneContent.isNewer(2, than: 1))
        #expect(!ZoneContent.isNewer(1, than: 1))
        #expect(ZoneContent.isNewer(1, than: UInt32.max))
        #expect(!ZoneContent.isNewer(UInt32.max, than: 1))
    }
}

extension String {
    /// A record line with another TTL (the second tab-separated field).
    func replacingTTL(_ ttl: Int) -> String {
        var fields = split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        fields[1] = "\(ttl)"
        return fields.joined(separator: "\t")
    }
}

@Suite("zone transfer: the cache file at start")
struct ZoneCacheStartTests {
    @Test("the first load's secondary is the one that serves: its cache file is read once")
    func readOnce() throws {
        let directory = "/tmp/dnsfence-zonecache-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        mkdir(directory, 0o755)
        defer { _ = try? FileManager.default.removeItem(atPath: directory) }
        let text =
            "once.rpz.\t60\tIN\tSOA\tns.once.rpz. admin.once.rpz. 7 3600 600 604800 60\n"
            + "a.once.rpz.\t60\tIN\tCNAME\trpz-passthru.\n"
        try text.write(toFile: directory + "/once.rpz.zone", atomically: true, encoding: .utf8)
        let source = ZoneTransferSource(
            zone: "once.rpz.", primaries: [TransferPrimary(address: IPAddress("127.0.0.1")!, port: 9)],
            cacheDirectory: directory)
        let zones = ZoneTransfers(logger: Logger(label: "test"))
        defer { zones.stop() }
        guard case .serving(let served) = zones.state(of: source) else {
            Issue.record("the cached copy should serve")
            return
        }
        #expect(served.contains("a.once.rpz."))
        zones.configure([source])
        _ = zones.state(of: source)
        #expect(zones.serials["once.rpz."] == .some(7))
        #expect(ZoneCache.reads.withLock { $0[directory + "/once.rpz.zone"] } == 1)
    }
}
