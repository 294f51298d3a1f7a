import DNSFenceWire
import Foundation
import Synchronization

/// A Knot DNS primary (knotd from Debian's `knot`) for one policy zone on loopback: TSIG key
/// `fleet-key`, IXFR from zone-file edits (`zonefile-load: difference`, changes kept in the
/// journal), NOTIFY to dnsfence's port.
final class KnotPrimary {
    let directory: URL
    let port: UInt16
    let secret: String
    let zone: String
    private(set) var daemon: Background?

    /// `records`: the zone's records below the SOA, relative to the zone; `notify`: the port
    /// dnsfence listens on (NOTIFY goes there).
    init(
        zone: String = "sandbox.rpz", records: String, serial: UInt32 = 1, timers: String = "2 2 3600 30",
        notify: UInt16
    )
        throws
    {
        directory = try Harness.temporaryDirectory()
        port = Harness.freePort()
        self.zone = zone
        secret = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        for folder in ["zones", "db"] {
            try FileManager.default.createDirectory(
                at: directory.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        try configuration(notify: notify).write(
            to: directory.appendingPathComponent("knot.conf"), atomically: true, encoding: .utf8)
        try writeZone(records: records, serial: serial, timers: timers)
        try start()
    }

    deinit { daemon?.stop() }

    func configuration(notify: UInt16) -> String {
        let d = directory.path
        return """
            server:
                rundir: \(d)
                listen: 127.0.0.1@\(port)
            log:
              - target: stderr
                any: info
            control:
                listen: \(d)/knot.sock
            database:
                storage: \(d)/db
            key:
              - id: fleet-key
                algorithm: hmac-sha256
                secret: \(secret)
            remote:
              - id: dnsfence
                address: 127.0.0.1@\(notify)
                key: fleet-key
            acl:
              - id: fleet
                address: 127.0.0.0/8
                key: fleet-key
                action: transfer
            template:
              - id: default
                storage: \(d)/zones
                zonefile-sync: -1
                zonefile-load: difference
                journal-content: changes
                semantic-checks: off
            zone:
              - domain: \(zone)
                notify: dnsfence
                acl: fleet

            """
    }

    func writeZone(records: String, serial: UInt32, timers: String = "2 2 3600 30") throws {
        let text = """
            $ORIGIN \(zone).
            $TTL 60
            @ SOA primary.invalid. hostmaster.invalid. \(serial) \(timers)
            @ NS primary.invalid.
            \(records)

            """
        try text.write(to: directory.appendingPathComponent("zones/\(zone).zone"), atomically: true, encoding: .utf8)
    }

    func start() throws {
        guard let knotd = Harness.tool("knotd") else { throw HarnessError.notReady("knotd is not installed (knot)") }
        daemon = try Background(
            knotd, ["-c", directory.appendingPathComponent("knot.conf").path],
            log: directory.appendingPathComponent("knotd.log"))
        for _ in 0..<50 {
            if log.contains("server started") { return }
            usleep(100_000)
        }
        throw HarnessError.notReady("knotd did not start: \(log)")
    }

    /// The zone edited on the primary: written and reloaded (Knot computes the difference,
    /// keeps it for IXFR and sends NOTIFY).
    func publish(records: String, serial: UInt32, timers: String = "2 2 3600 30") throws {
        try writeZone(records: records, serial: serial, timers: timers)
        guard let knotc = Harness.tool("knotc") else { throw HarnessError.notReady("knotc is not installed (knot)") }
        let result = try Harness.run(
            knotc, ["-s", directory.appendingPathComponent("knot.sock").path, "zone-reload", zone])
        guard result.status == 0 else { throw HarnessError.notReady("knotc zone-reload: \(result.output)") }
    }

    func stop() {
        daemon?.stop()
        daemon = nil
    }

    var log: String {
        (try? String(contentsOf: directory.appendingPathComponent("knotd.log"), encoding: .utf8)) ?? ""
    }
}

/// A primary of our own for faults: answers every AXFR or IXFR for `zone` with the zone whole,
/// unsigned; with `cutOff`, the answer stops before its closing SOA and the connection closes.
final class TransferFaultServer: @unchecked Sendable {
    // @unchecked Sendable: the descriptor is set once; the mode is behind a Mutex.
    let port: UInt16
    private let fd: Int32
    private let mode = Mutex<(records: String, serial: UInt32, cutOff: Bool, timers: String, served: Int)>(
        ("", 1, false, "", 0))
    private let stopped = Mutex(false)
    let zone: String

    init(zone: String = "sandbox.rpz", records: String, serial: UInt32 = 1) throws {
        self.zone = zone
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        var bound: UInt16 = 0
        for _ in 0..<20 {
            let port = Harness.freePort()
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if rc == 0 {
                bound = port
                break
            }
        }
        guard bound != 0, listen(fd, 16) == 0 else { throw HarnessError.notReady("fault server cannot listen") }
        port = bound
        set(records: records, serial: serial, cutOff: false)
        let thread = Thread { [self] in serve() }
        thread.start()
    }

    deinit { stop() }

    /// No more answers: the listening socket is closed.
    func stop() {
        guard
            !stopped.withLock({ was in
                defer { was = true }; return was
            })
        else { return }
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    /// What the next transfers answer; `timers`: the SOA's refresh, retry, expire and minimum.
    func set(records: String, serial: UInt32, cutOff: Bool, timers: String = "1 1 3600 30") {
        mode.withLock { $0 = (records, serial, cutOff, timers, $0.served) }
    }

    /// Transfers answered so far.
    var served: Int { mode.withLock { $0.served } }

    private func serve() {
        while true {
            let client = accept(fd, nil, nil)
            guard client >= 0 else { return }
            defer { close(client) }
            var prefix = [UInt8](repeating: 0, count: 2)
            guard recv(client, &prefix, 2, Int32(MSG_WAITALL)) == 2 else { continue }
            var query = [UInt8](repeating: 0, count: Int(prefix[0]) << 8 | Int(prefix[1]))
            guard recv(client, &query, query.count, Int32(MSG_WAITALL)) == query.count, query.count >= 12 else {
                continue
            }
            let (records, serial, cutOff, timers, _) = mode.withLock { m in
                m.served += 1
                return m
            }
            guard
                let answer = try? self.answer(
                    to: query, records: records, serial: serial, cutOff: cutOff, timers: timers)
            else {
                continue
            }
            let framed = [UInt8(answer.count >> 8), UInt8(answer.count & 0xFF)] + answer
            _ = framed.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
    }

    private func answer(to query: [UInt8], records: String, serial: UInt32, cutOff: Bool, timers: String) throws
        -> [UInt8]
    {
        let text = """
            $ORIGIN \(zone).
            $TTL 60
            @ SOA primary.invalid. hostmaster.invalid. \(serial) \(timers)
            \(records)

            """
        let entries = try ZoneFileReader.parse(text, file: "fault", origin: try DNSName("\(zone)."))
        let soa = entries[0].record
        var answers = entries.map(\.record)
        if !cutOff { answers.append(soa) }
        let question = DNSQuestion(name: soa.name, type: .axfr)
        var message = DNSMessage(id: UInt16(query[0]) << 8 | UInt16(query[1]), isResponse: true)
        message.authoritative = true
        message.questions = [question]
        message.answers = answers
        return message.encoded()
    }
}
