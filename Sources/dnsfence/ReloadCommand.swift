import ArgumentParser
import DNSFenceConfig

#if canImport(Glibc)
    import Glibc
#endif

/// `dnsfence reload`: tells the running server (through its control socket) to read its
/// configuration again, and prints what happened. Exit 0 when the new configuration serves,
/// 1 when it was refused (the old one keeps serving; the errors are printed), 2 when no server
/// answered.
struct ReloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Reload the running server's configuration and policies; print the result."
    )

    @Option(name: .long, help: "The server's configuration file (read for its 'control' socket).")
    var config: String?

    @Option(name: .long, help: "The server's control socket (default: the configuration's 'control').")
    var control: String?

    func run() throws {
        let path: String
        if let control {
            path = control
        } else {
            var overrides = ConfigurationOverrides()
            overrides.control = control
            guard
                let configured = try? ConfigurationLoader().load(configPath: config, overrides: overrides)
                    .configuration.control
            else {
                printError(
                    "dnsfence reload: no control socket: give --control PATH, or --config FILE with a 'control' setting"
                )
                throw ExitCode(2)
            }
            path = configured
        }
        let reply: String
        do {
            reply = try Self.ask(path, "reload")
        } catch {
            printError("dnsfence reload: \(error)")
            throw ExitCode(2)
        }
        var lines = reply.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        while lines.last == "" { lines.removeLast() }
        let status = lines.first ?? ""
        for line in lines.dropFirst() { print(line) }
        guard status == "ok" else {
            if status != "failed" { printError("dnsfence reload: unexpected reply '\(status)'") }
            throw ExitCode(1)
        }
        print("reloaded")
    }

    /// Sends one command line to the control socket at `path` and returns the whole reply.
    static func ask(_ path: String, _ command: String) throws -> String {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ControlError("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw ControlError("control socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            throw ControlError("cannot reach the server at \(path): \(String(cString: strerror(errno)))")
        }
        let line = Array((command + "\n").utf8)
        guard line.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == line.count else {
            throw ControlError("cannot send to \(path): \(String(cString: strerror(errno)))")
        }
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            reply.append(contentsOf: buffer[0..<n])
        }
        guard !reply.isEmpty else { throw ControlError("the server at \(path) closed without a reply") }
        return String(decoding: reply, as: UTF8.self)
    }
}

struct ControlError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
