import DNSFencePolicy
import DNSFenceResolve
import DNSFenceWire

extension QueryPipeline {
    /// Handles one query given as the bytes the socket read: denials and cache hits of plain
    /// queries are answered at the byte level, everything else takes ``process(_:context:)``.
    public func process(bytes: UnsafeRawBufferPointer, context: QueryContext) -> ImmediateOutcome {
        if let response = fastPath(bytes, context: context) { return .respond(response) }
        return process(Array(bytes), context: context)
    }

    /// The answer to a plain query that the policy denies or the cache holds, written from the
    /// query's bytes with no ``DNSMessage``, ``QueryRecord`` or outcome enum: on the hot and
    /// denied workloads these were most of the pipeline's cost. Byte for byte what
    /// ``process(_:context:)`` answers (tests compare the two). Nil, for the full path, for
    /// anything else: no policy, local data, a cache miss, a policy with a firewall (cache hits
    /// there may have addresses to publish), an answer too big for the client, a query that is
    /// not a plain one (see ``DNSMessage/init(fastQuery:)``), an unusual class or type, EDNS
    /// version ≠ 0, `rpz-drop`, or the query log on (it needs the full record).
    func fastPath(_ bytes: UnsafeRawBufferPointer, context: QueryContext) -> [UInt8]? {
        guard queryLog == nil else { return nil }
        let started = QueryRecord.monotonicNow()
        let n = bytes.count
        // QR=0, opcode QUERY; QDCOUNT=1, ANCOUNT=0, NSCOUNT=0, ARCOUNT 0 or 1.
        guard n >= 17, n <= 512 + 4096, bytes[2] & 0xF8 == 0, bytes[4] == 0, bytes[5] == 1, bytes[6] == 0,
            bytes[7] == 0, bytes[8] == 0, bytes[9] == 0, bytes[10] == 0, bytes[11] <= 1
        else { return nil }
        var position = 12
        while true {
            guard position < n else { return nil }
            let length = Int(bytes[position])
            if length == 0 { break }
            guard length <= DNSName.maxLabelLength else { return nil }
            position += 1 + length
        }
        let nameEnd = position + 1
        guard nameEnd - 12 <= DNSName.maxWireLength, nameEnd + 4 <= n else { return nil }
        let type = DNSType(rawValue: UInt16(bytes[nameEnd]) << 8 | UInt16(bytes[nameEnd + 1]))
        guard bytes[nameEnd + 2] == 0, bytes[nameEnd + 3] == 1,  // class IN
            type != .axfr, type != .ixfr, type != .opt, type != .any
        else { return nil }
        position = nameEnd + 4
        var dnssecOK: Bool? = nil
        var payloadSize = 0
        if bytes[11] == 1 {
            // OPT: root owner, type 41, version 0, options well formed and ending the message.
            guard position + 11 <= n, bytes[position] == 0, bytes[position + 1] == 0, bytes[position + 2] == 41,
                bytes[position + 6] == 0
            else { return nil }
            let end = position + 11 + (Int(bytes[position + 9]) << 8 | Int(bytes[position + 10]))
            guard end == n else { return nil }
            var option = position + 11
            while option < end {
                guard option + 4 <= end else { return nil }
                option += 4 + (Int(bytes[option + 2]) << 8 | Int(bytes[option + 3]))
            }
            guard option == end else { return nil }
            dnssecOK = bytes[position + 7] & 0x80 != 0
            payloadSize = Int(bytes[position + 3]) << 8 | Int(bytes[position + 4])
            position = end
        }
        guard position == n,
            let policy = selector.select(client: context.client, listenerPolicy: context.listenerPolicy)
        else { return nil }
        let name = UnsafeRawBufferPointer(rebasing: bytes[12..<nameEnd])
        let question = UnsafeRawBufferPointer(rebasing: bytes[12..<(nameEnd + 4)])
        let decision = policy.quickDecision(wire: name, type: type)
        if case .pass? = decision {
            return cacheHit(
                bytes, name: name, question: question, type: type, dnssecOK: dnssecOK, payloadSize: payloadSize,
                policy: policy, context: context, started: started)
        }
        guard case .deny(let deny, let error, _)? = decision else { return nil }
        let rcode: DNSRCode
        switch deny {
        case .drop: return nil
        case .nxdomain: rcode = .nxDomain
        case .nodata: rcode = .noError
        case .refused: rcode = .refused
        }
        // QR, RA and the RCODE; RD and CD copied (opcode is QUERY, AD is never set on a denial).
        let flags = 0x8080 | UInt16(bytes[2] & 0x01) << 8 | UInt16(bytes[3] & 0x10) | rcode.rawValue
        let response = Self.denialBytes(
            id: UInt16(bytes[0]) << 8 | UInt16(bytes[1]), flags: flags,
            question: question, dnssecOK: dnssecOK, error: error)
        metrics.record(
            transport: context.transport, qtype: type, policy: policy.name, action: "deny", response: response,
            started: started)
        metrics.recordEDE(error.infoCode)
        return response
    }

    /// A cache hit served from its template, for a name the policy passes.
    private func cacheHit(
        _ bytes: UnsafeRawBufferPointer, name: UnsafeRawBufferPointer, question: UnsafeRawBufferPointer,
        type: DNSType, dnssecOK: Bool?, payloadSize: Int, policy: Policy, context: QueryContext, started: UInt64
    ) -> [UInt8]? {
        guard firewalls.isEmpty || firewalls[policy.name] == nil else { return nil }
        var lower = Array(name)
        DNSName.foldCase(&lower)
        let checkingDisabled = bytes[3] & 0x10 != 0
        let key = CacheKey(
            policy: policy.name, lowercasedName: DNSName(uncheckedWire: lower), type: type,
            dnssecOK: dnssecOK ?? false, checkingDisabled: checkingDisabled)
        // Not counted here: a miss (or an answer this path cannot give) is looked up and
        // counted again by the full path.
        guard let (stored, elapsed) = cache.lookupEntry(key, counting: false), let template = stored.template
        else { return nil }
        let maxSize =
            context.transport != .udp ? 65535 : dnssecOK == nil ? 512 : min(max(payloadSize, 512), Self.maxUDPPayload)
        // RFC 6840 5.8: AD only if the upstream set it and the client asked (AD or DO).
        let asksForAuthenticData = bytes[3] & 0x20 != 0 || dnssecOK == true
        let flags =
            0x8080 | UInt16(bytes[2] & 0x01) << 8 | UInt16(bytes[3] & 0x10) | (template.rcode.rawValue & 0x0F)
            | (template.authenticData && asksForAuthenticData ? 0x0020 : 0)
        guard
            let response = template.response(
                id: UInt16(bytes[0]) << 8 | UInt16(bytes[1]), flags: flags, question: question, dnssecOK: dnssecOK,
                elapsed: elapsed, maxSize: maxSize, ednsPayload: UInt16(Self.maxUDPPayload))
        else { return nil }
        cache.recordHit()
        metrics.record(
            transport: context.transport, qtype: type, policy: policy.name, action: "pass", response: response,
            started: started)
        return response
    }
}
