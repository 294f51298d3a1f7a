#if canImport(Glibc)
    import Glibc
#endif

/// Descriptors: one dnsfence serves many sandboxes, each with listeners, sets and TCP clients.
/// Tests that hold many descriptors raise the limit the same way (only ever up: lowering it
/// again would pull it from under another test running in the same process).
package enum DescriptorLimit {
    /// Raises the soft RLIMIT_NOFILE to the hard limit (at most 1,048,576), as Unbound and
    /// CoreDNS do; returns the limit now in force.
    @discardableResult
    package static func raise() -> UInt64 {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        let wanted = min(limit.rlim_max, 1 << 20)
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
                getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            }
        }
        return UInt64(limit.rlim_cur)
    }
}
