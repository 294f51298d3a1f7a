// The cold path end to end, through real sockets, for instruction counts under callgrind:
// every query is a distinct allowed name, so each one misses the cache, goes to an upstream
// (a socket of our own on loopback that answers every A question with one fresh address),
// is cached and answered; with `publishing`, its address is committed to a real nftables set
// first (run it as root inside a network namespace of its own: scripts/callgrind.sh does).
// The count covers every thread of the process: the server's loop, the committer and monitor,
// the fake upstream and the client, whose shares are the same before and after a change.

import DNSFenceFirewall
import DNSFenceIO
import DNSFencePolicy
import DNSFenceResolve
import DNSFenceServe
import DNSFenceWire
import Dispatch
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

enum ColdReplay {
    /// Queries in flight at once, as many as dnsperf keeps by default.
    static let window = 100
    /// Seconds, as the server's clocks count.
    static let clock: @Sendable () -> UInt64 = { UInt64(DispatchTime.now().uptimeNanoseconds / 1_000_000_000) }

    static func run(iterations: Int, publishing: Bool) async throws {
        let logger = Logger(label: "replay")

        let upstreamLoop = try DatagramLoop(name: "replay-upstream")
        let upstream = try await DatagramSocket.bind(
            try SocketAddress(ipAddress: "127.0.0.1", port: 0), on: upstreamLoop
        ) { socket, query, peer in
            if let reply = reply(to: query) { socket.send(reply, to: peer) }
        }

        let policy = try PolicyCompiler().compile(
            name: "replay", sources: [PolicySource(file: "replay.allow", text: "*.allowed.test\n")],
            // Every forward is charged to the tunnel budget, which is big enough never to refuse:
            // one client asking a million names is a benchmark, not a tunnel.
            budget: TunnelBudget(names: 1_000_000, window: 1, burst: 1_000_000, maxLabel: 63, maxName: 100)
        ).policy
        var firewalls: [String: FirewallBinding] = [:]
        if publishing { firewalls["replay"] = try await firewall() }
        let group = MultiThreadedEventLoopGroup.singleton
        let loop = try DatagramLoop(name: "replay-udp")
        let forwarder = UpstreamForwarder(
            settings: .init(upstreams: [
                try SocketAddress(ipAddress: "127.0.0.1", port: Int(upstream.localAddress.port))
            ]),
            group: group, logger: logger)
        try await forwarder.start(socketsPerFamily: 8, loops: [loop])
        let pipeline = QueryPipeline(
            selector: ClientPolicySelector([.init(policy: policy, clients: [])]),
            cache: AnswerCache(limits: .init(maxEntries: 1_000_000, minTTL: 0, maxTTL: 86400), clock: clock),
            forwarder: forwarder, logger: logger, firewalls: firewalls)
        let server = try await DatagramSocket.bind(
            try SocketAddress(ipAddress: "127.0.0.1", port: 0), on: loop,
            receiver: DNSServer.udpReceiver(pipeline: pipeline, listenerPolicy: "replay"))

        let answered = try query(port: server.localAddress.port, count: iterations)
        print("workload=cold\(publishing ? "-nft" : "") iterations=\(iterations) answered=\(answered)")
    }

    /// A binding that publishes into a real set, `inet replay allow4`, made in this process's
    /// network namespace (`cold-nft` and `hot-nft`).
    static func firewall() async throws -> FirewallBinding {
        let publisher = NftablesSetPublisher(namespaces: [nil], clock: clock, logger: Logger(label: "replay"))
        let target = SetTarget(netns: nil, family: "inet", table: "replay", set: "allow4", isIPv6: false)
        try await publisher.prepare([target], create: true)
        return FirewallBinding(
            publisher: publisher, ipv4: target, ipv6: nil, minTTL: 60, maxTTL: 86400, grace: 30, admitPrivate: false)
    }

    /// An upstream's answer to an A question: one record with an address made from the query ID
    /// and a counter, TTL 300; nil for anything else.
    nonisolated(unsafe) static var served: UInt32 = 0

    static func reply(to query: UnsafeRawBufferPointer) -> [UInt8]? {
        guard query.count >= 17 else { return nil }
        var end = 12
        while end < query.count, query[end] != 0 { end += Int(query[end]) + 1 }
        end += 5  // the root label, QTYPE and QCLASS
        guard end <= query.count, query[end - 4] == 0, query[end - 3] == 1 else { return nil }
        served &+= 1
        var reply = [UInt8](query[0..<end])
        reply[2] = 0x81  // QR, RD
        reply[3] = 0x80  // RA
        reply[7] = 1  // ANCOUNT 1
        reply[8] = 0
        reply[9] = 0
        reply[10] = 0
        reply[11] = 0
        let address = 0xC612_0000 | (served & 0xFFFF)  // 198.18.0.0/16
        reply += [0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0x01, 0x2C, 0, 4]
        reply += [UInt8(address >> 24), UInt8(address >> 16 & 0xFF), UInt8(address >> 8 & 0xFF), UInt8(address & 0xFF)]
        return reply
    }

    /// Sends `count` A queries for distinct names to 127.0.0.1:`port`, `window` at a time, and
    /// counts the answers (NOERROR with an answer record).
    static func query(port: UInt16, count: Int) throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw DatagramError(operation: "socket", code: errno) }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { throw DatagramError(operation: "connect", code: errno) }
        var answered = 0
        var buffer = [UInt8](repeating: 0, count: 1500)
        var next = 0
        while next < count {
            let batch = min(window, count - next)
            for i in next..<(next + batch) {
                let name = try DNSName("h\(i).allowed.test")
                let bytes = DNSMessage.query(id: UInt16(i & 0xFFFF), DNSQuestion(name: name, type: .a)).encoded()
                _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            }
            for _ in 0..<batch {
                let received = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard received >= 12 else { throw DatagramError(operation: "recv", code: errno) }
                if buffer[3] & 0x0F == 0 && buffer[7] > 0 { answered += 1 }
            }
            next += batch
        }
        return answered
    }
}
