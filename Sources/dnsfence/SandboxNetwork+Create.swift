import DNSFenceCore

#if canImport(Glibc)
    import Glibc
#endif

extension SandboxNetwork {
    /// Whether sandboxes get IPv6: the host has it, and forwarding it is on already or would
    /// not stop the host from taking its default route from router advertisements (with
    /// forwarding on, the kernel ignores them). Nil: yes; else why not.
    static func hostIPv6() -> String? {
        func read(_ path: String) -> String {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return "" }
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 16)
            let got = Glibc.read(fd, &buffer, buffer.count)
            return got > 0 ? String(decoding: buffer[0..<got], as: UTF8.self).filter { !$0.isWhitespace } : ""
        }
        guard read("/proc/sys/net/ipv6/conf/all/disable_ipv6") == "0" else { return "IPv6 is disabled on the host" }
        if read("/proc/sys/net/ipv6/conf/all/forwarding") == "1" { return nil }
        let learned = Subprocess.run("/usr/sbin/ip", ["-6", "route", "show", "default", "proto", "ra"]).output
        guard learned.isEmpty else {
            return "the host's IPv6 default route comes from router advertisements, which IPv6 forwarding would stop"
        }
        return nil
    }

    /// Makes everything; on failure the caller removes what was made (``remove(id:)``).
    func create() throws(Subprocess.Failure) {
        let ip = "/usr/sbin/ip"
        let (gw, me) = (gateway.description, address.description)
        let host6 = ipv6 ? "addr add \(gateway6)/64 dev \(hostLink) nodad\n" : ""
        try Subprocess.check(
            "creating the namespace and link", ip, ["-batch", "-"],
            input: """
                netns add \(netns)
                link add \(hostLink) type veth peer name eth0 netns \(netns)
                addr add \(gw)/30 dev \(hostLink)
                \(host6)link set \(hostLink) up

                """)
        let sandbox6 = ipv6 ? "addr add \(address6)/64 dev eth0 nodad\n" : ""
        let route6 = ipv6 ? "route add ::/0 via \(gateway6)\n" : ""
        try Subprocess.check(
            "configuring the sandbox's link", ip, ["-n", netns, "-batch", "-"],
            input: """
                link set lo up
                addr add \(me)/30 dev eth0
                \(sandbox6)link set eth0 up
                route add default via \(gw)
                \(route6)
                """)
        try writeFile("/proc/sys/net/ipv4/ip_forward", "1\n")
        if ipv6 { try writeFile("/proc/sys/net/ipv6/conf/all/forwarding", "1\n") }
        // Locally published ports (127.0.0.1:PORT) are DNATed out of this link.
        if !published.isEmpty { try writeFile("/proc/sys/net/ipv4/conf/\(hostLink)/route_localnet", "1\n") }
        try Subprocess.check("loading the host rules", "/usr/sbin/nft", ["-f", "-"], input: hostRules)
        try Subprocess.check(
            "loading the sandbox's rules", ip, ["netns", "exec", netns, "/usr/sbin/nft", "-f", "-"], input: sandboxRules
        )
        try writeFile(resolvConf, "# dnsfence run: the sandbox's only resolver\nnameserver \(gw)\n")
    }

    /// Forwarding and masquerading for this link only, and the published ports' DNAT (from
    /// other hosts, and from this host's own addresses including 127.0.0.1).
    var hostRules: String {
        var dnat: [String] = []
        for port in published {
            let proto = port.udp ? "udp" : "tcp"
            let destination = port.hostAddress.map { "ip daddr \($0) " } ?? "meta nfproto ipv4 fib daddr type local "
            dnat.append("\(destination)\(proto) dport \(port.hostPort) dnat ip to \(address):\(port.port)")
        }
        let rules = dnat.map { "        " + $0 }.joined(separator: "\n")
        return """
            table inet \(table) {
                chain prerouting {
                    type nat hook prerouting priority dstnat; policy accept;
            \(rules)
                }
                chain output {
                    type nat hook output priority -100; policy accept;
            \(rules)
                }
                chain postrouting {
                    type nat hook postrouting priority srcnat; policy accept;
                    ip saddr \(address) oifname != "\(hostLink)" masquerade
                    ip6 saddr \(address6) oifname != "\(hostLink)" masquerade
                    oifname "\(hostLink)" ip saddr 127.0.0.0/8 masquerade
                }
                chain forward {
                    type filter hook forward priority filter; policy accept;
                    iifname "\(hostLink)" ip saddr != \(address) drop
                    iifname "\(hostLink)" ip6 saddr != \(address6) drop
                }
            }

            """
    }

    /// Egress: loopback, replies, DNS to dnsfence, and the sets; everything else rejected
    /// (admin-prohibited, so programs fail at once). Ingress: replies and the published ports.
    var sandboxRules: String {
        let tcp = published.filter { !$0.udp }.map { "\($0.port)" }
        let udp = published.filter(\.udp).map { "\($0.port)" }
        var ingress: [String] = []
        if !tcp.isEmpty { ingress.append("tcp dport { \(tcp.joined(separator: ", ")) } accept") }
        if !udp.isEmpty { ingress.append("udp dport { \(udp.joined(separator: ", ")) } accept") }
        return """
            table inet dnsfence {
                set allow4 { type ipv4_addr; flags timeout; }
                set allow6 { type ipv6_addr; flags timeout; }
                chain output {
                    type filter hook output priority filter; policy accept;
                    oifname "lo" accept
                    ct state established,related accept
                    ip daddr \(gateway) udp dport 53 accept
                    ip daddr \(gateway) tcp dport 53 accept
                    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept
                    ip daddr @allow4 accept
                    ip6 daddr @allow6 accept
                    reject with icmpx type admin-prohibited
                }
                chain input {
                    type filter hook input priority filter; policy drop;
                    iifname "lo" accept
                    ct state established,related accept
                    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept
                    \(ingress.joined(separator: "\n            "))
                }
            }

            """
    }
}
