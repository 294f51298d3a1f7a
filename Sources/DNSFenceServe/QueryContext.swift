// DNSFenceServe: one query from bytes to answer (view → decision → render → release), and the
// UDP/TCP listeners that feed it. docs/architecture.md walks through it.

public import DNSFenceCore

/// Where a query arrived.
public enum Transport: String, Sendable {
    case udp
    case tcp
}

/// What the pipeline needs to know about one query besides its bytes.
public struct QueryContext: Sendable {
    public var client: IPAddress
    public var listenerPolicy: String?
    public var transport: Transport

    public init(client: IPAddress, listenerPolicy: String?, transport: Transport) {
        self.client = client
        self.listenerPolicy = listenerPolicy
        self.transport = transport
    }
}
