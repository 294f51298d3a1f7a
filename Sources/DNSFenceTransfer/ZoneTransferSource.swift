import DNSFenceCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One policy zone served from primaries (`zones: [{ transfer: … }]`), as configured.
public struct ZoneTransferSource: Sendable, Hashable {
    /// The zone's name, absolute and lowercased (`sandbox.rpz.`).
    public var zone: String
    /// Tried in order.
    public var primaries: [TransferPrimary]
    public var key: TSIGKey?
    /// Where the last good copy is kept (`ZONE.zone`); nil: nowhere.
    public var cacheDirectory: String?

    public init(zone: String, primaries: [TransferPrimary], key: TSIGKey? = nil, cacheDirectory: String? = nil) {
        self.zone = zone.absoluteLowercased
        self.primaries = primaries
        self.key = key
        self.cacheDirectory = cacheDirectory
    }

    /// The cache file, `DIR/sandbox.rpz.zone`.
    public var cacheFile: String? { cacheDirectory.map { "\($0)/\(zone)zone" } }

    /// The path a policy's `zones:` names this zone by (`transfer:sandbox.rpz.`).
    public var policyPath: String { Self.pathPrefix + zone }
    public static let pathPrefix = "transfer:"

    /// The zone a `transfer:` path names, or nil for a file.
    public static func zone(inPath path: String) -> String? {
        path.hasPrefix(pathPrefix) ? String(path.dropFirst(pathPrefix.count)) : nil
    }
}

/// What a policy gets of a transferred zone right now.
public enum ZoneState: Sendable, Equatable {
    /// Its text (zone-file syntax, SOA first).
    case serving(String)
    /// Nothing to serve: the policies using it fail closed, for this reason. `text`: the last
    /// copy (an expired zone's), still compiled so that its denials go on denying; nothing it
    /// allows is answered.
    case unavailable(String, text: String?)
}

/// The zone text policies are compiled from: for `dnsfence check` and a first start, the
/// cache file alone; for a running server, the secondaries.
public protocol ZoneProvider: Sendable {
    func state(of source: ZoneTransferSource) -> ZoneState
}

/// What a start (or `check`) finds on disk before any transfer.
public struct CachedZones: ZoneProvider {
    public init() {}

    public func state(of source: ZoneTransferSource) -> ZoneState {
        switch ZoneCache.load(source) {
        case .success(let cached):
            if cached.expired {
                return .unavailable(Self.expired(source, cached.content.soa.serial), text: cached.content.text)
            }
            return .serving(cached.content.text)
        case .failure(let why):
            return .unavailable("zone \(source.zone) not transferred yet (\(why))", text: nil)
        }
    }

    static func expired(_ source: ZoneTransferSource, _ serial: UInt32) -> String {
        "zone \(source.zone) expired: no successful refresh from \(source.primaries.map(\.description).joined(separator: ", ")) "
            + "within its SOA expire (serial \(serial))"
    }
}

/// The last good copy of a zone on disk: its text, written whole and renamed into place, its
/// modification time the last successful refresh (as BIND's secondaries keep it).
enum ZoneCache {
    struct Cached {
        var content: ZoneContent
        /// Wall-clock seconds of the last successful refresh.
        var refreshed: Int
        var expired: Bool
    }

    /// How often each cache file was read (a million-name zone takes seconds: tests count).
    static let reads = Mutex<[String: Int]>([:])

    static func load(_ source: ZoneTransferSource) -> Result<Cached, CacheError> {
        guard let path = source.cacheFile else { return .failure(CacheError("no cache-dir")) }
        reads.withLock { $0[path, default: 0] += 1 }
        guard let file = fopen(path, "rb") else {
            return .failure(CacheError("no cached copy at \(path): \(String(cString: strerror(errno)))"))
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            bytes += buffer[0..<n]
            if n < buffer.count { break }
        }
        guard let content = ZoneContent.parse(String(decoding: bytes, as: UTF8.self), origin: source.zone) else {
            return .failure(CacheError("the cached copy at \(path) is not readable"))
        }
        var info = stat()
        fstat(fileno(file), &info)
        let refreshed = info.st_mtim.tv_sec
        let now = time(nil)
        return .success(
            Cached(content: content, refreshed: refreshed, expired: now - refreshed > Int(content.soa.expire)))
    }

    /// Writes `content` to the cache file (a temporary file renamed over it).
    static func store(_ content: ZoneContent, for source: ZoneTransferSource, from primary: TransferPrimary)
        -> CacheError?
    {
        guard let path = source.cacheFile else { return nil }
        let temporary = path + ".tmp"
        guard let file = fopen(temporary, "wb") else {
            return CacheError("cannot write \(temporary): \(String(cString: strerror(errno)))")
        }
        let text = "; dnsfence: \(source.zone) serial \(content.soa.serial) from \(primary)\n" + content.text
        let written = text.utf8.withContiguousStorageIfAvailable { fwrite($0.baseAddress, 1, $0.count, file) } ?? 0
        let flushed = fflush(file) == 0 && fsync(fileno(file)) == 0
        fclose(file)
        guard written == text.utf8.count, flushed, rename(temporary, path) == 0 else {
            unlink(temporary)
            return CacheError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        return nil
    }

    /// A refresh that found nothing newer: the copy is as good as new (its expiry restarts).
    static func touch(_ source: ZoneTransferSource) {
        guard let path = source.cacheFile else { return }
        utimes(path, nil)
    }

    struct CacheError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}
