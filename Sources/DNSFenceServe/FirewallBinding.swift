public import DNSFenceFirewall
import DNSFenceWire

/// How one policy publishes: the publisher, its sets and the TTL coherence settings.
public struct FirewallBinding: Sendable {
    /// The fields, in one immutable object: a binding is copied into every forward and read on
    /// every hit under a firewall, and one reference is cheaper to copy than seven fields.
    private final class Fields: Sendable {
        let publisher: any SetPublisher
        let ipv4: SetTarget?
        let ipv6: SetTarget?
        let minTTL: UInt32
        let maxTTL: UInt32
        let grace: UInt32
        let admitPrivate: Bool
        let commitTimeout: Duration

        init(
            publisher: any SetPublisher, ipv4: SetTarget?, ipv6: SetTarget?, minTTL: UInt32, maxTTL: UInt32,
            grace: UInt32, admitPrivate: Bool, commitTimeout: Duration
        ) {
            self.publisher = publisher
            self.ipv4 = ipv4
            self.ipv6 = ipv6
            self.minTTL = minTTL
            self.maxTTL = maxTTL
            self.grace = grace
            self.admitPrivate = admitPrivate
            self.commitTimeout = commitTimeout
        }
    }

    private let fields: Fields

    public var publisher: any SetPublisher { fields.publisher }
    public var ipv4: SetTarget? { fields.ipv4 }
    public var ipv6: SetTarget? { fields.ipv6 }
    /// Element timeout = clamp(TTL, minTTL, maxTTL) + grace; the client never gets a TTL above maxTTL.
    public var minTTL: UInt32 { fields.minTTL }
    public var maxTTL: UInt32 { fields.maxTTL }
    public var grace: UInt32 { fields.grace }
    public var admitPrivate: Bool { fields.admitPrivate }
    /// Longest wait for a commit before the client gets SERVFAIL.
    public var commitTimeout: Duration { fields.commitTimeout }

    public init(
        publisher: any SetPublisher, ipv4: SetTarget?, ipv6: SetTarget?, minTTL: UInt32, maxTTL: UInt32,
        grace: UInt32, admitPrivate: Bool, commitTimeout: Duration = .seconds(1)
    ) {
        fields = Fields(
            publisher: publisher, ipv4: ipv4, ipv6: ipv6, minTTL: minTTL, maxTTL: maxTTL, grace: grace,
            admitPrivate: admitPrivate, commitTimeout: commitTimeout)
    }

    /// How long an address from a record with `ttl` seconds left stays in its set.
    func elementTimeout(ttl: UInt32) -> UInt32 {
        min(max(ttl, minTTL), maxTTL) + grace
    }

    /// Whether answers to `type` must not carry addresses because this binding has no set for
    /// their family (address-family coherence: such questions get NODATA).
    func lacksSet(for type: DNSType) -> Bool {
        (type == .a && ipv4 == nil) || (type == .aaaa && ipv6 == nil)
    }

    /// Whether a hit on `template`, `elapsed` seconds after it was stored, may go out now: every
    /// address in its set for long enough (as `elements(of:elapsed:)` and the publisher's
    /// `needsCommit` would say, without building the array), and never a type whose family
    /// has no set (the full path's NODATA).
    func allowsHit(type: DNSType, template: ResponseTemplate, elapsed: UInt32) -> Bool {
        if lacksSet(for: type) { return false }
        for published in template.published {
            guard let target = published.address.isIPv4 ? ipv4 : ipv6 else { continue }
            let ttl = published.ttl > elapsed ? published.ttl - elapsed : 0
            let element = SetElement(target: target, address: published.address, timeout: elementTimeout(ttl: ttl))
            if publisher.needsCommit(element) { return false }
        }
        return true
    }

    /// The elements a cached answer's addresses need, `elapsed` seconds after it was stored,
    /// with timeouts from their aged TTLs.
    func elements(of template: ResponseTemplate, elapsed: UInt32) -> [SetElement] {
        var elements: [SetElement] = []
        elements.reserveCapacity(template.published.count)
        for published in template.published {
            guard let target = published.address.isIPv4 ? ipv4 : ipv6 else { continue }
            let ttl = published.ttl > elapsed ? published.ttl - elapsed : 0
            elements.append(SetElement(target: target, address: published.address, timeout: elementTimeout(ttl: ttl)))
        }
        return elements
    }
}

/// Makes an answer safe to release under a firewall binding: keeps only the addresses of the
/// CNAME chain that starts at the question, drops the ones the admission filter or a missing
/// set would leave unpublished, strips address hints from HTTPS/SVCB (clients then look the
/// target up, which is published), clamps TTLs, and lists the elements to commit first.
enum AnswerGuard {
    struct Plan {
        var message: DNSMessage
        var elements: [SetElement]
        /// Addresses withheld (admission filter or no set for the family).
        var withheld: Int
    }

    static let maxChain = 16

    static func plan(_ message: DNSMessage, binding: FirewallBinding) -> Plan {
        guard let question = message.question else { return Plan(message: message, elements: [], withheld: 0) }
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
        var elements: [SetElement] = []
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
                guard let target = address.isIPv4 ? binding.ipv4 : binding.ipv6,
                    AddressAdmission.admits(address, admitPrivate: binding.admitPrivate)
                else {
                    withheld += 1
                    return nil
                }
                elements.append(
                    SetElement(target: target, address: address, timeout: binding.elementTimeout(ttl: record.ttl)))
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
        return Plan(message: out, elements: elements, withheld: withheld)
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
