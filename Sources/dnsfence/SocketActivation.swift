import DNSFenceConfig
import DNSFenceCore
import DNSFenceServe
import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// Sockets passed by systemd (or `systemd-socket-activate`) through `LISTEN_FDS`, from
/// descriptor 3, meant for this process (`LISTEN_PID`), with their `LISTEN_FDNAMES`.
struct SocketActivation {
    struct Passed {
        var fd: Int32
        var isStream: Bool
        var endpoint: Endpoint
        var name: String?
    }

    var sockets: [Passed] = []
    /// Descriptors passed that are not inet UDP or TCP sockets (reported, not used).
    var unusable: [String] = []

    init(environment: [String: String]) {
        guard let pid = environment["LISTEN_PID"].flatMap(Int32.init), pid == getpid(),
            let count = environment["LISTEN_FDS"].flatMap(Int32.init), count > 0
        else { return }
        let names = environment["LISTEN_FDNAMES"].map { $0.split(separator: ":", omittingEmptySubsequences: false) }
        for index in 0..<count {
            let fd = 3 + index
            let name = names.flatMap { Int(index) < $0.count ? String($0[Int(index)]) : nil }
            var type: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) == 0,
                type == Int32(SOCK_DGRAM.rawValue) || type == Int32(SOCK_STREAM.rawValue),
                let endpoint = Self.localEndpoint(fd)
            else {
                unusable.append("descriptor \(fd)\(name.map { " (\($0))" } ?? ""): not an inet UDP or TCP socket")
                continue
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            sockets.append(
                Passed(fd: fd, isStream: type == Int32(SOCK_STREAM.rawValue), endpoint: endpoint, name: name))
        }
    }

    /// The address a socket is bound to.
    static func localEndpoint(_ fd: Int32) -> Endpoint? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0 else { return nil }
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafeBytes(of: storage) { raw -> Endpoint? in
                let address = raw.load(as: sockaddr_in.self)
                return Endpoint(
                    address: .v4(UInt32(bigEndian: address.sin_addr.s_addr)), port: UInt16(bigEndian: address.sin_port))
            }
        case AF_INET6:
            return withUnsafeBytes(of: storage) { raw -> Endpoint? in
                var address = raw.load(as: sockaddr_in6.self)
                guard let ip = withUnsafeBytes(of: &address.sin6_addr, { IPAddress(bytes: $0) }) else { return nil }
                return Endpoint(address: ip, port: UInt16(bigEndian: address.sin6_port))
            }
        default:
            return nil
        }
    }

    /// The listeners to serve: each configured listener takes the passed sockets bound to its
    /// address (or named after it in `LISTEN_FDNAMES`); when none of them takes any, the passed
    /// sockets replace the configured listeners (the one-liner `systemd-socket-activate -l
    /// ADDR dnsfence serve --allow NAME`), with the configured listeners' policy if they share one.
    func listeners(for configured: [ListenerConfiguration]) throws -> [DNSServer.Listener] {
        func socketAddress(_ endpoint: Endpoint) throws -> SocketAddress {
            try SocketAddress(ipAddress: endpoint.address.description, port: Int(endpoint.port))
        }
        func matches(_ passed: Passed, _ listener: ListenerConfiguration) -> Bool {
            passed.endpoint == listener.endpoint || passed.name == listener.endpoint.description
        }
        guard !sockets.isEmpty else {
            return try configured.map(ServerRuntime.listener)
        }
        if sockets.contains(where: { passed in configured.contains { matches(passed, $0) } }) {
            return try configured.map { listener in
                let udp = sockets.first { !$0.isStream && matches($0, listener) }
                let tcp = sockets.first { $0.isStream && matches($0, listener) }
                return DNSServer.Listener(
                    address: try socketAddress(listener.endpoint), policy: listener.policy, udpDescriptor: udp?.fd,
                    tcpDescriptor: tcp?.fd)
            }
        }
        let policies = Set(configured.map(\.policy))
        let policy = policies.count == 1 ? policies.first! : nil
        var byEndpoint: [Endpoint: (udp: Int32?, tcp: Int32?)] = [:]
        for passed in sockets {
            if passed.isStream {
                byEndpoint[passed.endpoint, default: (nil, nil)].tcp = passed.fd
            } else {
                byEndpoint[passed.endpoint, default: (nil, nil)].udp = passed.fd
            }
        }
        return try byEndpoint.sorted { $0.key.description < $1.key.description }.map { endpoint, fds in
            DNSServer.Listener(
                address: try socketAddress(endpoint), policy: policy, udpDescriptor: fds.udp, tcpDescriptor: fds.tcp)
        }
    }
}
