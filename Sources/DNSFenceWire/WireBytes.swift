#if canImport(Glibc)
    import Glibc
#endif

/// Byte-level helpers for the places that write DNS messages in place (cache hits from a
/// ``ResponseTemplate``, denials written from the question bytes).
extension UnsafeMutableBufferPointer where Element == UInt8 {
    /// Stores `value` in network byte order at `offset`.
    @inlinable package func storeBigEndian(_ value: UInt16, at offset: Int) {
        self[offset] = UInt8(value >> 8)
        self[offset + 1] = UInt8(value & 0xFF)
    }

    /// Stores `value` in network byte order at `offset`.
    @inlinable package func storeBigEndian(_ value: UInt32, at offset: Int) {
        storeBigEndian(UInt16(value >> 16), at: offset)
        storeBigEndian(UInt16(value & 0xFFFF), at: offset + 2)
    }

    /// Copies `count` bytes of `source`, from `start`, to `offset`.
    @inlinable package func storeBytes(of source: [UInt8], from start: Int, count: Int, at offset: Int) {
        source.withUnsafeBytes { raw in
            UnsafeMutableRawBufferPointer(start: baseAddress! + offset, count: count).copyMemory(
                from: UnsafeRawBufferPointer(rebasing: raw[start..<(start + count)]))
        }
    }

    /// The value in network byte order at `offset`.
    @inlinable package func loadBigEndian32(at offset: Int) -> UInt32 {
        UInt32(self[offset]) << 24 | UInt32(self[offset + 1]) << 16 | UInt32(self[offset + 2]) << 8
            | UInt32(self[offset + 3])
    }

    /// Stores a DNS header: ID, flags and the four section counts.
    @inlinable package func storeHeader(id: UInt16, flags: UInt16, counts: (UInt16, UInt16, UInt16, UInt16)) {
        storeBigEndian(id, at: 0)
        storeBigEndian(flags, at: 2)
        storeBigEndian(counts.0, at: 4)
        storeBigEndian(counts.1, at: 6)
        storeBigEndian(counts.2, at: 8)
        storeBigEndian(counts.3, at: 10)
    }

    /// Stores an OPT record (root owner, extended RCODE and version 0) at `offset` whose RDATA,
    /// `rdataLength` bytes, the caller writes next; returns where the RDATA starts.
    @inlinable package func storeOPT(at offset: Int, payloadSize: UInt16, dnssecOK: Bool, rdataLength: UInt16) -> Int {
        self[offset] = 0
        storeBigEndian(DNSType.opt.rawValue, at: offset + 1)
        storeBigEndian(payloadSize, at: offset + 3)
        storeBigEndian(UInt16(0), at: offset + 5)
        storeBigEndian(dnssecOK ? UInt16(0x8000) : 0, at: offset + 7)
        storeBigEndian(rdataLength, at: offset + 9)
        return offset + 11
    }
}

extension DNSMessage {
    /// Whether a response to this query may set AD: the client set AD or DO (RFC 6840 5.8).
    package var asksForAuthenticData: Bool { authenticData || edns?.dnssecOK == true }

    /// The flags word of a response to this query: QR and RA set, opcode, RD and CD copied,
    /// AD as given, RCODE's low four bits.
    @inlinable package func responseFlags(rcode: DNSRCode, authenticData: Bool) -> UInt16 {
        Self.responseFlags(toQueryFlags: flagsWord, rcode: rcode, authenticData: authenticData)
    }

    /// The same from the query's flags word as on the wire.
    @inlinable package static func responseFlags(toQueryFlags query: UInt16, rcode: DNSRCode, authenticData: Bool)
        -> UInt16
    {
        // QR, RA; opcode, RD and CD from the query; AD as given; the RCODE's low four bits.
        0x8080 | (query & 0x7900) | (query & 0x0010) | (authenticData ? 0x0020 : 0) | (rcode.rawValue & 0x0F)
    }
}

extension DNSName {
    /// Whether `bytes` hold this name exactly (same letter case, uncompressed) at `offset`: the
    /// question of a query as the client sent it, ready to be copied into the answer.
    package func isStored(in bytes: [UInt8], at offset: Int) -> Bool {
        bytes.withUnsafeBytes { isStored(in: $0, at: offset) }
    }

    /// The same for bytes in place.
    package func isStored(in bytes: UnsafeRawBufferPointer, at offset: Int) -> Bool {
        guard bytes.count >= offset + wire.count else { return false }
        return wire.withUnsafeBytes { memcmp(bytes.baseAddress! + offset, $0.baseAddress!, $0.count) == 0 }
    }
}
