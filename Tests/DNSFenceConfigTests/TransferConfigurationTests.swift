import DNSFenceConfig
import DNSFenceCore
import DNSFenceTransfer
import Testing

@Suite("Configuration: policy zones from primaries")
struct TransferConfigurationTests {
    static let secret = "pDPb0OsG3ZMoYXQ0UXQbTRwzlXeDwTugaLOjuBJvnIA="
    static let zone = "$TTL 60\n@ SOA a. b. 7 2 3 4 5\nok.test CNAME rpz-passthru.\n"

    /// Zones served from `zones` (zone → text, or nil: not transferred yet).
    struct Zones: ZoneProvider {
        var zones: [String: String?]
        func state(of source: ZoneTransferSource) -> ZoneState {
            guard let text = zones[source.zone] ?? nil else { return .unavailable("not yet", text: nil) }
            return .serving("$ORIGIN \(source.zone)\n" + text)
        }
    }

    static func compile(_ zones: String, provider: Zones = Zones(zones: ["sandbox.rpz.": zone]))
        throws(ConfigurationError)
        -> CompiledConfiguration
    {
        let yaml = """
            listen: [{ address: 127.0.0.1:5353, policy: p }]
            upstreams: [192.0.2.53]
            policies:
              p:
                zones:
            \(zones)
            """
        let config = try ConfigurationParser.parse(yaml, file: "t.yaml")
        let files = ["/etc/dnsfence/fleet.key": "secret: \(secret)\n", "/etc/dnsfence/bad.key": "nothing here\n"]
        return try ConfigurationCompiler(readFile: reader(files), baseDirectory: "/etc/dnsfence", zones: provider)
            .compile(config)
    }

    static func errors(_ zones: String) -> [String] {
        do {
            _ = try compile(zones)
            return []
        } catch {
            return error.diagnostics.filter { $0.severity == .error }.map(\.description)
        }
    }

    @Test("a transferred zone: primaries in order, the key read from secret-file, paths from the config's directory")
    func parsed() throws {
        let compiled = try Self.compile(
            """
                  - transfer:
                      zone: Sandbox.RPZ
                      primaries: [192.0.2.1, "[2001:db8::2]:5353"]
                      tsig: { name: fleet-key, algorithm: hmac-sha256, secret-file: fleet.key }
                      cache-dir: cache
            """)
        let source = try #require(compiled.transfers.first)
        #expect(source.zone == "sandbox.rpz.")
        #expect(source.primaries.map(\.description) == ["192.0.2.1:53", "[2001:db8::2]:5353"])
        #expect(source.key == TSIGKey(name: "fleet-key", algorithm: "hmac-sha256", secret: Self.secret))
        #expect(source.cacheFile == "/etc/dnsfence/cache/sandbox.rpz.zone")
        #expect(compiled.unavailable.isEmpty)
        let policy = try #require(compiled.selector.select(client: IPAddress("127.0.0.1")!, listenerPolicy: "p"))
        #expect(policy.rules.count == 1)
    }

    @Test("a zone not transferred yet: the policy compiles and fails closed, with a warning")
    func notYet() throws {
        let compiled = try Self.compile(
            "      - transfer: { zone: sandbox.rpz, primaries: [192.0.2.1] }",
            provider: Zones(zones: ["sandbox.rpz.": nil]))
        #expect(compiled.unavailable["p"] == "not yet")
        #expect(compiled.warnings.contains { $0.description.contains("policy 'p' fails closed: not yet") })
    }

    @Test("mistakes are reported at their line")
    func mistakes() {
        #expect(
            Self.errors("      - transfer: { primaries: [192.0.2.1] }")
                == ["t.yaml:6:19: error: transfer needs 'zone' (the policy zone's name) and 'primaries'"])
        #expect(
            Self.errors("      - transfer: { zone: sandbox.rpz }")
                == ["t.yaml:6:19: error: transfer of sandbox.rpz. needs 'primaries' (addresses of the primary servers)"]
        )
        #expect(
            Self.errors("      - transfer: { zone: sandbox.rpz, primaries: [not-an-address] }").first?.contains(
                "'not-an-address' is not an address") == true)
        #expect(
            Self.errors("      - transfer: { zone: sandbox.rpz, primaries: [192.0.2.1], tsig: { name: k } }").first?
                .contains("tsig needs 'name' and 'secret-file'") == true)
        #expect(
            Self.errors(
                "      - transfer: { zone: sandbox.rpz, primaries: [192.0.2.1], tsig: { name: k, algorithm: hmac-md5, secret-file: fleet.key } }"
            ).first?.contains("tsig algorithm must be one of hmac-sha256") == true)
        #expect(
            Self.errors(
                "      - transfer: { zone: sandbox.rpz, primaries: [192.0.2.1], tsig: { name: k, secret-file: bad.key } }"
            )
                == [
                    "t.yaml:6: error: tsig secret-file '/etc/dnsfence/bad.key' holds no base64 secret of at least "
                        + "16 bytes (bare, or as 'keymgr -t' or 'tsig-keygen' print it)"
                ])
        #expect(
            Self.errors(
                "      - transfer: { zone: sandbox.rpz, primaries: [192.0.2.1], tsig: { name: k, secret-file: none.key } }"
            ).first?.contains("cannot read tsig secret-file '/etc/dnsfence/none.key'") == true)
        #expect(
            Self.errors("      - transfer: { zone: sandbox.rpz, primary: [192.0.2.1] }").contains {
                $0.contains("unknown key 'primary' in transfer; known keys: zone, primaries, tsig, cache-dir")
            })
        #expect(
            Self.errors("      - { transfers: { zone: sandbox.rpz, primaries: [192.0.2.1] } }").first?.contains(
                "unknown key 'transfers' in a zone entry") == true)
    }
}
