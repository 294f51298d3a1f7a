import DNSFenceCore
import DNSFenceWire
import NIOCore
import Synchronization

/// Bounds TCP connections in total and per client. When a bound is reached, the connection
/// that has been idle longest (no query in flight) is closed to admit the new one (RFC 7766
/// section 6.2.3 lets a server close idle connections), so idle or slow clients can never
/// starve new ones; only when every connection is busy is the new one refused.
final class TCPConnectionRegistry: Sendable {
    struct Limits: Sendable {
        var maxConnections: Int
        var maxPerClient: Int
    }

    struct Entry {
        var channel: any Channel
        var client: IPAddress
        var lastActivity: NIODeadline
        var busy: Int
    }

    struct State {
        var entries: [ObjectIdentifier: Entry] = [:]
        var perClient: [IPAddress: Int] = [:]
        var evicted = 0
        var refused = 0
    }

    let limits: Limits
    private let state = Mutex(State())

    init(limits: Limits) {
        self.limits = limits
    }

    /// Registers a new connection; returns false if it must be closed (everything busy).
    func admit(_ channel: any Channel, client: IPAddress) -> Bool {
        var victims: [any Channel] = []
        let admitted = state.withLock { state -> Bool in
            if state.perClient[client, default: 0] >= limits.maxPerClient {
                guard let victim = Self.idlest(state.entries, where: { $0.client == client }) else {
                    state.refused += 1
                    return false
                }
                victims.append(contentsOf: Self.remove(victim, from: &state))
                state.evicted += 1
            }
            if state.entries.count >= limits.maxConnections {
                guard let victim = Self.idlest(state.entries, where: { _ in true }) else {
                    state.refused += 1
                    return false
                }
                victims.append(contentsOf: Self.remove(victim, from: &state))
                state.evicted += 1
            }
            state.entries[ObjectIdentifier(channel)] = Entry(
                channel: channel, client: client, lastActivity: .now(), busy: 0)
            state.perClient[client, default: 0] += 1
            return true
        }
        for victim in victims { victim.close(promise: nil) }
        return admitted
    }

    /// Marks a query started (`+1`) or answered (`-1`) on `channel`.
    func activity(_ channel: any Channel, busyDelta: Int) {
        state.withLock { state in
            let id = ObjectIdentifier(channel)
            guard var entry = state.entries[id] else { return }
            entry.busy += busyDelta
            entry.lastActivity = .now()
            state.entries[id] = entry
        }
    }

    /// Forgets a closed connection.
    func remove(_ channel: any Channel) {
        state.withLock { state in
            _ = Self.remove(ObjectIdentifier(channel), from: &state)
        }
    }

    var counts: (open: Int, evicted: Int, refused: Int) {
        state.withLock { ($0.entries.count, $0.evicted, $0.refused) }
    }

    private static func idlest(_ entries: [ObjectIdentifier: Entry], where predicate: (Entry) -> Bool)
        -> ObjectIdentifier?
    {
        entries.filter { $0.value.busy == 0 && predicate($0.value) }.min {
            $0.value.lastActivity < $1.value.lastActivity
        }?.key
    }

    /// Removes an entry if present; returns its channel.
    @discardableResult
    private static func remove(_ id: ObjectIdentifier, from state: inout State) -> [any Channel] {
        guard let entry = state.entries.removeValue(forKey: id) else { return [] }
        state.perClient[entry.client, default: 1] -= 1
        if state.perClient[entry.client] == 0 { state.perClient[entry.client] = nil }
        return [entry.channel]
    }
}
