import DNSFenceConfig
import DNSFenceCore
import Testing

@Suite("Configuration: rate limits")
struct RateLimitConfigurationTests {
    static func parse(_ section: String) throws(ConfigurationError) -> ServerConfiguration {
        try ConfigurationParser.parse(
            "listen: [127.0.0.1:5353]\nupstreams: [192.0.2.53]\npolicies: { p: { allow: [a.test] } }\n" + section,
            file: "r.yaml")
    }

    @Test("on by default with loopback exempt; settings over the defaults; off")
    func values() throws {
        #expect(try Self.parse("").rateLimits == .standard)
        #expect(RateLimits.standard.exempt.map(\.description) == ["127.0.0.0/8", "::1/128"])
        let limits = try #require(
            try Self.parse("rate-limit: { queries: 200, ipv4-prefix: 28, slip: 0, exempt: [10.0.0.0/8] }").rateLimits)
        #expect(
            limits
                == RateLimits(
                    queries: 200, burst: 200, ipv4Prefix: 28, ipv6Prefix: 56, slip: 0,
                    exempt: [IPPrefix("10.0.0.0/8")!]))
        #expect(try Self.parse("rate-limit: off").rateLimits == nil)
        #expect(RateLimits.standard.kernel, "dropped in the kernel where the filter loads")
        #expect(try Self.parse("rate-limit: { kernel: false }").rateLimits?.kernel == false)
    }

    @Test("every mistake is reported at its line")
    func errors() {
        do {
            _ = try Self.parse(
                "rate-limit: { queries: 0, burst: x, ipv4-prefix: 33, ipv6-prefix: 8, slip: -1, exempt: [10.0.0.1/8], per: 1, kernel: maybe }"
            )
            Issue.record("expected errors")
        } catch {
            #expect(
                error.diagnostics.map(\.description) == [
                    "r.yaml:4:24: error: rate-limit queries must be a whole number from 1 to 10000000, got '0'",
                    "r.yaml:4:34: error: rate-limit burst must be a whole number from 1 to 10000000, got 'x'",
                    "r.yaml:4:50: error: rate-limit ipv4-prefix must be a whole number from 8 to 32, got '33'",
                    "r.yaml:4:67: error: rate-limit ipv6-prefix must be a whole number from 16 to 64, got '8'",
                    "r.yaml:4:76: error: rate-limit slip must be a whole number from 0 to 100, got '-1'",
                    "r.yaml:4:89: error: '10.0.0.1/8' is not an address prefix like 10.200.0.0/24 (host bits must be zero)",
                    "r.yaml:4:102: error: unknown key 'per' in rate-limit; known keys: queries, burst, ipv4-prefix, ipv6-prefix, slip, exempt, kernel",
                    "r.yaml:4:118: error: rate-limit kernel must be true or false, got 'maybe'",
                ])
        }
        #expect(throws: ConfigurationError.self) { try Self.parse("rate-limit: sometimes") }
    }
}
