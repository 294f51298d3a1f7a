import DNSFenceRelease
import DNSFenceResolve
public import DNSFenceWire

/// Renders any decision through a ``DNSMessage`` and the encoder: whatever the
/// ``ByteRenderer`` declines (local data, refusals, truncation, queries with a compressed
/// question, answers from records). It decides nothing.
public enum MessageRenderer {
    /// The answer's bytes, fitted to `maxSize` (TC when over), or nil for no answer (drop,
    /// forward: nothing to send yet).
    public static func render(_ decision: borrowing QueryDecision, view: QueryView, maxSize: Int) -> [UInt8]? {
        switch decision.verdict {
        case .drop, .forward:
            return nil
        case .malformed(let rcode):
            return DNSMessage.headerOnlyResponse(to: view.bytes, rcode: rcode)
        case .refuse(let rcode):
            let query = view.message
            var message = DNSMessage.response(to: query, rcode: rcode)
            if rcode == .notAuth, let tsig = query.additionals.first(where: { $0.type == .tsig }),
                let badKey = DNSMessage.badKeyTSIG(answering: tsig, originalID: query.id)
            {
                message.additionals.append(badKey)
            }
            return message.encoded(fitting: maxSize)
        case .deny(let rcode):
            var message = DNSMessage.response(to: view.message, rcode: rcode, error: decision.ede)
            if DNSMessage.denialCarriesSOA(rcode) { message.authorities = [DNSMessage.denialSOA] }
            return message.encoded(fitting: maxSize)
        case .localData(let records, _, _):
            let query = view.message
            var message = DNSMessage.response(to: query, rcode: .noError)
            message.authoritative = true
            message.answers = records.map { $0.renamed(query.questions[0].name) }
            return message.encoded(fitting: maxSize)
        case .any:
            return DNSMessage.rfc8482(to: view.message).encoded(fitting: maxSize)
        case .slip:
            var message = DNSMessage.response(to: view.message, rcode: .noError)
            message.truncated = true
            return message.encoded()
        case .hit(let hit):
            return render(hit, view: view, ede: decision.ede, maxSize: maxSize)
        case .message(let bytes):
            return bytes
        }
    }

    private static func render(_ hit: CacheHit, view: QueryView, ede: ExtendedDNSError?, maxSize: Int) -> [UInt8] {
        let query = view.message
        if hit.truncated, let template = hit.answer.template {
            // Too big for this client's UDP size: TC, no records (RFC 7766 section 5).
            var truncated = DNSMessage.response(to: query, rcode: template.rcode)
            truncated.truncated = true
            truncated.authenticData = template.authenticData && query.asksForAuthenticData
            return truncated.encoded()
        }
        if hit.viaTemplate, let template = hit.answer.template,
            let bytes = template.response(
                to: query, bytes: view.bytes, elapsed: hit.elapsed, maxSize: maxSize,
                ednsPayload: UInt16(DNSMessage.advertisedPayload))
        {
            return bytes
        }
        var message = hit.answer.response(to: query)
        if let ede, message.edns != nil { message.edns?.options.append(ede.option) }
        return message.encoded(fitting: maxSize)
    }
}
