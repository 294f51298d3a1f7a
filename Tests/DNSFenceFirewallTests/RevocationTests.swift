import DNSFenceCore
import Testing

@testable import DNSFenceFirewall

/// Reasons on set elements, and what a reload may revoke.
@Suite("revocation by reason")
struct RevocationTests {
    static let target = SetTarget(netns: nil, family: "inet", table: "t", set: "allow4", isIPv6: false)

    static func element(_ address: String, reason: UInt64, timeout: UInt32 = 300) -> SetElement {
        SetElement(target: target, address: IPAddress(address)!, timeout: timeout, reason: reason)
    }

    @Test("an address shared by two names stays until both are refused; one without a reason stays")
    func sharedAddress() async throws {
        let clock = ManualClock()
        let publisher = InMemorySetPublisher(clock: { clock.now }, shadowTrustSeconds: 3600)
        // Name 1 publishes .1 and .2; name 2 hands out .2 again (already there: no commit, but
        // its reason is recorded); .3 comes with no reason at all.
        try await publisher.publish([Self.element("192.0.2.1", reason: 1), Self.element("192.0.2.2", reason: 1)])
        #expect(!publisher.needsCommit(Self.element("192.0.2.2", reason: 2)))
        try await publisher.publish([Self.element("192.0.2.3", reason: 0)])

        // Reason 1 refused: .1 goes; .2 stays (reason 2); .3 stays (no reason).
        let first = try await publisher.revoke(in: [Self.target]) { $0 != 1 }
        #expect(first.map(\.address) == [IPAddress("192.0.2.1")!])
        #expect(publisher.remaining(IPAddress("192.0.2.1")!, in: Self.target) == nil)
        #expect(publisher.remaining(IPAddress("192.0.2.2")!, in: Self.target) != nil)
        #expect(publisher.remaining(IPAddress("192.0.2.3")!, in: Self.target) != nil)

        // Both refused: .2 goes too; .3 still stays.
        let second = try await publisher.revoke(in: [Self.target]) { _ in false }
        #expect(second.map(\.address) == [IPAddress("192.0.2.2")!])
        #expect(publisher.remaining(IPAddress("192.0.2.3")!, in: Self.target) != nil)

        // A revoked address handed out again is committed again (the shadow forgot it).
        #expect(publisher.needsCommit(Self.element("192.0.2.1", reason: 3)))
    }

    @Test("expired reasons do not hold an element; other sets are not touched")
    func expiry() async throws {
        let clock = ManualClock()
        let publisher = InMemorySetPublisher(clock: { clock.now }, shadowTrustSeconds: 3600)
        let other = SetTarget(netns: nil, family: "inet", table: "t", set: "other4", isIPv6: false)
        try await publisher.publish([Self.element("192.0.2.1", reason: 1, timeout: 60)])
        try await publisher.publish([Self.element("192.0.2.1", reason: 2, timeout: 600)])
        try await publisher.publish([
            SetElement(target: other, address: IPAddress("192.0.2.9")!, timeout: 600, reason: 1)
        ])
        clock.now += 120  // reason 1 has expired on .1, reason 2 has not
        #expect(try await publisher.revoke(in: [Self.target]) { $0 == 1 }.count == 1)
        #expect(publisher.remaining(IPAddress("192.0.2.9")!, in: other) != nil)
    }
}

/// A clock the test moves.
final class ManualClock: @unchecked Sendable {
    // @unchecked Sendable: moved between steps of one test, on its thread.
    var now: UInt64 = 1_000
}
