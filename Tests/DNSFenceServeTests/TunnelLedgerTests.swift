import DNSFenceCore
import DNSFencePolicy
import DNSFenceWire
import Synchronization
import Testing

@testable import DNSFenceServe

/// A monotonic clock in nanoseconds that only the test moves (the ledger's and the rate limiter's).
final class NanoClock: Sendable {
    let now = Atomic<UInt64>(1_000_000_000)
    func advance(seconds: Double) { now.add(UInt64(seconds * 1e9), ordering: .relaxed) }
    var read: @Sendable () -> UInt64 { { [self] in now.load(ordering: .relaxed) } }
}

/// The tunnel budget's arithmetic, on a clock the test moves.
@Suite("tunnel budgets")
struct TunnelLedgerTests {
    /// The budget of `*.tunnel.test` in a policy compiled with `budget`.
    static func budget(_ limits: TunnelBudget = .standard, pattern: String = "*.tunnel.test") throws -> RuleBudget {
        let output = try PolicyCompiler().compile(
            name: "p", sources: [PolicySource(file: "p.allow", text: "\(pattern)\nexact.test\n")], budget: limits)
        let index = try #require(output.policy.rules.rules.firstIndex { $0.isWildcard })
        return try #require(output.policy.ruleBudgets[index])
    }

    static func name(_ text: String) throws -> [UInt8] { try DNSName(text).lowercased().wire }

    static let alice = IPAddress("10.0.0.1")!
    static let bob = IPAddress("10.0.0.2")!

    @Test("deny-encoded: a label that looks like data is refused before any budget is spent; off by default")
    func encoded() throws {
        let ledger = TunnelLedger(clock: NanoClock().read)
        var limits = TunnelBudget.standard
        let tunnel = try Self.name("mzxw6ytboi4dkmrq0gx3ya1qvrcf5jtl.tunnel.test")
        let plain = try Self.name("production-eu-west-1-api.tunnel.test")
        let standard = try Self.budget(limits)
        #expect(ledger.charge(standard, policy: "p", client: Self.alice, name: tunnel) == nil)
        limits.denyEncoded = true
        let strict = try Self.budget(limits)
        #expect(ledger.charge(strict, policy: "p", client: Self.bob, name: tunnel) == .encoded)
        #expect(ledger.charge(strict, policy: "p", client: Self.bob, name: plain) == nil)
        let output = try PolicyCompiler().compile(
            name: "p", sources: [PolicySource(file: "p.allow", text: "*.tunnel.test\n")], budget: limits)
        #expect(
            output.policy.budgetText(strict, .encoded).hasSuffix("a label that looks like encoded data (deny-encoded)"))
    }

    @Test("a burst of new names, then one per names/window seconds; names seen in the window are free")
    func tokens() throws {
        let clock = NanoClock()
        let ledger = TunnelLedger(clock: clock.read)
        let budget = try Self.budget(TunnelBudget(names: 60, window: 60, burst: 10, maxLabel: 63, maxName: 100))
        for i in 0..<10 {
            #expect(
                ledger.charge(budget, policy: "p", client: Self.alice, name: try Self.name("n\(i).tunnel.test")) == nil)
        }
        #expect(
            ledger.charge(budget, policy: "p", client: Self.alice, name: try Self.name("n10.tunnel.test")) == .names)
        // Seen: free, however often.
        for _ in 0..<100 {
            #expect(
                ledger.charge(budget, policy: "p", client: Self.alice, name: try Self.name("n3.tunnel.test")) == nil)
        }
        // Another client has a budget of its own.
        #expect(ledger.charge(budget, policy: "p", client: Self.bob, name: try Self.name("n10.tunnel.test")) == nil)
        // One a second comes back.
        clock.advance(seconds: 1)
        #expect(ledger.charge(budget, policy: "p", client: Self.alice, name: try Self.name("n10.tunnel.test")) == nil)
        #expect(
            ledger.charge(budget, policy: "p", client: Self.alice, name: try Self.name("n11.tunnel.test")) == .names)
        // After two windows unused, nothing is remembered: a name seen long ago costs again.
        clock.advance(seconds: 121)
        #expect(ledger.charge(budget, policy: "p", client: Self.alice, name: try Self.name("n0.tunnel.test")) == nil)
        for i in 100..<109 {
            #expect(
                ledger.charge(budget, policy: "p", client: Self.alice, name: try Self.name("n\(i).tunnel.test")) == nil)
        }
        #expect(
            ledger.charge(budget, policy: "p", client: Self.alice, name: try Self.name("n200.tunnel.test")) == .names)
    }

    @Test("IPv6 clients are counted by /64: another address in the prefix is the same client")
    func ipv6() throws {
        let ledger = TunnelLedger(clock: NanoClock().read)
        let budget = try Self.budget(TunnelBudget(names: 1, window: 60, burst: 1, maxLabel: 63, maxName: 100))
        #expect(
            ledger.charge(budget, policy: "p", client: IPAddress("2001:db8::1")!, name: try Self.name("a.tunnel.test"))
                == nil)
        #expect(
            ledger.charge(
                budget, policy: "p", client: IPAddress("2001:db8::ffff:2")!, name: try Self.name("b.tunnel.test"))
                == .names)
        #expect(
            ledger.charge(
                budget, policy: "p", client: IPAddress("2001:db8:0:1::1")!, name: try Self.name("b.tunnel.test"))
                == nil)
    }

    @Test("labels and names longer than the limits are refused, and cost nothing")
    func lengths() throws {
        let ledger = TunnelLedger(clock: NanoClock().read)
        let budget = try Self.budget(TunnelBudget(names: 1, window: 60, burst: 1, maxLabel: 10, maxName: 20))
        let long = String(repeating: "a", count: 11)
        #expect(
            ledger.charge(budget, policy: "p", client: Self.alice, name: try Self.name("\(long).tunnel.test")) == .label
        )
        // 21 characters below the wildcard (dots count), each label short.
        #expect(
            ledger.charge(
                budget, policy: "p", client: Self.alice, name: try Self.name("aaaaaa.bbbbbb.cccccc.d.tunnel.test"))
                == .name)
        // 20: allowed, and it is the one token.
        #expect(
            ledger.charge(
                budget, policy: "p", client: Self.alice, name: try Self.name("aaaaaa.bbbbbb.cccccc.tunnel.test"))
                == nil)
    }

    @Test("a full ledger drops idle clients; with none idle, a new client is refused (fail closed)")
    func capacity() throws {
        let clock = NanoClock()
        let ledger = TunnelLedger(capacity: 16, clock: clock.read)
        let budget = try Self.budget(TunnelBudget(names: 60, window: 60, burst: 10, maxLabel: 63, maxName: 100))
        var refused = 0
        for i in 0..<400 {
            let client = IPAddress.v4(0x0A00_0000 + UInt32(i))
            if ledger.charge(budget, policy: "p", client: client, name: try Self.name("x.tunnel.test")) == .clients {
                refused += 1
            }
        }
        #expect(refused > 0 && refused < 400, "some new clients are refused once every shard is full: \(refused)")
        clock.advance(seconds: 121)
        var later = 0
        for i in 1000..<1016 {
            let client = IPAddress.v4(0x0A00_0000 + UInt32(i))
            if ledger.charge(budget, policy: "p", client: client, name: try Self.name("x.tunnel.test")) == .clients {
                later += 1
            }
        }
        #expect(later < 16, "idle clients made room")
    }

    @Test("the default budget: 200 hostnames over 5 minutes, asked again and again, see no denial")
    func cdn() throws {
        let clock = NanoClock()
        let ledger = TunnelLedger(clock: clock.read)
        let budget = try Self.budget()
        var denied = 0
        // 3,000 queries over 300 s: hostname i first appears at i × 1.5 s, then names are
        // asked at random from those seen so far.
        var generator = SplitMix64(seed: 7)
        for step in 0..<3000 {
            let known = min(200, step / 15 + 1)
            let i = step % 15 == 0 ? known - 1 : Int(generator.next() % UInt64(known))
            let host = "host\(i)-\(i * 7919 % 1000).cdn.tunnel.test"
            if ledger.charge(budget, policy: "p", client: Self.alice, name: try Self.name(host)) != nil { denied += 1 }
            clock.advance(seconds: 0.1)
        }
        #expect(denied == 0)
    }

    @Test("the default budget: a flood of unique 99-character names for 60 s gets at most burst + 60 through")
    func flood() throws {
        let clock = NanoClock()
        let ledger = TunnelLedger(clock: clock.read)
        let budget = try Self.budget()
        var passed = 0
        var bytes = 0
        for step in 0..<60_000 {
            let data = String(step, radix: 32)
            let first = String(repeating: "x", count: 49 - data.count) + data  // x: not a base-32 digit
            let name = "\(first).\(String(repeating: "b", count: 49)).tunnel.test"
            if ledger.charge(budget, policy: "p", client: Self.alice, name: try Self.name(name)) == nil {
                passed += 1
                bytes += 99
            }
            clock.advance(seconds: 0.001)
        }
        #expect(passed <= 100 + 60 + 1, "\(passed)")
        #expect(Double(bytes) / 60 < 1024, "\(Double(bytes) / 60) bytes/s of names")
    }
}
