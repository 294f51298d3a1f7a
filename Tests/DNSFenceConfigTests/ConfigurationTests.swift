import DNSFenceConfig
import DNSFenceCore
import DNSFencePolicy
import DNSFenceWire
import Testing

/// In-memory files for the compiler.
func reader(_ files: [String: String]) -> ConfigurationCompiler.FileReader {
    { path in
        guard let text = files[path] else { throw FileReadError(path: path, reason: "No such file or directory") }
        return text
    }
}

let goodYAML = """
    listen:
      - address: 127.0.0.1:5353
        policy: sandbox
    upstreams:
      - address: 192.0.2.53:53
    policies:
      sandbox:
        zones: [zones/sandbox.rpz, zones/sandbox.allow]
        clients: [10.200.0.0/24]
        deny: refused
        qtypes: [A, AAAA, HTTPS]
        firewall:
          netns: /run/netns/sandbox
          table: inet dnsfence
          ipv4-set: sandbox4
          ipv6-set: sandbox6
          min-ttl: 60s
          max-ttl: 1d
          grace: 30s
    cache: { max-entries: 5000, min-ttl: 0s, max-ttl: 1h }
    metrics: { listen: 127.0.0.1:9153 }
    log: { queries: all }
    """

let zones = [
    "zones/sandbox.rpz":
        "$TTL 60\n@ SOA localhost. root.localhost. 1 3600 600 86400 60\nexample.com CNAME rpz-passthru.\n",
    "zones/sandbox.allow": "*.example.org\n",
]

@Suite("Configuration")
struct ConfigurationTests {
    @Test func parsesTheDesignExample() throws {
        let config = try ConfigurationParser.parse(goodYAML, file: "dnsfence.yaml")
        #expect(config.listeners == [ListenerConfiguration(endpoint: Endpoint("127.0.0.1:5353")!, policy: "sandbox")])
        #expect(config.upstreams == [Endpoint("192.0.2.53:53")!])
        let policy = try #require(config.policies.first)
        #expect(policy.deny == .refused)
        #expect(policy.qtypes == [.a, .aaaa, .https])
        #expect(policy.clients == [IPPrefix("10.200.0.0/24")!])
        #expect(
            policy.firewall
                == FirewallConfiguration(
                    netns: "/run/netns/sandbox", family: "inet", table: "dnsfence",
                    ipv4Set: "sandbox4", ipv6Set: "sandbox6", create: true,
                    minTTL: 60, maxTTL: 86400, grace: 30))
        #expect(config.cache == CacheConfiguration(maxEntries: 5000, minTTL: 0, maxTTL: 3600))
        #expect(config.queryLog == .all)
        let compiled = try ConfigurationCompiler(readFile: reader(zones)).compile(config)
        #expect(compiled.ruleCount == 2)
        #expect(
            compiled.selector.select(client: IPAddress("10.200.0.9")!, listenerPolicy: "sandbox")?.name == "sandbox")
    }

    @Test("unknown keys, bad values and duplicates are reported with line and column, all at once")
    func parseErrors() {
        let yaml = """
            listen:
              - address: 127.0.0.1
                polcy: sandbox
            upstreams: [192.0.2.1:53]
            policies:
              sandbox:
                deny: maybe
                mode: strict
                qtypes: [A, BOGUS]
                firewall: { table: "inet bad-name", ipv4-set: s4, revoke: flows }
            cache: { max-ttl: forever }
            """
        do {
            _ = try ConfigurationParser.parse(yaml, file: "bad.yaml")
            Issue.record("expected errors")
        } catch {
            #expect(
                error.diagnostics.map(\.description).sorted()
                    == [
                        "bad.yaml:2:14: error: '127.0.0.1' is not an address like 127.0.0.1:5353 or [::1]:5353 (the port is required)",
                        "bad.yaml:3:5: error: unknown key 'polcy' in a listener (did you mean 'policy'?); known keys: address, policy",
                        "bad.yaml:7:11: error: deny must be one of nxdomain, nodata, refused, drop, got 'maybe'",
                        "bad.yaml:8:11: error: mode must be 'enforce' or 'audit', got 'strict'",
                        "bad.yaml:9:17: error: 'BOGUS' is not a query type (A, AAAA, HTTPS, TXT, … or TYPEnnn)",
                        "bad.yaml:10:24: error: table must be 'FAMILY NAME' with FAMILY ip, ip6 or inet and NAME [A-Za-z][A-Za-z0-9_]*, got 'inet bad-name'",
                        "bad.yaml:10:63: error: revoke must be 'elements' or 'connections', got 'flows'",
                        "bad.yaml:11:19: error: max-ttl 'forever' is not a duration like 30s, 5m, 1h, 1d",
                    ].sorted())
            #expect(error.diagnostics.count == 8)
        }
    }

    @Test("a duplicated key is an error")
    func duplicateKey() {
        #expect(throws: ConfigurationError.self) {
            try ConfigurationParser.parse("cache: {}\ncache: {}\n", file: "d.yaml")
        }
    }

    @Test("YAML syntax errors carry the position libyaml reports")
    func yamlSyntax() {
        #expect(throws: ConfigurationError.self) { try ConfigurationParser.parse("listen: [\n", file: "x.yaml") }
        do {
            _ = try ConfigurationParser.parse("listen:\n  - a\n b: c\n", file: "x.yaml")
        } catch {
            #expect(error.diagnostics.first?.line == 3)
            #expect(error.diagnostics.first?.description.hasPrefix("x.yaml:3:") == true)
        }
    }

    @Test("validation: loops, unknown policies, unreadable and broken zones")
    func validation() throws {
        let yaml = """
            listen:
              - address: 127.0.0.1:5353
                policy: nosuch
            upstreams: [127.0.0.1:5353]
            policies:
              p:
                zones: [missing.allow, broken.rpz, wide.allow]
            """
        let config = try ConfigurationParser.parse(yaml, file: "v.yaml")
        let files = [
            "broken.rpz": "$TTL 60\n@ SOA a. b. 1 2 3 4 5\nx CNAME rpz-passthru.\ny A not-an-ip\n",
            "wide.allow": "*.co.uk\n",
        ]
        do {
            _ = try ConfigurationCompiler(readFile: reader(files)).compile(config)
            Issue.record("expected errors")
        } catch {
            #expect(
                error.diagnostics.map(\.description) == [
                    "v.yaml:1: error: listener 127.0.0.1:5353 names policy 'nosuch', which is not defined (defined: p)",
                    "v.yaml:4: error: upstream 127.0.0.1:5353 is dnsfence's own listener 127.0.0.1:5353: queries would loop",
                    "v.yaml:7: error: policy 'p': cannot read zone file 'missing.allow': No such file or directory",
                ])
        }
        let fixed = try ConfigurationParser.parse(yaml.replacingOccurrences("missing.allow, ", ""), file: "v.yaml")
        do {
            _ = try ConfigurationCompiler(readFile: reader(files)).compile(fixed)
        } catch {
            #expect(
                error.diagnostics.map(\.description).contains(
                    "broken.rpz:4: error: Syntax error, could not parse the RR's rdata: 'y A not-an-ip'"))
        }
    }

    @Test("no upstreams: fine for a policy of rewrites and denials, an error at a policy that forwards")
    func upstreamsOnlyWhenForwarding() throws {
        let files = [
            "proxy.rpz": "$TTL 60\n@ SOA a. b. 1 2 3 4 5\napi.example.com A 10.1.2.3\nbad.example.com CNAME .\n",
            "list.allow": "*.example.org\n",
        ]
        func compile(_ policies: String) throws(ConfigurationError) -> CompiledConfiguration {
            let yaml = "listen: [{ address: 127.0.0.1:5353, policy: p }]\nupstreams: []\npolicies:\n" + policies
            let config = try! ConfigurationParser.parse(yaml, file: "u.yaml")
            return try ConfigurationCompiler(readFile: reader(files)).compile(config)
        }
        #expect(try compile("  p:\n    zones: [proxy.rpz]\n").ruleCount == 2)
        for (policies, message) in [
            ("  p:\n    zones: [proxy.rpz, list.allow]\n", "passes names through to an upstream (*.example.org.)"),
            ("  p:\n    zones: [proxy.rpz]\n    mode: audit\n", "audits denials (audited names are forwarded)"),
        ] {
            #expect {
                _ = try compile(policies)
            } throws: { error in
                (error as? ConfigurationError)?.diagnostics.map(\.description) == [
                    "u.yaml:4: error: policy 'p' \(message), but there are no upstreams (add 'upstreams:' or --upstream)"
                ]
            }
        }
    }

    @Test("overrides: --allow builds one ad-hoc policy for every listener")
    func overrides() throws {
        var o = ConfigurationOverrides()
        o.listen = ["127.0.0.1:5310"]
        o.upstreams = ["127.0.0.53:5300"]
        o.allow = ["*.allowed.test"]
        o.nftSet4 = "inet:fence:allow4"
        let config = try o.apply(to: DefaultConfiguration.make(resolvConf: "nameserver 192.0.2.1\n"))
        #expect(config.listeners == [ListenerConfiguration(endpoint: Endpoint("127.0.0.1:5310")!, policy: "default")])
        #expect(config.upstreams == [Endpoint("127.0.0.53:5300")!])
        #expect(config.policies.map(\.inlineAllow) == [["*.allowed.test"]])
        #expect(config.policies.first?.firewall?.ipv4Set == "allow4")
        let compiled = try ConfigurationCompiler(readFile: reader([:])).compile(config)
        #expect(
            compiled.selector.select(client: IPAddress("127.0.0.1")!, listenerPolicy: "default")?
                .decide(DNSQuestion(name: try DNSName("x.allowed.test"), type: .a)).actionLabel == "pass")
        var bad = ConfigurationOverrides()
        bad.listen = ["localhost"]
        #expect(throws: ConfigurationError.self) { try bad.apply(to: DefaultConfiguration.make(resolvConf: "")) }
    }

    @Test("the default configuration drops our own address from resolv.conf")
    func defaults() {
        let config = DefaultConfiguration.make(
            resolvConf: "# x\nnameserver 127.0.0.1\nnameserver 192.0.2.1\nnameserver fe80::1%eth0\n")
        #expect(config.upstreams.map(\.description) == ["127.0.0.1:53", "192.0.2.1:53", "[fe80::1]:53"])
        #expect(config.listeners.first?.endpoint.description == "127.0.0.1:5353")
    }

    @Test("the embedded default policy is the file in zones/")
    func embeddedMatchesFile() throws {
        let path = #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
        let text = try ConfigurationLoader.readFile("/" + path + "/zones/default.allow")
        #expect(text == DefaultConfiguration.zoneText)
    }
}

extension String {
    func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
