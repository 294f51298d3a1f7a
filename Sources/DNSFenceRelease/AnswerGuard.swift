// DNSFenceRelease: what a DNS answer may hand out under a policy's firewall binding, and in
// what form it is cached for release: the CNAME chain from the question, the admission
// filter, a set per family, TTL clamps. Between Wire and Firewall: Serve asks it for fresh
// answers and the cache's templates; Firewall itself knows nothing about DNS.

public import DNSFenceCore
public import DNSFenceFirewall
public import DNSFenceWire

/// Makes an answer safe to release under a firewall binding: keeps only the addresses of the
/// CNAME chain that starts at the question, drops the ones the admission filter or a missing
/// set would leave unpublished, strips address hints from HTTPS/SVCB (clients then look the
/// target up, which is published), clamps TTLs, and lists the elements to commit first.
public enum AnswerGuard {
    public struct Plan: Sendable {
        public var message: DNSMessage
        /// The addresses released, with their (clamped) TTLs.
        public var addresses: [AnswerAddress]
        /// Addresses withheld (admission filter or no set for the family).
        public var withheld: Int
    }

    public static let maxChain = 16

    public static func plan(_ message: DNSMessage, binding: FirewallBinding) -> Plan {
        guard let question = message.question else { return Plan(message: message, addresses: [], withheld: 0) }
        // At most 17 names, usually one: an array (== is case-insensitive) beats a set here.
        var chain: [DNSName] = [question.name]
        var current = question.name
        for _ in 0..<maxChain {
            guard let next = message.answers.first(where: { $0.type == .cname && $0.name == current })?.target,
                !chain.contains(next)
            else { break }
            chain.append(next)
            current = next
        }
        var out = message
        var addresses: [AnswerAddress] = []
        var withheld = 0
        out.answers = message.answers.compactMap { record in
            var record = record
            record.ttl = min(record.ttl, binding.maxTTL)
            switch record.type {
            case .a, .aaaa:
                guard chain.contains(record.name), let address = record.address else {
                    withheld += 1
                    return nil
                }
                guard binding.admits(address) else {
                    withheld += 1
                    return nil
                }
                addresses.append(AnswerAddress(address: address, ttl: record.ttl))
                return record
            case .https, .svcb:
                record.rdata = stripAddressHints(record.rdata)
                return record
            default:
                return record
            }
        }
        // Addresses outside the answer section are never published, so never released.
        // (Each change is checked for first: changing nothing would still copy the array.)
        if out.authorities.contains(where: isAddress) { out.authorities.removeAll(where: isAddress) }
        if out.additionals.contains(where: isAddress) { out.additionals.removeAll(where: isAddress) }
        if out.additionals.contains(where: { $0.type == .https || $0.type == .svcb }) {
            out.additionals = out.additionals.map { record in
                guard record.type == .https || record.type == .svcb else { return record }
                var copy = record
                copy.rdata = stripAddressHints(record.rdata)
                return copy
            }
        }
        return Plan(message: out, addresses: addresses, withheld: withheld)
    }

    static func isAddress(_ record: DNSRecord) -> Bool { record.type == .a || record.type == .aaaa }

    /// SVCB/HTTPS RDATA (RFC 9460 2.2) without the ipv4hint (4) and ipv6hint (6) parameters.
    /// Malformed RDATA is returned unchanged (it carries no hints a client could parse either).
    static func stripAddressHints(_ rdata: [UInt8]) -> [UInt8] {
        guard rdata.count >= 3 else { return rdata }
        var i = 2
        while i < rdata.count, rdata[i] != 0 {
            i += 1 + Int(rdata[i])
        }
        i += 1
        guard i <= rdata.count else { return rdata }
        var out = Array(rdata[0..<i])
        while i < rdata.count {
            guard i + 4 <= rdata.count else { return rdata }
            let key = Int(rdata[i]) << 8 | Int(rdata[i + 1])
            let length = Int(rdata[i + 2]) << 8 | Int(rdata[i + 3])
            guard i + 4 + length <= rdata.count else { return rdata }
            if key != 4 && key != 6 { out.append(contentsOf: rdata[i..<(i + 4 + length)]) }
            i += 4 + length
        }
        return out
    }
}
