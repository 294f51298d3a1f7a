import DNSFenceCore
public import DNSFenceFirewall
public import DNSFenceResolve
public import DNSFenceWire

/// The wire form an answer is cached and released in (``WireAnswer``): a template and the
/// addresses it hands out, shaped for a policy's firewall binding.
public enum WireAnswerBuilder {
    /// The wire form for `stored` as ``CachedAnswer/response(to:)`` shapes it for a client with
    /// this DO bit (header and OPT are made per query). Under a firewall the template is the
    /// guarded answer; an answer the guard withheld addresses from has none (it is answered
    /// from its records, with an EDE where the guard says so).
    public static func wire(
        for stored: CachedAnswer, question: DNSQuestion, dnssecOK: Bool, binding: FirewallBinding? = nil
    ) -> WireAnswer? {
        let query = DNSMessage(id: 0, questions: [question], edns: dnssecOK ? EDNS(dnssecOK: true) : nil)
        var message = stored.response(to: query)
        message.edns = nil
        message.authenticData = stored.authenticData
        guard let binding else { return ResponseTemplate(message).map { WireAnswer(template: $0) } }
        let plan = AnswerGuard.plan(message, binding: binding)
        guard plan.withheld == 0 else { return nil }
        return ResponseTemplate(plan.message).map { WireAnswer(template: $0, addresses: plan.addresses) }
    }

    /// The wire form for a plain upstream reply (``PlainReply``), made from its bytes: what
    /// ``wire(for:question:dnssecOK:binding:)`` makes from the decoded answer after
    /// ``AnswerCache/store(_:for:keepRecords:template:)`` clamped it, without decoding, building
    /// records or encoding them again. The answer section is kept as the upstream compressed
    /// it, with TTLs clamped the cache's way (and to the binding's maximum); under a firewall
    /// the CNAME chain from the question is followed and every address must be in it, admitted
    /// and of a family with a set. Also returns the entry's lifetime. Nil, for the decoded
    /// path, when the answer is not cached (lifetime 0, no cache) or the guard would withhold
    /// an address (that answer is made from the message, with an EDE where it says so).
    public static func wire(
        for reply: PlainReply, limits: AnswerCache.Limits, binding: FirewallBinding?
    ) -> (wire: WireAnswer, lifetime: UInt32)? {
        guard limits.maxEntries > 0 else { return nil }
        let answers = reply.answers
        var lowest = UInt32.max
        var highest: UInt32 = 0
        for record in answers {
            let ttl = reply.ttl(of: record)
            lowest = min(lowest, ttl)
            highest = max(highest, ttl)
        }
        // AnswerCache.lifetime(of:) and store's clamps, then the guard's cap.
        let lifetime = min(max(lowest, limits.minTTL), limits.maxTTL)
        guard lifetime > 0 else { return nil }
        let adjust = lifetime < highest || limits.minTTL > 0
        func clamped(_ ttl: UInt32) -> UInt32 {
            var ttl = ttl
            if adjust { ttl = max(min(ttl, lifetime), min(limits.minTTL, lifetime)) }
            if let binding { ttl = min(ttl, binding.maxTTL) }
            return ttl
        }

        var published: [AnswerAddress] = []
        if let binding {
            // The chain of names from the question (offset 12), as AnswerGuard.plan follows it.
            var chain = [12]
            var current = 12
            for _ in 0..<AnswerGuard.maxChain {
                guard
                    let next = answers.first(where: { $0.type == .cname && reply.sameName($0.owner, current) })?
                        .rdata,
                    !chain.contains(where: { reply.sameName($0, next) })
                else { break }
                chain.append(next)
                current = next
            }
            for record in answers where record.type == .a || record.type == .aaaa {
                guard chain.contains(where: { reply.sameName($0, record.owner) }),
                    let address = reply.address(of: record),
                    binding.admits(address)
                else { return nil }
                published.append(AnswerAddress(address: address, ttl: clamped(reply.ttl(of: record))))
            }
        }

        let base = reply.questionEnd
        var sections = Array(reply.bytes[base..<reply.answerEnd])
        var offsets: [Int] = []
        offsets.reserveCapacity(answers.count)
        sections.withUnsafeMutableBufferPointer { out in
            for record in answers {
                let at = record.ttlOffset - base
                out.storeBigEndian(clamped(reply.ttl(of: record)), at: at)
                offsets.append(at)
            }
        }
        guard
            let template = ResponseTemplate(
                questionLength: base - 12, rcode: .noError, authenticData: reply.authenticData,
                answerCount: answers.count, sections: sections, ttlOffsets: offsets)
        else { return nil }
        return (WireAnswer(template: template, addresses: published), lifetime)
    }
}
