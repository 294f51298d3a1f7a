public import DNSFenceCore

/// Chooses the policy for a query from the listener it reached and the client's address.
///
/// - A listener bound to a policy serves that policy only; if the policy lists client
///   prefixes, a client outside them gets no policy (the server refuses).
/// - A listener without a policy picks the policy whose client prefix contains the source
///   most specifically; none matching means no policy.
public struct ClientPolicySelector: Sendable {
    public struct Entry: Sendable {
        public var policy: Policy
        public var clients: [IPPrefix]

        public init(policy: Policy, clients: [IPPrefix]) {
            self.policy = policy
            self.clients = clients
        }
    }

    public let entries: [String: Entry]
    private let byPrefix: [(IPPrefix, String)]
    /// The entries in order, for a linear scan when there are few (cheaper than hashing the
    /// name on every query).
    private let list: [(name: String, entry: Entry)]

    public init(_ entries: [Entry]) {
        var map: [String: Entry] = [:]
        var prefixes: [(IPPrefix, String)] = []
        for entry in entries {
            map[entry.policy.name] = entry
            for prefix in entry.clients { prefixes.append((prefix, entry.policy.name)) }
        }
        self.entries = map
        self.list = entries.map { ($0.policy.name, $0) }
        // Longest prefix first; ties keep configuration order.
        self.byPrefix = prefixes.enumerated().sorted {
            $0.element.0.length != $1.element.0.length
                ? $0.element.0.length > $1.element.0.length : $0.offset < $1.offset
        }.map(\.element)
    }

    /// The policy for `client` on a listener bound to `listenerPolicy` (or to none).
    public func select(client: IPAddress, listenerPolicy: String?) -> Policy? {
        if let listenerPolicy {
            let found =
                list.count <= 8 ? list.first(where: { $0.name == listenerPolicy })?.entry : entries[listenerPolicy]
            guard let entry = found else { return nil }
            if entry.clients.isEmpty || entry.clients.contains(where: { $0.contains(client) }) {
                return entry.policy
            }
            return nil
        }
        for (prefix, name) in byPrefix where prefix.contains(client) {
            return entries[name]?.policy
        }
        return nil
    }
}
