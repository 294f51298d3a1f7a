import DNSFenceResolve
public import DNSFenceWire

#if canImport(Glibc)
    import Glibc
#endif

/// Renders the decisions it can straight from the query's bytes, with no ``DNSMessage``:
/// denials written from the question as the client sent it, and cache hits as the stored
/// template with the question copied in and TTLs patched. On the hot and denied workloads this
/// is most of what the server does (DESIGN.md, "Performance notes"). Anything else (and any
/// query whose question is not stored uncompressed at offset 12) it declines, and the
/// ``MessageRenderer`` renders the same decision. It decides nothing: byte for byte, what it
/// writes is what the message renderer writes (the differential tests check that).
public enum ByteRenderer {
    /// Where an answer goes: `count` bytes that `write` fills in place (straight into a
    /// socket's send buffer: no array per answer).
    public typealias Emit = (_ count: Int, _ write: (UnsafeMutableBufferPointer<UInt8>) -> Void) -> Void

    /// Writes the answer for `decision` through `emit` and returns its RCODE (low four bits),
    /// or returns nil and writes nothing when it cannot render this decision.
    @inline(__always)
    public static func render(_ decision: borrowing QueryDecision, view: QueryView, emit: Emit) -> UInt8? {
        guard let question = view.questionBytes else { return nil }
        switch decision.verdict {
        case .deny(let rcode):
            guard let error = decision.ede else { return nil }
            let flags = view.responseFlags(rcode: rcode, authenticData: false)
            let dnssecOK = view.ednsDO
            let soa = DNSMessage.denialCarriesSOA(rcode)
            emit(denialSize(question: question, dnssecOK: dnssecOK, error: error, soa: soa)) { out in
                writeDenial(
                    into: out, id: view.id, flags: flags, question: question, dnssecOK: dnssecOK, error: error, soa: soa
                )
            }
            return UInt8(rcode.rawValue & 0x0F)
        case .hit(let hit):
            guard hit.viaTemplate, !hit.truncated, let template = hit.answer.template else { return nil }
            let flags = view.responseFlags(
                rcode: template.rcode, authenticData: template.authenticData && view.asksForAuthenticData)
            let dnssecOK = view.ednsDO
            emit(template.size(edns: dnssecOK != nil)) { out in
                template.write(
                    into: out, id: view.id, flags: flags, question: question, dnssecOK: dnssecOK,
                    elapsed: hit.elapsed, ednsPayload: UInt16(DNSMessage.advertisedPayload))
            }
            return UInt8(template.rcode.rawValue & 0x0F)
        case .slip:
            let flags = view.responseFlags(rcode: .noError, authenticData: false) | 0x0200  // TC
            let dnssecOK = view.ednsDO
            emit(12 + question.count + (dnssecOK == nil ? 0 : 11)) { out in
                out.storeHeader(id: view.id, flags: flags, counts: (1, 0, 0, dnssecOK == nil ? 0 : 1))
                UnsafeMutableRawBufferPointer(start: out.baseAddress! + 12, count: question.count)
                    .copyMemory(from: question)
                if let dnssecOK {
                    _ = out.storeOPT(
                        at: 12 + question.count, payloadSize: UInt16(DNSMessage.advertisedPayload),
                        dnssecOK: dnssecOK, rdataLength: 0)
                }
            }
            return 0
        default:
            return nil
        }
    }

    /// The size of a denial as ``MessageRenderer`` encodes it and ``writeDenial`` writes it:
    /// header, the question copied verbatim from the query (case as asked), the denial SOA for
    /// NXDOMAIN and NODATA (`soa`), and for EDNS clients (`dnssecOK` not nil) an OPT record
    /// carrying the EDE.
    static func denialSize(question: UnsafeRawBufferPointer, dnssecOK: Bool?, error: ExtendedDNSError, soa: Bool)
        -> Int
    {
        12 + question.count + (soa ? DNSMessage.denialSOABytes.count : 0)
            + (dnssecOK == nil ? 0 : 11 + 4 + 2 + error.extraText.utf8.count)
    }

    /// Writes that denial into `out`, which holds exactly
    /// ``denialSize(question:dnssecOK:error:soa:)`` bytes.
    static func writeDenial(
        into out: UnsafeMutableBufferPointer<UInt8>, id: UInt16, flags: UInt16, question: UnsafeRawBufferPointer,
        dnssecOK: Bool?, error: ExtendedDNSError, soa: Bool
    ) {
        var text = error.extraText
        let textLength = text.utf8.count
        let optionLength = 2 + textLength  // INFO-CODE + EXTRA-TEXT
        var questionEnd = 12 + question.count
        out.storeHeader(id: id, flags: flags, counts: (1, 0, soa ? 1 : 0, dnssecOK == nil ? 0 : 1))
        UnsafeMutableRawBufferPointer(start: out.baseAddress! + 12, count: question.count).copyMemory(from: question)
        if soa {
            DNSMessage.denialSOABytes.withUnsafeBytes { bytes in
                _ = memcpy(out.baseAddress! + questionEnd, bytes.baseAddress!, bytes.count)
            }
            questionEnd += DNSMessage.denialSOABytes.count
        }
        if let dnssecOK {
            var at = out.storeOPT(
                at: questionEnd, payloadSize: UInt16(DNSMessage.advertisedPayload), dnssecOK: dnssecOK,
                rdataLength: UInt16(4 + optionLength))
            out.storeBigEndian(EDNSOption.extendedErrorCode, at: at)
            out.storeBigEndian(UInt16(optionLength), at: at + 2)
            out.storeBigEndian(error.infoCode, at: at + 4)
            at += 6
            if textLength > 0 {
                text.withUTF8 { utf8 in _ = memcpy(out.baseAddress! + at, utf8.baseAddress!, textLength) }
            }
        }
    }
}
