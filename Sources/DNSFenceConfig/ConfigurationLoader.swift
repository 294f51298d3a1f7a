public import DNSFencePolicy
public import DNSFenceTransfer
import DNSFenceWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The one way `serve` and `check` turn files and flags into a compiled configuration, so
/// `check` validates exactly what a start would.
public struct ConfigurationLoader: Sendable {
    public init() {}

    /// Loads `configPath` (or the embedded default), applies `overrides`, validates and compiles.
    /// Transferred zones' text comes from `zones` (the cache files, unless a server is running).
    public func load(
        configPath: String?, overrides: ConfigurationOverrides, zones: any ZoneProvider = CachedZones()
    ) throws(ConfigurationError) -> CompiledConfiguration {
        var base: ServerConfiguration
        var baseDirectory: String? = nil
        if let configPath {
            let text: String
            do {
                text = try Self.readFile(configPath)
            } catch {
                throw ConfigurationError([ConfigDiagnostic(file: configPath, line: 0, message: "\(error)")])
            }
            base = try ConfigurationParser.parse(text, file: configPath)
            if let slash = configPath.lastIndex(of: "/") { baseDirectory = String(configPath[..<slash]) }
            if let dropIns = base.dropIns {
                try Self.merge(dropIns: Self.resolve(dropIns, against: baseDirectory), into: &base)
            }
        } else {
            base = DefaultConfiguration.make(resolvConf: (try? Self.readFile("/etc/resolv.conf")) ?? "")
            // The plain `dnsfence serve` also serves metrics on the default address; a command
            // line that builds its own setup asks for them with --metrics.
            if overrides == ConfigurationOverrides() { base.metrics = DefaultConfiguration.metrics }
        }
        let config = try overrides.apply(to: base)
        return try compile(config, configPath: configPath, overrides: overrides, zones: zones)
    }

    /// Compiles `config` (already read and overridden) again, as ``load`` would: a transferred
    /// zone changed, the files and flags did not.
    public func compile(
        _ config: ServerConfiguration, configPath: String?, overrides: ConfigurationOverrides, zones: any ZoneProvider
    ) throws(ConfigurationError) -> CompiledConfiguration {
        var baseDirectory: String? = nil
        if let configPath, let slash = configPath.lastIndex(of: "/") { baseDirectory = String(configPath[..<slash]) }
        let usesEmbedded = configPath == nil && overrides.allow.isEmpty && overrides.policyFiles.isEmpty
        let compiler = ConfigurationCompiler(
            readFile: { path in
                // The default policy falls back to its embedded copy when zones/ is not here.
                if usesEmbedded && path == DefaultConfiguration.zonePath,
                    (try? ConfigurationLoader.readFile(path)) == nil
                {
                    return DefaultConfiguration.zoneText
                }
                return try ConfigurationLoader.readFile(path)
            },
            baseDirectory: baseDirectory, publicSuffixes: Self.publicSuffixes, zones: zones
        )
        return try compiler.compile(config)
    }

    /// The public suffix list: Debian's (`publicsuffix`), else the embedded copy.
    public static var publicSuffixes: PublicSuffixList {
        let path = "/usr/share/publicsuffix/public_suffix_list.dat"
        var info = stat()
        guard stat(path, &info) == 0 else { return .embedded }
        // Read again only when the file changed (a package upgrade): a reload and every
        // transfer applied compile with it, and reading it costs tens of milliseconds.
        let stamp = SuffixFileStamp(
            seconds: info.st_mtim.tv_sec, nanoseconds: info.st_mtim.tv_nsec, size: info.st_size)
        if let cached = suffixCache.withLock({ $0 }), cached.stamp == stamp { return cached.list }
        guard let text = try? readFile(path) else { return .embedded }
        let list = PublicSuffixList(text: text)
        suffixCache.withLock { $0 = (stamp, list) }
        return list
    }

    private struct SuffixFileStamp: Equatable {
        var seconds: Int
        var nanoseconds: Int
        var size: Int
    }

    private static let suffixCache = Mutex<(stamp: SuffixFileStamp, list: PublicSuffixList)?>(nil)

    /// A path relative to `directory` (the configuration file's), or as it is when absolute.
    static func resolve(_ path: String, against directory: String?) -> String {
        guard !path.hasPrefix("/"), ZoneTransferSource.zone(inPath: path) == nil, let directory else { return path }
        return directory + "/" + path
    }

    /// Adds the listeners and policies of every `*.yaml` in `directory` (in name order) to
    /// `config`. A drop-in may hold `listen:` and `policies:` only; its zone files are relative
    /// to the drop-in's directory. A missing directory is no drop-ins (sandboxes come later).
    static func merge(dropIns directory: String, into config: inout ServerConfiguration) throws(ConfigurationError) {
        var diagnostics: [ConfigDiagnostic] = []
        for name in Self.listYAML(directory) {
            let path = directory + "/" + name
            let text: String
            do {
                text = try readFile(path)
            } catch {
                diagnostics.append(ConfigDiagnostic(file: path, line: 0, message: "\(error)"))
                continue
            }
            let dropIn: ServerConfiguration
            do {
                dropIn = try ConfigurationParser.parse(text, file: path)
            } catch {
                diagnostics += error.diagnostics
                continue
            }
            for key in dropIn.lines.keys where key != "listen" && key != "policies" && !key.hasPrefix("policies.") {
                diagnostics.append(
                    ConfigDiagnostic(
                        file: path, line: dropIn.lines[key] ?? 0,
                        message:
                            "'\(key)' is not allowed in a drop-in: only 'listen' and 'policies' (one sandbox a file)"))
            }
            config.listeners += dropIn.listeners
            for (zone, var transfer) in dropIn.transfers {
                transfer.secretFile = transfer.secretFile.map { resolve($0, against: directory) }
                transfer.cacheDirectory = transfer.cacheDirectory.map { resolve($0, against: directory) }
                if let other = config.transfers[zone], other.primaries != transfer.primaries {
                    diagnostics.append(
                        ConfigDiagnostic(
                            file: path, line: transfer.line,
                            message: "zone \(zone) is transferred with other primaries in \(other.file):\(other.line)"))
                }
                config.transfers[zone] = config.transfers[zone] ?? transfer
            }
            config.policies += dropIn.policies.map { policy in
                var policy = policy
                policy.zones = policy.zones.map { resolve($0, against: directory) }
                return policy
            }
        }
        if !diagnostics.isEmpty { throw ConfigurationError(diagnostics) }
    }

    /// The `*.yaml` files of `directory`, sorted; none if it does not exist.
    static func listYAML(_ directory: String) -> [String] {
        guard let handle = opendir(directory) else { return [] }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasSuffix(".yaml") && !name.hasPrefix(".") { names.append(name) }
        }
        return names.sorted()
    }

    /// Reads a whole text file, or throws a message naming the OS error.
    public static func readFile(_ path: String) throws -> String {
        guard let file = fopen(path, "rb") else {
            throw FileReadError(path: path, reason: String(cString: strerror(errno)))
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n > 0 { bytes.append(contentsOf: buffer[0..<n]) }
            if n < buffer.count {
                if ferror(file) != 0 { throw FileReadError(path: path, reason: String(cString: strerror(errno))) }
                break
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw FileReadError(path: path, reason: "not UTF-8 text")
        }
        return text
    }
}

/// A file could not be read.
public struct FileReadError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var reason: String
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
    public var description: String { reason }
}
