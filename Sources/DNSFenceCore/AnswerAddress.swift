/// An address an answer hands out (the RDATA of one of its A or AAAA records) and that
/// record's TTL as stored: what a firewall must hold before the answer may go.
public struct AnswerAddress: Sendable, Hashable {
    public var address: IPAddress
    public var ttl: UInt32

    public init(address: IPAddress, ttl: UInt32) {
        self.address = address
        self.ttl = ttl
    }
}
