import DNSFenceCore
import DNSFenceTransfer
import DNSFenceWire
import Yams

extension ConfigurationParser {
    /// A `zones:` entry: a file path, or `{ transfer: { zone, primaries, tsig, cache-dir } }`.
    /// Returns the path the policy names it by (`transfer:ZONE` for a transfer).
    mutating func zoneEntry(_ item: Node) -> String? {
        guard case .mapping = item else { return string(item, "a zone path") }
        guard let fields = mapping(item, "a zone entry") else { return nil }
        var result: String? = nil
        for (k, v) in fields {
            switch k {
            case "transfer":
                guard let transfer = transfer(v) else { continue }
                if let other = transfers[transfer.zone],
                    other.primaries != transfer.primaries
                        || other.keyName != transfer.keyName || other.secretFile != transfer.secretFile
                        || other.cacheDirectory != transfer.cacheDirectory
                {
                    error(v, "zone \(transfer.zone) is transferred with other settings at line \(other.line)")
                    continue
                }
                transfers[transfer.zone] = transfers[transfer.zone] ?? transfer
                result = ZoneTransferSource.pathPrefix + transfer.zone
            default:
                unknownKey(k, in: "a zone entry", known: ["transfer"])
            }
        }
        return result
    }

    mutating func transfer(_ node: Node) -> ZoneTransferConfiguration? {
        guard let fields = mapping(node, "transfer") else { return nil }
        var zone: String? = nil
        var primaries: [Endpoint] = []
        var keyName: String? = nil
        var algorithm: String? = nil
        var secretFile: String? = nil
        var cacheDirectory: String? = nil
        var valid = true
        for (k, v) in fields {
            switch k {
            case "zone":
                guard let text = string(v, "transfer zone") else { continue }
                guard let name = try? DNSName(text), name != DNSName.root else {
                    error(v, "transfer zone '\(text)' is not a domain name like sandbox.rpz")
                    valid = false
                    continue
                }
                zone = name.lowercased().description
            case "primaries":
                primaries = list(v, "transfer primaries").compactMap { endpoint($0, defaultPort: 53) }
                if primaries.isEmpty { valid = false }
            case "tsig":
                guard let key = mapping(v, "tsig") else { continue }
                for (kk, vv) in key {
                    switch kk {
                    case "name": keyName = string(vv, "tsig name")
                    case "algorithm":
                        guard let text = string(vv, "tsig algorithm") else { continue }
                        guard TSIGKey.algorithms.contains(text.lowercased()) else {
                            error(
                                vv,
                                "tsig algorithm must be one of \(TSIGKey.algorithms.joined(separator: ", ")), got '\(text)'"
                            )
                            valid = false
                            continue
                        }
                        algorithm = text.lowercased()
                    case "secret-file": secretFile = string(vv, "tsig secret-file")
                    default: unknownKey(kk, in: "tsig", known: ["name", "algorithm", "secret-file"])
                    }
                }
                if keyName == nil || secretFile == nil {
                    error(v, "tsig needs 'name' and 'secret-file' (algorithm defaults to hmac-sha256)")
                    valid = false
                }
            case "cache-dir":
                cacheDirectory = string(v, "transfer cache-dir")
            default:
                unknownKey(k, in: "transfer", known: ["zone", "primaries", "tsig", "cache-dir"])
                valid = false
            }
        }
        guard let zone else {
            error(node, "transfer needs 'zone' (the policy zone's name) and 'primaries'")
            return nil
        }
        if !fields.keys.contains("primaries") {
            error(node, "transfer of \(zone) needs 'primaries' (addresses of the primary servers)")
            return nil
        }
        guard valid else { return nil }
        var config = ZoneTransferConfiguration(zone: zone, primaries: primaries, file: file, line: node.mark?.line ?? 0)
        config.keyName = keyName
        config.algorithm = algorithm ?? config.algorithm
        config.secretFile = secretFile
        config.cacheDirectory = cacheDirectory
        return config
    }
}
