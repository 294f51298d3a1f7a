public import DNSFenceCore

/// How one policy publishes: the publisher, its sets and the TTL coherence settings; and the
/// one answer to "which of an answer's addresses must be committed before it may go, and for
/// how long" (``elements(of:elapsed:)``, ``allowsRelease(of:elapsed:)``), for fresh answers and
/// cache hits alike.
public struct FirewallBinding: Sendable {
    /// The fields, in one immutable object: a binding is copied into every forward and read on
    /// every hit under a firewall, and one reference is cheaper to copy than seven fields.
    private final class Fields: Sendable {
        let publisher: any SetPublisher
        let ipv4: SetTarget?
        let ipv6: SetTarget?
        let minTTL: UInt32
        let maxTTL: UInt32
        let grace: UInt32
        let admitPrivate: Bool
        let commitTimeout: Duration
        let revokesConnections: Bool
        let publishesLocal: Bool

        init(
            publisher: any SetPublisher, ipv4: SetTarget?, ipv6: SetTarget?, minTTL: UInt32, maxTTL: UInt32,
            grace: UInt32, admitPrivate: Bool, commitTimeout: Duration, revokesConnections: Bool, publishesLocal: Bool
        ) {
            self.publisher = publisher
            self.ipv4 = ipv4
            self.ipv6 = ipv6
            self.minTTL = minTTL
            self.maxTTL = maxTTL
            self.grace = grace
            self.admitPrivate = admitPrivate
            self.commitTimeout = commitTimeout
            self.revokesConnections = revokesConnections
            self.publishesLocal = publishesLocal
        }
    }

    private let fields: Fields

    public var publisher: any SetPublisher { fields.publisher }
    public var ipv4: SetTarget? { fields.ipv4 }
    public var ipv6: SetTarget? { fields.ipv6 }
    /// Element timeout = clamp(TTL, minTTL, maxTTL) + grace; the client never gets a TTL above maxTTL.
    public var minTTL: UInt32 { fields.minTTL }
    public var maxTTL: UInt32 { fields.maxTTL }
    public var grace: UInt32 { fields.grace }
    public var admitPrivate: Bool { fields.admitPrivate }
    /// Longest wait for a commit before the client gets SERVFAIL.
    public var commitTimeout: Duration { fields.commitTimeout }
    /// Whether revoking an element also cuts the flows established to its address
    /// (`revoke: connections`).
    public var revokesConnections: Bool { fields.revokesConnections }
    /// Whether local data's addresses are published too (`publish-local`, default true).
    public var publishesLocal: Bool { fields.publishesLocal }
    /// The sets, IPv4 first.
    public var targets: [SetTarget] { [fields.ipv4, fields.ipv6].compactMap { $0 } }

    public init(
        publisher: any SetPublisher, ipv4: SetTarget?, ipv6: SetTarget?, minTTL: UInt32, maxTTL: UInt32,
        grace: UInt32, admitPrivate: Bool, commitTimeout: Duration = .seconds(1), revokesConnections: Bool = false,
        publishesLocal: Bool = true
    ) {
        fields = Fields(
            publisher: publisher, ipv4: ipv4, ipv6: ipv6, minTTL: minTTL, maxTTL: maxTTL, grace: grace,
            admitPrivate: admitPrivate, commitTimeout: commitTimeout, revokesConnections: revokesConnections,
            publishesLocal: publishesLocal)
    }

    /// How long an address from a record with `ttl` seconds left stays in its set.
    public func elementTimeout(ttl: UInt32) -> UInt32 {
        min(max(ttl, minTTL), maxTTL) + grace
    }

    /// The set for addresses of this family, if the binding has one.
    @inline(__always)
    public func target(ipv6: Bool) -> SetTarget? { ipv6 ? fields.ipv6 : fields.ipv4 }

    /// Whether `address` may be handed out under this binding at all: its family has a set and
    /// the admission filter lets it in.
    public func admits(_ address: IPAddress) -> Bool {
        target(ipv6: !address.isIPv4) != nil && AddressAdmission.admits(address, admitPrivate: admitPrivate)
    }

    /// Whether an answer with `addresses`, `elapsed` seconds after they were stored, may go out
    /// now: every address in its set for long enough (as ``elements(of:elapsed:)`` and the
    /// publisher's `needsCommit` would say, without building the array).
    /// `reason` is recorded on the elements that are there already (see ``SetElement/reason``).
    public func allowsRelease(of addresses: [AnswerAddress], elapsed: UInt32, reason: UInt64 = 0) -> Bool {
        for published in addresses {
            guard let target = target(ipv6: !published.address.isIPv4) else { continue }
            let ttl = published.ttl > elapsed ? published.ttl - elapsed : 0
            let element = SetElement(
                target: target, address: published.address, timeout: elementTimeout(ttl: ttl), reason: reason)
            if publisher.needsCommit(element) { return false }
        }
        return true
    }

    /// The elements `addresses` need, `elapsed` seconds after they were stored, with timeouts
    /// from their aged TTLs.
    public func elements(of addresses: [AnswerAddress], elapsed: UInt32, reason: UInt64 = 0) -> [SetElement] {
        var elements: [SetElement] = []
        elements.reserveCapacity(addresses.count)
        for published in addresses {
            guard let target = target(ipv6: !published.address.isIPv4) else { continue }
            let ttl = published.ttl > elapsed ? published.ttl - elapsed : 0
            elements.append(
                SetElement(
                    target: target, address: published.address, timeout: elementTimeout(ttl: ttl), reason: reason))
        }
        return elements
    }
}
