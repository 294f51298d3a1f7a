public import Logging

/// Why a policy's sets cannot be used: that policy fails closed (SERVFAIL), the others serve.
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

extension NftablesCommand.Listing {
    /// Why the set this listing shows cannot take `target`'s elements (wrong address type, no
    /// `flags timeout`); nil when it can.
    func problem(for target: SetTarget) -> FirewallSetupError? {
        let expected = target.isIPv6 ? "ipv6_addr" : "ipv4_addr"
        guard type == expected else { return .wrongType(target, found: type ?? "none", expected: expected) }
        return hasTimeoutFlag ? nil : .noTimeoutFlag(target)
    }
}

/// Looks at sets without changing anything (`dnsfence check`): a thread in each namespace
/// lists them, as a start's verification does, but nothing is created or seeded.
public enum SetInspector {
    /// What is wrong with each of `targets` that has a problem: `.unavailable` when its
    /// namespace does not exist or cannot be entered, `.missing` when the set cannot be listed,
    /// `.wrongType` / `.noTimeoutFlag` when it is not fit.
    public static func problems(of targets: [SetTarget], logger: Logger) async -> [SetTarget: FirewallSetupError] {
        var problems: [SetTarget: FirewallSetupError] = [:]
        var workers: [String: NetnsWorker] = [:]
        for target in targets {
            if let netns = target.netns, NamespaceIdentity(path: netns) == nil {
                problems[target] = .unavailable(target, "network namespace \(netns) does not exist")
                continue
            }
            let worker = workers[target.netns ?? ""] ?? NetnsWorker(netns: target.netns, logger: logger)
            workers[target.netns ?? ""] = worker
            switch await worker.run(NftablesCommand.list(target)) {
            case .failure(.unavailable(let why)): problems[target] = .unavailable(target, why)
            case .failure(let error): problems[target] = .missing(target, "\(error)")
            case .success(let output): problems[target] = NftablesCommand.parseListing(output).problem(for: target)
            }
        }
        return problems
    }
}
