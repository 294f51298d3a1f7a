/// Why the sets cannot be used at start-up; dnsfence refuses to start.
public enum FirewallSetupError: Error, Hashable, Sendable, CustomStringConvertible {
    case invalidName(SetTarget)
    case unavailable(SetTarget, String)
    case createFailed(SetTarget, String)
    case missing(SetTarget, String)
    case wrongType(SetTarget, found: String, expected: String)
    case noTimeoutFlag(SetTarget)

    public var description: String {
        switch self {
        case .invalidName(let t): return "set \(t): names must be identifiers"
        case .unavailable(let t, let why): return "set \(t): \(why)"
        case .createFailed(let t, let why): return "set \(t): cannot create it: \(why)"
        case .missing(let t, let why): return "set \(t) does not exist (create it, or set 'create: true'): \(why)"
        case .wrongType(let t, let found, let expected): return "set \(t) has type \(found), expected \(expected)"
        case .noTimeoutFlag(let t): return "set \(t) lacks 'flags timeout': elements could never expire"
        }
    }
}
