import Foundation
import Testing

/// RFC 7766: a client may pipeline as many queries as it likes on one connection.
@Suite("TCP pipelining")
struct TCPPipeliningTests {
    /// A query for `name` (type A, RD) with `id`, framed for TCP.
    static func frame(_ name: String, id: UInt16) -> [UInt8] {
        var message: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xFF), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        for label in name.split(separator: ".") {
            message.append(UInt8(label.utf8.count))
            message += Array(label.utf8)
        }
        message += [0, 0, 1, 0, 1]
        return [UInt8(message.count >> 8), UInt8(message.count & 0xFF)] + message
    }

    @Test("500 pipelined cache misses on one connection: 500 answers, none lost, the connection kept")
    func fiveHundred() throws {
        let nsd = try NSDServer()
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort()
        let fence = try Harness.serve(
            ["--listen", "127.0.0.1:\(port)", "--upstream", "127.0.0.1:\(nsd.port)", "--allow", "*.example.test"],
            port: port, log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let fd = try #require(Harness.connectTCP(port: port))
        defer { close(fd) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        // Unique names: every one a cache miss that waits for the upstream.
        var all: [UInt8] = []
        for i in 0..<500 { all += Self.frame("p\(i).example.test", id: UInt16(i)) }
        let sent = all.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        #expect(sent == all.count)
        var buffer: [UInt8] = []
        var ids = Set<UInt16>()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while ids.count < 500 {
            let got = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard got > 0 else { break }
            buffer += chunk[0..<got]
            while buffer.count >= 2 {
                let length = Int(buffer[0]) << 8 | Int(buffer[1])
                guard buffer.count >= 2 + length else { break }
                ids.insert(UInt16(buffer[2]) << 8 | UInt16(buffer[3]))
                buffer.removeFirst(2 + length)
            }
        }
        #expect(ids.count == 500, "answers received: \(ids.count)")
    }
}

/// RFC 2308: denials a stub can cache.
@Suite("negative caching of denials")
struct DenialSOATests {
    @Test("NXDOMAIN and NODATA denials carry a SOA in the authority section; REFUSED does not")
    func soa() throws {
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort()
        let fence = try Harness.serve(
            ["--listen", "127.0.0.1:\(port)", "--upstream", "127.0.0.1:9", "--allow", "ok.test"], port: port,
            log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let dig = try #require(Harness.tool("dig"))
        func ask(_ args: [String]) throws -> String {
            try Harness.run(dig, ["@127.0.0.1", "-p", "\(port)", "+tries=1", "+time=3"] + args).output
        }
        let nx = try ask(["denied.test", "A"])
        #expect(nx.contains("status: NXDOMAIN") && nx.contains("AUTHORITY: 1"), "\(nx)")
        #expect(nx.contains(".\t\t\t60\tIN\tSOA\t. . 1 3600 600 86400 60"), "\(nx)")
        let nodata = try ask(["ok.test", "TXT"])  // a type the policy does not allow: NODATA
        #expect(
            nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0") && nodata.contains("SOA"), "\(nodata)")
        let refused = try ask(["ok.test", "A", "+noedns", "-c", "CH"])
        #expect(refused.contains("status: REFUSED") && refused.contains("AUTHORITY: 0"), "\(refused)")
    }
}

@Suite("slowloris")
struct SlowlorisTests {
    @Test("a message trickled a byte at a time is cut off once it takes longer than the idle timeout")
    func trickle() throws {
        let directory = try Harness.temporaryDirectory()
        let port = Harness.freePort()
        try """
        listen: [{ address: 127.0.0.1:\(port), policy: p }]
        upstreams: [127.0.0.1:9]
        tcp: { idle-timeout: 2s }
        policies: { p: { allow: [ok.test] } }
        """.write(to: directory.appendingPathComponent("s.yaml"), atomically: true, encoding: .utf8)
        let fence = try Harness.serve(
            ["--config", directory.appendingPathComponent("s.yaml").path], port: port,
            log: directory.appendingPathComponent("dnsfence.log"))
        defer { fence.stop() }
        let fd = try #require(Harness.connectTCP(port: port))
        defer { close(fd) }
        signal(SIGPIPE, SIG_IGN)
        let frame = TCPPipeliningTests.frame("ok.test", id: 7)
        let started = Date()
        var closed = false
        // One byte every 0.4 s: the idle timer (2 s) never fires, the message never completes.
        for byte in frame.dropLast() {
            var one = byte
            if write(fd, &one, 1) != 1 {
                closed = true
                break
            }
            usleep(400_000)
            var probe = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&probe, 1, 0) > 0 {
                var sink: UInt8 = 0
                if read(fd, &sink, 1) <= 0 {
                    closed = true
                    break
                }
            }
        }
        let elapsed = Date().timeIntervalSince(started)
        #expect(closed, "the connection was still open after \(elapsed) s")
        #expect(elapsed < 4, "closed after \(elapsed) s")
    }
}
