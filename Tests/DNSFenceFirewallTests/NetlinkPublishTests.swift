import DNSFenceCore
import Foundation
import Logging
import Testing

@testable import DNSFenceFirewall

/// The netlink path against the kernel: real sets in a network namespace the test creates.
/// Needs root (CI runs as root); skipped elsewhere because namespaces and nftables need
/// CAP_SYS_ADMIN and CAP_NET_ADMIN.
@Suite(
    "nftables publishing over netlink", .enabled(if: getuid() == 0, "needs root for network namespaces and nftables"))
struct NetlinkPublishTests {
    /// Runs a shell command and returns its output; throws if it fails.
    @discardableResult
    static func sh(_ script: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw ScriptFailed(script: script, output: output) }
        return output
    }

    struct ScriptFailed: Error { var script: String, output: String }

    /// Seconds left for `address` in `set`, from `nft list set`.
    static func expiresIn(_ netns: String, _ set: String, _ address: String) throws -> UInt32? {
        let listing = NftablesCommand.parseListing(try sh("ip netns exec \(netns) nft list set inet t \(set)"))
        return listing.elements.first { $0.address == IPAddress(address) }?.expiresIn
    }

    /// A fresh namespace (deleted by the caller's `defer`) with the IPv4 and IPv6 sets of table
    /// `inet t` that `publisher` creates in it.
    struct Namespace {
        let name = "dfp-\(String(UInt32.random(in: 0..<UInt32.max), radix: 16))"
        var path: String { "/run/netns/\(name)" }
        var v4: SetTarget { SetTarget(netns: path, family: "inet", table: "t", set: "a4", isIPv6: false) }
        var v6: SetTarget { SetTarget(netns: path, family: "inet", table: "t", set: "a6", isIPv6: true) }

        init() throws { try NetlinkPublishTests.sh("ip netns add \(name)") }

        func delete() { _ = try? NetlinkPublishTests.sh("ip netns del \(name)") }

        func publisher(shadowTrustSeconds: UInt64 = 10, clock: @escaping NftablesSetPublisher.Clock) async throws
            -> NftablesSetPublisher
        {
            let publisher = NftablesSetPublisher(
                namespaces: [path], shadowTrustSeconds: shadowTrustSeconds, clock: clock, logger: Logger(label: "test"))
            try await publisher.prepare([v4, v6], create: true)
            return publisher
        }
    }

    @Test("elements land with their timeouts, are extended, and refusals are specific")
    func publish() async throws {
        let namespace = try Namespace()
        defer { namespace.delete() }
        let (netns, path, v4, v6) = (namespace.name, namespace.path, namespace.v4, namespace.v6)
        let publisher = try await namespace.publisher(clock: { UInt64(Date().timeIntervalSince1970) })

        // Seconds since `start`, rounded up, plus one: how far a listing may have counted down
        // (CI runs many tests at once, so a listing can come seconds after the commit).
        func waited(since start: Date) -> UInt32 { UInt32(Date().timeIntervalSince(start).rounded(.up)) + 1 }

        var start = Date()
        try await publisher.publish([
            SetElement(target: v4, address: IPAddress("192.0.2.1")!, timeout: 100),
            SetElement(target: v4, address: IPAddress("192.0.2.2")!, timeout: 100),
            SetElement(target: v6, address: IPAddress("2001:db8::1")!, timeout: 100),
        ])
        let first = try #require(try Self.expiresIn(netns, "a4", "192.0.2.1"))
        let six = try #require(try Self.expiresIn(netns, "a6", "2001:db8::1"))
        let early = waited(since: start)
        #expect(first <= 100 && first >= 100 - early)
        #expect(six <= 100 && six >= 100 - early)
        #expect(try Self.expiresIn(netns, "a4", "192.0.2.2") != nil)

        // A longer timeout for an element that is there restarts its timer with the new one
        // (without the restart it would have under 100 s left).
        start = Date()
        try await publisher.publish([SetElement(target: v4, address: IPAddress("192.0.2.1")!, timeout: 300)])
        let extended = try #require(try Self.expiresIn(netns, "a4", "192.0.2.1"))
        #expect(extended <= 300 && extended >= 300 - waited(since: start) && extended > 100)

        // A set that does not exist: the kernel refuses, and says so.
        let missing = SetTarget(netns: path, family: "inet", table: "t", set: "gone", isIPv6: false)
        await #expect(throws: PublishError.rejected("inet t gone: no such table or set")) {
            try await publisher.publish([SetElement(target: missing, address: IPAddress("192.0.2.3")!, timeout: 10)])
        }

        // A full set refuses the whole transaction: no element of it lands.
        try Self.sh("ip netns exec \(netns) nft 'add set inet t small { type ipv4_addr; size 1; flags timeout; }'")
        let small = SetTarget(netns: path, family: "inet", table: "t", set: "small", isIPv6: false)
        await #expect(throws: PublishError.rejected("inet t small: set is full")) {
            try await publisher.publish([
                SetElement(target: small, address: IPAddress("192.0.2.4")!, timeout: 10),
                SetElement(target: small, address: IPAddress("192.0.2.5")!, timeout: 10),
            ])
        }
        #expect(try Self.expiresIn(netns, "small", "192.0.2.4") == nil)
        #expect(publisher.statistics.batches == 2)

        // A batch is one transaction; when one request in it is refused, the others still land.
        let outcomes = await withCheckedContinuation { continuation in
            publisher.publish(batch: [
                [SetElement(target: v4, address: IPAddress("192.0.2.6")!, timeout: 50)],
                [SetElement(target: missing, address: IPAddress("192.0.2.7")!, timeout: 50)],
                [SetElement(target: v6, address: IPAddress("2001:db8::6")!, timeout: 50)],
            ]) { continuation.resume(returning: $0) }
        }
        #expect(outcomes == [nil, .rejected("inet t gone: no such table or set"), nil])
        #expect(try Self.expiresIn(netns, "a4", "192.0.2.6") != nil)
        #expect(try Self.expiresIn(netns, "a6", "2001:db8::6") != nil)
        let before = publisher.statistics.batches
        _ = await withCheckedContinuation { continuation in
            publisher.publish(batch: [
                [SetElement(target: v4, address: IPAddress("192.0.2.8")!, timeout: 50)],
                [SetElement(target: v6, address: IPAddress("2001:db8::8")!, timeout: 50)],
            ]) { continuation.resume(returning: $0) }
        }
        #expect(publisher.statistics.batches == before + 1)  // both in one transaction
    }

    /// Polls `condition` for up to ten seconds (CI runs many tests at once).
    static func eventually(_ condition: () -> Bool) async -> Bool {
        for _ in 0..<200 {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return condition()
    }

    @Test("deletions by others are seen: a deleted, flushed or dropped element is published again")
    func followsDeletions() async throws {
        let namespace = try Namespace()
        defer { namespace.delete() }
        let (netns, v4, v6) = (namespace.name, namespace.v4, namespace.v6)
        // A clock that stands still: with a real one, a second passing between a commit and the
        // check would make the next answer extend the timeout (needsCommit true by design).
        let publisher = try await namespace.publisher(shadowTrustSeconds: 3600, clock: { 1_000_000 })
        let one = SetElement(target: v4, address: IPAddress("192.0.2.1")!, timeout: 300)
        let two = SetElement(target: v4, address: IPAddress("192.0.2.2")!, timeout: 300)
        let six = SetElement(target: v6, address: IPAddress("2001:db8::1")!, timeout: 300)
        try await publisher.publish([one, two, six])
        #expect(!publisher.needsCommit([one]) && !publisher.needsCommit([two]) && !publisher.needsCommit([six]))

        try Self.sh("ip netns exec \(netns) nft delete element inet t a4 '{ 192.0.2.1 }'")
        #expect(await Self.eventually { publisher.needsCommit([one]) })
        #expect(!publisher.needsCommit([two]))  // only what was deleted

        try await publisher.publish([one])
        try Self.sh("ip netns exec \(netns) nft flush set inet t a4")
        #expect(await Self.eventually { publisher.needsCommit([one]) && publisher.needsCommit([two]) })
        #expect(!publisher.needsCommit([six]))

        try Self.sh("ip netns exec \(netns) nft delete table inet t")
        #expect(await Self.eventually { publisher.needsCommit([six]) })
    }

    @Test(
        "our commits build no notifications (the monitor is out of the group meanwhile); others' changes still arrive")
    func monitorQuietDuringOwnCommits() async throws {
        let namespace = try Namespace()
        defer { namespace.delete() }
        let publisher = try await namespace.publisher(clock: { 1_000_000 })
        #expect(await Self.eventually { publisher.monitorListens(in: namespace.path) })
        try await Task.sleep(for: .milliseconds(100))  // what setup caused, drained
        let before = publisher.statistics.notifications
        for i in 1...20 {
            try await publisher.publish([
                SetElement(target: namespace.v4, address: .v4(0xC000_0200 + UInt32(i)), timeout: 300),
                SetElement(target: namespace.v6, address: .v6(high: 0x2001_0DB8 << 32, low: UInt64(i)), timeout: 300),
            ])
        }
        // A notification would have been queued before the commit returned.
        try await Task.sleep(for: .milliseconds(300))
        #expect(publisher.statistics.batches >= 20)
        #expect(publisher.statistics.notifications == before)
        try Self.sh("ip netns exec \(namespace.name) nft add element inet t a4 '{ 198.51.100.1 timeout 60s }'")
        #expect(await Self.eventually { publisher.statistics.notifications > before })
    }

    @Test(
        "a deletion by someone else while the monitor is out of the group is not missed",
        arguments: [NetnsWorker.QuietPhase.beforeBatch, .afterBatch])
    func deletionInTheGap(_ phase: NetnsWorker.QuietPhase) async throws {
        let namespace = try Namespace()
        defer { namespace.delete() }
        // A clock that stands still and a long trust: only the deletion can make `one` needed again.
        let publisher = try await namespace.publisher(shadowTrustSeconds: 3600, clock: { 1_000_000 })
        #expect(await Self.eventually { publisher.monitorListens(in: namespace.path) })
        let one = SetElement(target: namespace.v4, address: IPAddress("192.0.2.1")!, timeout: 300)
        try await publisher.publish([one])
        #expect(!publisher.needsCommit([one]))
        let worker = try #require(publisher.worker(for: namespace.path))
        let name = namespace.name
        worker.whileQuiet.withLock {
            $0 = { at in
                guard at == phase else { return }
                _ = try? NetlinkPublishTests.sh("ip netns exec \(name) nft delete element inet t a4 '{ 192.0.2.1 }'")
            }
        }
        let other = SetElement(target: namespace.v4, address: IPAddress("192.0.2.9")!, timeout: 300)
        try await publisher.publish([other])
        worker.whileQuiet.withLock { $0 = nil }
        #expect(try Self.expiresIn(name, "a4", "192.0.2.1") == nil)  // it really is gone
        #expect(try Self.expiresIn(name, "a4", "192.0.2.9") != nil)  // and ours landed
        #expect(await Self.eventually { publisher.needsCommit([one]) })
    }
}
