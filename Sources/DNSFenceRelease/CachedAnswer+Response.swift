public import DNSFenceResolve
public import DNSFenceWire

extension CachedAnswer {
    /// The response this answer gives `query`: its sections after the query's question, AD only
    /// to clients that asked for DNSSEC-aware answers (RFC 6840 5.8), and no DNSSEC records
    /// for a client without DO.
    public func response(to query: DNSMessage) -> DNSMessage {
        var message = DNSMessage.response(to: query, rcode: rcode)
        message.answers = answers
        message.authorities = authorities
        message.additionals = additionals
        message.authenticData = authenticData && query.asksForAuthenticData
        if query.edns?.dnssecOK != true {
            // Checked first: removing nothing would still copy a shared array.
            let isDNSSEC = DNSMessage.isDNSSEC
            if message.answers.contains(where: isDNSSEC) { message.answers.removeAll(where: isDNSSEC) }
            if message.authorities.contains(where: isDNSSEC) { message.authorities.removeAll(where: isDNSSEC) }
            if message.additionals.contains(where: isDNSSEC) { message.additionals.removeAll(where: isDNSSEC) }
        }
        return message
    }
}
