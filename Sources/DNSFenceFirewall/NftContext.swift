import CNftBatch

#if canImport(Glibc)
    import Glibc
#endif

/// Whether a worker thread is inside its namespace (and can run nft commands there), or why
/// not. Lives on that thread only.
enum NftContext {
    case ready
    case failed(String)

    /// Runs one nft text command (setup, listing, deletion) in the thread's namespace; its
    /// output or the first line of its error. libnftables runs on a thread of its own with a
    /// private descriptor table (`dnsfence_nft_command`): it waits on its netlink socket with
    /// select(2), which aborts the process for a descriptor at or above FD_SETSIZE, and a
    /// dnsfence serving many sandboxes or TCP clients has more descriptors open than that.
    func run(_ command: String) -> Result<String, PublishError> {
        if case .failed(let reason) = self { return .failure(.unavailable(reason)) }
        var output: UnsafeMutablePointer<CChar>? = nil
        var error: UnsafeMutablePointer<CChar>? = nil
        let rc = dnsfence_nft_command(command, &output, &error)
        defer {
            free(output)
            free(error)
        }
        if rc < 0 {
            return .failure(
                .unavailable("cannot run libnftables on a thread of its own: \(String(cString: strerror(-rc)))"))
        }
        if rc != 0 {
            let text = error.map { String(cString: $0) } ?? "error"
            return .failure(.rejected(text.split(separator: "\n").first.map(String.init) ?? text))
        }
        return .success(output.map { String(cString: $0) } ?? "")
    }
}
