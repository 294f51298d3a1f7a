import Foundation
import Testing

/// Policy zones kept from a primary (docs/fleet.md): Knot DNS from Debian's packages as the
/// primary (AXFR, IXFR from zone edits, NOTIFY, TSIG), a primary of our own for faults.
@Suite("fleet: policy zones from primaries", .enabled(if: isRoot, "needs root: network namespaces and nftables"))
struct FleetTests {
    static let first = """
        proxy.test A 192.0.2.80
        keep.test A 192.0.2.82
        """
    static let second = """
        keep.test A 192.0.2.82
        added.test A 192.0.2.81
        """

    /// A dnsfence for the zone `sandbox.rpz` from `primary`, its files in `directory`.
    struct Fence {
        let directory: URL
        let port: UInt16
        let metrics: UInt16
        var process: Background?

        init(
            primary: UInt16, secret: String?, netns: String? = nil, port: UInt16 = Harness.freePort(),
            directory: URL? = nil, allow: [String] = []
        ) throws {
            self.directory = try directory ?? Harness.temporaryDirectory()
            self.port = port
            metrics = Harness.freePort()
            var tsig = ""
            if let secret {
                try secret.write(
                    to: self.directory.appendingPathComponent("fleet.key"), atomically: true, encoding: .utf8)
                tsig = "tsig: { name: fleet-key, algorithm: hmac-sha256, secret-file: fleet.key }"
            }
            let firewall =
                netns.map { "firewall: { netns: /run/netns/\($0), table: inet fence, ipv4-set: allow4, create: true }" }
                ?? ""
            let config = """
                listen: [{ address: 127.0.0.1:\(port), policy: fleet }]
                metrics: { listen: 127.0.0.1:\(metrics) }
                \(allow.isEmpty ? "" : "upstreams: [127.0.0.1:9]   # never asked: only the zone's rewrites are")
                policies:
                  fleet:
                    zones:
                      - transfer:
                          zone: sandbox.rpz
                          primaries: [127.0.0.1:\(primary)]
                          cache-dir: cache
                          \(tsig)
                    \(firewall)
                    \(allow.isEmpty ? "" : "allow: [\(allow.joined(separator: ", "))]")
                """
            try FileManager.default.createDirectory(
                at: self.directory.appendingPathComponent("cache"), withIntermediateDirectories: true)
            try config.write(to: self.directory.appendingPathComponent("f.yaml"), atomically: true, encoding: .utf8)
            process = try Harness.serve(
                ["--config", self.directory.appendingPathComponent("f.yaml").path], port: port,
                log: self.directory.appendingPathComponent("dnsfence-\(UInt32.random(in: 0..<UInt32.max)).log"))
        }

        func stop() { process?.stop() }

        func ask(_ name: String) throws -> String {
            let dig = try #require(Harness.tool("dig"))
            return try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=2", name, "A"]).output
        }

        /// Waits up to `seconds` for `condition`; returns the seconds it took, or nil.
        func wait(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Double? {
            let start = Date()
            while Date().timeIntervalSince(start) < seconds {
                if try condition() { return Date().timeIntervalSince(start) }
                usleep(50_000)
            }
            return nil
        }

        func metricsText() throws -> String { try httpGet(metrics, "/metrics").body }
    }

    @Test(
        "AXFR, then an edit on Knot and its NOTIFY: the added name answers, the removed one is denied and revoked",
        arguments: [false, true])
    func notifyAndIXFR(withAllowedNames: Bool) throws {
        let netns = "dff-\(String(UInt32.random(in: 0..<UInt32.max), radix: 16))"
        try sh("ip netns add \(netns)")
        defer { _ = try? sh("ip netns del \(netns)") }
        let port = Harness.freePort()
        let knot = try KnotPrimary(records: Self.first, notify: port)
        defer { knot.stop() }
        // With names allowed beside the zone, the policy is compiled whole; else patched.
        var fence = try Fence(
            primary: knot.port, secret: knot.secret, netns: netns, port: port,
            allow: withAllowedNames ? ["extra.example.test"] : [])
        defer { fence.stop() }
        let set = { try sh("ip netns exec \(netns) nft list set inet fence allow4") }

        #expect(try fence.wait(10) { try fence.ask("proxy.test").contains("192.0.2.80") } != nil, "\(knot.log)")
        #expect(try set().contains("192.0.2.80"))
        #expect(knot.log.contains("AXFR, outgoing"), "\(knot.log)")

        try knot.publish(records: Self.second, serial: 2)
        let took = try fence.wait(5) {
            try fence.ask("added.test").contains("192.0.2.81") && fence.ask("proxy.test").contains("status: NXDOMAIN")
                && !set().contains("192.0.2.80")
        }
        let seconds = try #require(took, "not applied within 5 s: \(knot.log)")
        #expect(seconds < 2, "applied \(seconds) s after the edit")
        #expect(try fence.ask("keep.test").contains("192.0.2.82"))
        // The IXFR patched the policy's index (its only zone) instead of compiling it again.
        let log = fence.process?.output ?? ""
        #expect(log.contains(withAllowedNames ? "zone applied" : "zone patched") && log.contains("type=ixfr"), "\(log)")
        #expect(knot.log.contains("IXFR, outgoing") && knot.log.contains("serial 1 -> 2"), "\(knot.log)")
        // Knot's NOTIFY is signed with the zone's key: verified, answered, and it started the refresh.
        #expect(fence.process?.output.contains("NOTIFY: refreshing") == true)
        let metrics = try fence.metricsText()
        #expect(metrics.contains("dnsfence_zone_serial{zone=\"sandbox.rpz.\"} 2"), "\(metrics)")
        #expect(metrics.contains("type=\"ixfr\",result=\"success\"} 1"), "\(metrics)")
        #expect(metrics.contains("dnsfence_zone_records_changed_total{zone=\"sandbox.rpz.\",change=\"removed\"} 1"))
        fence.stop()
        fence.process = nil
    }

    @Test("a bad TSIG is refused and the old zone keeps serving; a restart with the primary down serves the cache")
    func badKeyAndRestart() throws {
        let port = Harness.freePort()
        let knot = try KnotPrimary(records: Self.first, notify: port)
        defer { knot.stop() }
        let directory = try Harness.temporaryDirectory()
        var fence = try Fence(primary: knot.port, secret: knot.secret, port: port, directory: directory)
        #expect(try fence.wait(10) { try fence.ask("proxy.test").contains("192.0.2.80") } != nil)
        fence.stop()

        // Another key: the cached copy serves at once, but nothing from the primary is taken.
        let wrong = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        fence = try Fence(primary: knot.port, secret: wrong, port: port, directory: directory)
        #expect(try fence.ask("proxy.test").contains("192.0.2.80"), "served from the cache")
        try knot.publish(records: Self.second, serial: 2)
        let refused = try fence.wait(8) { try fence.metricsText().contains("result=\"refused\"") }
        let text = try fence.metricsText()
        #expect(refused != nil, "\(text)")
        #expect(try fence.ask("added.test").contains("status: NXDOMAIN"))
        #expect(try fence.ask("proxy.test").contains("192.0.2.80"))
        let log = fence.process?.output ?? ""
        #expect(log.contains("transfer failed") && log.contains("BADSIG"), "\(log)")
        fence.stop()

        // The primary down: a restart serves the cached zone (serial 1) at once.
        knot.stop()
        fence = try Fence(primary: knot.port, secret: knot.secret, port: port, directory: directory)
        defer { fence.stop() }
        #expect(try fence.ask("proxy.test").contains("192.0.2.80"))
        #expect(try fence.ask("keep.test").contains("192.0.2.82"))
        #expect(try fence.metricsText().contains("dnsfence_zone_serial{zone=\"sandbox.rpz.\"} 1"))
    }

    @Test("a transfer cut off midway changes nothing")
    func cutOff() throws {
        let primary = try TransferFaultServer(records: Self.first)
        let fence = try Fence(primary: primary.port, secret: nil)
        defer { fence.stop() }
        #expect(try fence.wait(10) { try fence.ask("proxy.test").contains("192.0.2.80") } != nil)
        let before = primary.served
        primary.set(records: Self.second, serial: 2, cutOff: true)
        // Refresh is 1 s: wait for two transfers cut off.
        #expect(fence.wait(6) { primary.served >= before + 2 } != nil)
        #expect(try fence.ask("proxy.test").contains("192.0.2.80"))
        #expect(try fence.ask("added.test").contains("status: NXDOMAIN"))
        let metrics = try fence.metricsText()
        #expect(metrics.contains("result=\"network\""), "\(metrics)")
        #expect(metrics.contains("dnsfence_zone_serial{zone=\"sandbox.rpz.\"} 1"), "\(metrics)")
        let cached = try String(
            contentsOf: fence.directory.appendingPathComponent("cache/sandbox.rpz.zone"), encoding: .utf8)
        #expect(cached.contains("192.0.2.80") && !cached.contains("added.test"))
    }

    @Test("NOTIFY: a primary's is answered and starts a refresh; REFUSED from others, NOTAUTH for other zones")
    func notify() throws {
        let primary = try TransferFaultServer(records: Self.first)
        primary.set(records: Self.first, serial: 1, cutOff: false, timers: "3600 3600 86400 30")
        let fence = try Fence(primary: primary.port, secret: nil)
        defer { fence.stop() }
        #expect(try fence.wait(10) { try fence.ask("proxy.test").contains("192.0.2.80") } != nil)
        let served = primary.served
        // rcode, AA and opcode of the answer to a NOTIFY for `zone` sent from `source`.
        func notify(_ zone: String, from source: String) throws -> String {
            try Harness.run(
                "/usr/bin/python3",
                [
                    "-c",
                    """
                    import socket, struct
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
                    s.bind(("\(source)", 0))
                    q = b"".join(bytes([len(l)]) + l.encode() for l in "\(zone)".split(".")) + b"\\0"
                    s.sendto(struct.pack(">HHHHHH", 0x4242, 0x2400, 1, 0, 0, 0) + q + struct.pack(">HH", 6, 1),
                             ("127.0.0.1", \(fence.port)))
                    a = s.recv(512)
                    i, f = struct.unpack(">HH", a[:4])
                    print(f"id={i:x} qr={f >> 15} opcode={(f >> 11) & 15} aa={(f >> 10) & 1} rcode={f & 15}")
                    """,
                ]
            ).output.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(try notify("sandbox.rpz", from: "127.0.0.1") == "id=4242 qr=1 opcode=4 aa=1 rcode=0")
        #expect(fence.wait(3) { primary.served > served } != nil, "the NOTIFY started a refresh (SOA refresh is 1 h)")
        #expect(try notify("sandbox.rpz", from: "127.0.0.2") == "id=4242 qr=1 opcode=4 aa=0 rcode=5")
        #expect(try notify("other.rpz", from: "127.0.0.1") == "id=4242 qr=1 opcode=4 aa=0 rcode=9")
        #expect(try fence.metricsText().contains("action=\"notify\""))
    }

    @Test("at SOA expire with no successful refresh the policy fails closed, and /readyz says why")
    func expiry() throws {
        let primary = try TransferFaultServer(records: Self.first)
        primary.set(records: Self.first, serial: 1, cutOff: false, timers: "1 1 3 30")
        let fence = try Fence(primary: primary.port, secret: nil)
        defer { fence.stop() }
        #expect(try fence.wait(10) { try fence.ask("proxy.test").contains("192.0.2.80") } != nil)
        #expect(try httpGet(fence.metrics, "/readyz").status == 200)
        primary.stop()
        let failed = try fence.wait(8) { try fence.ask("proxy.test").contains("status: SERVFAIL") }
        #expect(failed != nil)
        let answer = try fence.ask("proxy.test")
        #expect(answer.contains("expired"), "\(answer)")
        let ready = try httpGet(fence.metrics, "/readyz")
        #expect(ready.status == 503 && ready.body.contains("expired"), "\(ready)")
        #expect(try fence.metricsText().contains("dnsfence_zone_expired{zone=\"sandbox.rpz.\"} 1"))
    }
}
