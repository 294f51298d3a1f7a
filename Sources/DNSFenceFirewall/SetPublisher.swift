// DNSFenceFirewall: publishing answered addresses into nftables sets before the answer is
// released (DESIGN.md, "Firewall coherence"). Knows nothing about DNS messages: it gets
// addresses and timeouts.

public import DNSFenceCore
import Synchronization

/// One nftables set: where it lives and what it is called. Names are validated at
/// configuration time; ``NftablesCommand`` still refuses anything but identifiers.
public struct SetTarget: Hashable, Sendable, CustomStringConvertible {
    /// The fields, in one immutable object: a target travels in every element, which is copied
    /// several times per answer, and one reference is cheaper to copy than four strings.
    private final class Fields: Sendable {
        let netns: String?
        let family: String
        let table: String
        let set: String
        let isIPv6: Bool
        /// A hash of every field, computed once: targets key the shadow and a commit's
        /// grouping, several times per element.
        let identity: Int

        init(netns: String?, family: String, table: String, set: String, isIPv6: Bool) {
            self.netns = netns
            self.family = family
            self.table = table
            self.set = set
            self.isIPv6 = isIPv6
            var hasher = Hasher()
            hasher.combine(netns)
            hasher.combine(family)
            hasher.combine(table)
            hasher.combine(set)
            hasher.combine(isIPv6)
            identity = hasher.finalize()
        }
    }

    private let fields: Fields

    /// Network namespace path (`/run/netns/NAME`); nil is dnsfence's own.
    public var netns: String? { fields.netns }
    public var family: String { fields.family }
    public var table: String { fields.table }
    public var set: String { fields.set }
    /// Whether the set holds IPv6 addresses (`ipv6_addr`) rather than IPv4 (`ipv4_addr`).
    public var isIPv6: Bool { fields.isIPv6 }

    public init(netns: String?, family: String, table: String, set: String, isIPv6: Bool) {
        fields = Fields(netns: netns, family: family, table: table, set: set, isIPv6: isIPv6)
    }

    public var description: String { "\(netns.map { "\($0): " } ?? "")\(family) \(table) \(set)" }

    public static func == (lhs: SetTarget, rhs: SetTarget) -> Bool {
        if lhs.fields === rhs.fields { return true }
        return lhs.fields.identity == rhs.fields.identity && lhs.netns == rhs.netns && lhs.family == rhs.family
            && lhs.table == rhs.table && lhs.set == rhs.set && lhs.isIPv6 == rhs.isIPv6
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(fields.identity) }
}

/// An address to keep in a set for at least `timeout` seconds from now.
public struct SetElement: Hashable, Sendable {
    public var target: SetTarget
    public var address: IPAddress
    /// Seconds, at least 1 (a timeout of 0 would make the element permanent).
    public var timeout: UInt32
    /// Why the address is handed out: an opaque key of the caller's (dnsfence: the policy and
    /// name that were answered), kept per element until the timeout, so that a reload can
    /// revoke the elements that only names no longer allowed justified. 0: no reason given.
    public var reason: UInt64

    public init(target: SetTarget, address: IPAddress, timeout: UInt32, reason: UInt64 = 0) {
        self.target = target
        self.address = address
        self.timeout = max(timeout, 1)
        self.reason = reason
    }
}

/// Why addresses could not be published. Callers answer SERVFAIL, never the addresses.
public enum PublishError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kernel refused the transaction (set missing, wrong type, full, …).
    case rejected(String)
    /// The commit did not finish within the caller's bound.
    case timedOut
    /// The publisher cannot work at all (namespace unreachable, no nftables context).
    case unavailable(String)

    public var description: String {
        switch self {
        case .rejected(let reason): return "nftables rejected the update: \(reason)"
        case .timedOut: return "nftables commit timed out"
        case .unavailable(let reason): return "nftables unavailable: \(reason)"
        }
    }

    /// Bounded reason label for metrics.
    public var reasonLabel: String {
        switch self {
        case .rejected: return "rejected"
        case .timedOut: return "timeout"
        case .unavailable: return "unavailable"
        }
    }
}

/// Something that can put addresses into firewall sets and say when they are there. A
/// publisher is an object: callers batch requests per publisher by identity.
public protocol SetPublisher: AnyObject, Sendable {
    /// Returns once every element is committed with at least its timeout (an element that
    /// already outlives it is left alone), or throws — then none may be relied on.
    func publish(_ elements: [SetElement]) async throws(PublishError)

    /// Whether `publish` would have to commit anything for `element` (false lets a cache hit
    /// answer without a round trip through the publisher). One element, not an array: a cache
    /// hit asks for each of its addresses (usually one or two) without building an array.
    func needsCommit(_ element: SetElement) -> Bool

    /// The same as `publish`, reporting through `completion` (nil: committed) on any thread,
    /// so a caller can race it against a timer without creating tasks.
    func publish(_ elements: [SetElement], completion: @escaping @Sendable (PublishError?) -> Void)

    /// Several requests at once, committed together where the publisher can (one transaction;
    /// if it fails, each request alone, so one bad request cannot fail the others).
    /// `completion` gets one outcome per request, in order.
    func publish(batch requests: [[SetElement]], completion: @escaping @Sendable ([PublishError?]) -> Void)

    /// Deletes from `targets` every element whose reasons (still unexpired) are all refused by
    /// `keep`, in one transaction per namespace; elements with no reason recorded (from before
    /// this process, or published without one) stay. Returns the elements deleted.
    func revoke(in targets: [SetTarget], keeping keep: @escaping @Sendable (UInt64) -> Bool) async throws(PublishError)
        -> [SetElement]
}

extension SetPublisher {
    /// Whether `publish` would have to commit anything for any of `elements`.
    public func needsCommit(_ elements: [SetElement]) -> Bool {
        elements.contains { needsCommit($0) }
    }

    public func publish(_ elements: [SetElement], completion: @escaping @Sendable (PublishError?) -> Void) {
        Task {
            do throws(PublishError) {
                try await publish(elements)
                completion(nil)
            } catch {
                completion(error)
            }
        }
    }

    public func publish(batch requests: [[SetElement]], completion: @escaping @Sendable ([PublishError?]) -> Void) {
        let results = Mutex<(left: Int, outcomes: [PublishError?])>(
            (requests.count, Array(repeating: nil, count: requests.count)))
        guard !requests.isEmpty else { return completion([]) }
        for (index, request) in requests.enumerated() {
            publish(request) { error in
                let finished = results.withLock { state -> [PublishError?]? in
                    state.outcomes[index] = error
                    state.left -= 1
                    return state.left == 0 ? state.outcomes : nil
                }
                if let finished { completion(finished) }
            }
        }
    }
}
