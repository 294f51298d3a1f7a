// DNSFenceTransfer: dnsfence as a secondary for policy zones (RFC 5936 AXFR, RFC 1995 IXFR,
// RFC 1996 NOTIFY, RFC 8945 TSIG). Transfers run on their own threads, never on the loops; a
// completed transfer is handed to the server as text and applied like a reload.

import CLDNS
import DNSFenceCore

/// A TSIG key (RFC 8945): its name, HMAC algorithm and base64 secret, shared with the primary.
public struct TSIGKey: Sendable, Hashable, CustomStringConvertible {
    /// The algorithms offered (ldns's HMACs; HMAC-MD5 is not: RFC 8945 6 deprecates it).
    public static let algorithms = ["hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1"]

    /// The key's name, absolute and lowercased (`transfer.example.`).
    public var name: String
    /// One of ``algorithms``.
    public var algorithm: String
    /// The shared secret, base64.
    public var secret: String

    public init(name: String, algorithm: String, secret: String) {
        self.name = name.absoluteLowercased
        self.algorithm = algorithm.lowercased()
        self.secret = secret
    }

    /// The description never shows the secret.
    public var description: String { "\(name) (\(algorithm))" }

    /// The secret in a key file: bare base64, a Knot DNS key (`secret: B64`, as `keymgr -t`
    /// prints) or a BIND key (`secret "B64";`, as `tsig-keygen` prints). Nil when there is none
    /// or it is not base64 of at least 16 bytes.
    public static func secret(inKeyFile text: String) -> String? {
        var candidate: Substring? = nil
        if let range = text.firstRange(of: "secret") {
            let rest = text[range.upperBound...].drop { " \t:\"".contains($0) }
            candidate = rest.prefix { !" \t\n\r\";".contains($0) }
        } else {
            let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingSpaces() }.filter {
                !$0.isEmpty && !$0.hasPrefix("#")
            }
            if lines.count == 1 { candidate = lines[0] }
        }
        guard let candidate, isBase64(candidate, minimumBytes: 16) else { return nil }
        return String(candidate)
    }

    static func isBase64(_ text: Substring, minimumBytes: Int) -> Bool {
        guard text.count % 4 == 0, text.count / 4 * 3 >= minimumBytes else { return false }
        let padding = text.reversed().prefix { $0 == "=" }.count
        guard padding <= 2 else { return false }
        return text.dropLast(padding).allSatisfy {
            $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "/")
        }
    }
}

/// The TSIG state of one exchange with a primary: the request is signed, and every message of
/// the answer must verify against the MAC before it (RFC 8945 5.3.1: the first over the
/// request's MAC and the whole message, the next ones chained over the previous MAC with the
/// timers only). A message without a valid TSIG ends the exchange: nothing of it is used.
final class TSIGSession {
    let key: TSIGKey
    private var mac: UnsafeMutablePointer<ldns_rdf>? = nil
    private var verified = 0

    init(key: TSIGKey) { self.key = key }

    deinit { if let mac { ldns_rdf_deep_free(mac) } }

    /// Signs `packet` (a request); keeps its MAC for the answer.
    func sign(_ packet: UnsafeMutablePointer<ldns_pkt>) throws(TransferError) {
        let status = ldns_pkt_tsig_sign(packet, key.name, key.secret, 300, key.algorithm + ".", nil)
        guard status == LDNS_STATUS_OK else {
            throw .tsig("cannot sign with key \(key): \(String(cString: ldns_get_errorstr_by_id(status)))")
        }
        remember(packet)
    }

    /// Signs an answer to a request whose MAC is `requestMAC` (a NOTIFY's).
    func signAnswer(_ packet: UnsafeMutablePointer<ldns_pkt>) -> Bool {
        ldns_pkt_tsig_sign(packet, key.name, key.secret, 300, key.algorithm + ".", mac) == LDNS_STATUS_OK
    }

    /// Checks the TSIG of one message of the answer (`wire` is its bytes as received).
    func verify(_ packet: UnsafeMutablePointer<ldns_pkt>, wire: [UInt8]) throws(TransferError) {
        guard let tsig = ldns_pkt_tsig(packet) else {
            throw .tsig("message \(verified + 1) of the answer is not signed with key \(key)")
        }
        if let error = ldns_rr_rdf(tsig, 5), ldns_rdf2native_int16(error) != 0 {
            throw .tsig("the primary reports TSIG error \(Self.errorName(ldns_rdf2native_int16(error))) for key \(key)")
        }
        let ok = wire.withUnsafeBufferPointer { bytes in
            ldns_pkt_tsig_verify_next(
                packet, bytes.baseAddress, bytes.count, key.name, key.secret, mac, verified == 0 ? 0 : 1) != 0
        }
        guard ok else { throw .tsig("message \(verified + 1) of the answer fails TSIG verification with key \(key)") }
        verified += 1
        remember(packet)
    }

    /// Checks a request's TSIG (a NOTIFY's); keeps its MAC for the answer.
    func verifyRequest(_ packet: UnsafeMutablePointer<ldns_pkt>, wire: [UInt8]) -> Bool {
        let ok = wire.withUnsafeBufferPointer { bytes in
            ldns_pkt_tsig_verify(packet, bytes.baseAddress, bytes.count, key.name, key.secret, nil) != 0
        }
        if ok { remember(packet) }
        return ok
    }

    private func remember(_ packet: UnsafeMutablePointer<ldns_pkt>) {
        if let mac { ldns_rdf_deep_free(mac) }
        mac = ldns_pkt_tsig(packet).flatMap { ldns_rr_rdf($0, 3) }.flatMap { ldns_rdf_clone($0) }
    }

    static func errorName(_ code: UInt16) -> String {
        switch code {
        case 16: return "BADSIG"
        case 17: return "BADKEY"
        case 18: return "BADTIME"
        case 22: return "BADTRUNC"
        default: return "\(code)"
        }
    }
}
