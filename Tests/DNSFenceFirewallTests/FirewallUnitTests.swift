import DNSFenceCore
import Testing

@testable import DNSFenceFirewall

let v4 = SetTarget(netns: "/run/netns/sb", family: "inet", table: "fence", set: "allow4", isIPv6: false)
let v6 = SetTarget(netns: "/run/netns/sb", family: "inet", table: "fence", set: "allow6", isIPv6: true)

@Suite("nftables commands")
struct NftablesCommandTests {
    @Test("set creation is idempotent text: add table, add set with flags timeout")
    func render() {
        #expect(
            NftablesCommand.create(v6)
                == "add table inet fence\nadd set inet fence allow6 { type ipv6_addr; flags timeout; }")
    }

    @Test("names that are not identifiers are refused", arguments: ["bad-name", "x; flush ruleset", "", "1abc"])
    func invalid(_ name: String) {
        #expect(!NftablesCommand.isValid(SetTarget(netns: nil, family: "inet", table: name, set: "s", isIPv6: false)))
        #expect(!NftablesCommand.isValid(SetTarget(netns: nil, family: "inet", table: "t", set: name, isIPv6: false)))
    }

    @Test("a set listing yields type, flags and remaining time")
    func parse() {
        let listing = NftablesCommand.parseListing(
            """
            table inet fence {
            \tset allow4 {
            \t\ttype ipv4_addr
            \t\tflags timeout
            \t\telements = { 192.0.2.10 timeout 5m30s expires 5m29s980ms, 192.0.2.11 timeout 1h expires 59m1s,
            \t\t\t     192.0.2.12 timeout 1d expires 1d2h3m4s5ms }
            \t}
            }
            """)
        #expect(listing.type == "ipv4_addr")
        #expect(listing.hasTimeoutFlag)
        #expect(listing.elements.map(\.address.description) == ["192.0.2.10", "192.0.2.11", "192.0.2.12"])
        #expect(listing.elements.map(\.expiresIn) == [329, 3541, 93784])
        let bare = NftablesCommand.parseListing("table ip t {\n\tset s {\n\t\ttype ipv6_addr\n\t}\n}\n")
        #expect(bare.type == "ipv6_addr")
        #expect(!bare.hasTimeoutFlag)
        #expect(bare.elements.isEmpty)
    }
}

@Suite("Set shadow")
struct SetShadowTests {
    let address = IPAddress("192.0.2.1")!

    @Test("extend, never shorten; skip what changes nothing")
    func extendNeverShorten() {
        var shadow = SetShadow(trustSeconds: 10)
        let long = SetElement(target: v4, address: address, timeout: 3600)
        #expect(shadow.plan(long, now: 100) == long)
        shadow.committed(long, now: 100)
        // A shorter answer later needs no commit while the element is trusted…
        #expect(shadow.plan(SetElement(target: v4, address: address, timeout: 60), now: 105) == nil)
        // …and once trust lapses it is re-added with what is left of the longer timeout.
        #expect(shadow.plan(SetElement(target: v4, address: address, timeout: 60), now: 200)?.timeout == 3500)
        // A longer one extends.
        #expect(shadow.plan(SetElement(target: v4, address: address, timeout: 7200), now: 105)?.timeout == 7200)
    }

    @Test("a deleted element is re-published, still without shortening")
    func forget() {
        var shadow = SetShadow(trustSeconds: 10)
        shadow.committed(SetElement(target: v4, address: address, timeout: 600), now: 0)
        shadow.forget([address], inSetsWhere: { $0 == v4 })
        #expect(shadow.plan(SetElement(target: v4, address: address, timeout: 60), now: 1)?.timeout == 599)
        shadow.committed(SetElement(target: v4, address: address, timeout: 599), now: 1)
        shadow.forgetSets { $0.table == "fence" }
        #expect(shadow.plan(SetElement(target: v4, address: address, timeout: 60), now: 2) != nil)
    }

    @Test("sets with one name in other tables, families or namespaces are told apart")
    func sameNameElsewhere() {
        var shadow = SetShadow(trustSeconds: 10)
        let others = [
            SetTarget(netns: v4.netns, family: v4.family, table: "other", set: v4.set, isIPv6: false),
            SetTarget(netns: "/run/netns/x", family: v4.family, table: v4.table, set: v4.set, isIPv6: false),
            SetTarget(netns: v4.netns, family: "ip", table: v4.table, set: v4.set, isIPv6: false),
        ]
        #expect(others.allSatisfy { $0 != v4 })
        #expect(v4 == SetTarget(netns: v4.netns, family: v4.family, table: v4.table, set: v4.set, isIPv6: false))
        shadow.committed(SetElement(target: v4, address: address, timeout: 600), now: 0)
        for other in others {
            #expect(shadow.plan(SetElement(target: other, address: address, timeout: 60), now: 1) != nil)
        }
        #expect(shadow.plan(SetElement(target: v4, address: address, timeout: 60), now: 1) == nil)
    }

    @Test("a batch is planned once per set and address, with the longest timeout, and recorded at once")
    func batch() {
        var shadow = SetShadow(trustSeconds: 10)
        let v6 = SetTarget(netns: nil, family: "inet", table: "fence", set: "allow6", isIPv6: true)
        let other = IPAddress("192.0.2.2")!
        let six = IPAddress("2001:db8::1")!
        shadow.committed([SetElement(target: v4, address: other, timeout: 600)], now: 0)
        let planned = shadow.plan(
            [
                SetElement(target: v4, address: address, timeout: 60),
                SetElement(target: v6, address: six, timeout: 60),
                SetElement(target: v4, address: address, timeout: 300),
                SetElement(target: v4, address: other, timeout: 60),  // already there for longer
                SetElement(target: v4, address: address, timeout: 120),
            ], now: 1)
        #expect(
            planned == [
                SetElement(target: v4, address: address, timeout: 300),
                SetElement(target: v6, address: six, timeout: 60),
            ])
        shadow.committed(planned, now: 1)
        #expect(shadow.plan(planned, now: 1).isEmpty)
        #expect(shadow.count == 3)
    }

    /// The batch merge against a simple model: first-seen order, each set and address once,
    /// the longest timeout; seeded batches of 1 to 1,000 elements over few addresses (many
    /// duplicates) and two sets per family, so that targets and probing are exercised.
    @Test func mergeAgainstModel() {
        let targets = [
            v4, v6, SetTarget(netns: nil, family: "inet", table: "fence", set: "allow4", isIPv6: false),
            SetTarget(netns: nil, family: "inet", table: "fence", set: "allow6", isIPv6: true),
        ]
        var random = SplitMix64(seed: 11)
        for round in 0..<100 {
            let count = round == 0 ? 1 : Int(random.next() % 1_000) + 1
            let distinct = UInt64(round % 4 == 0 ? 3 : 64)
            let batch = (0..<count).map { _ -> SetElement in
                let target = targets[Int(random.next() % 4)]
                let n = random.next() % distinct
                let address: IPAddress =
                    target.isIPv6 ? .v6(high: 0x2001_0DB8 << 32, low: n << 40) : .v4(0xC000_0200 &+ UInt32(n) << 24)
                return SetElement(target: target, address: address, timeout: UInt32(random.next() % 1_000) + 1)
            }
            var model: [SetElement] = []
            for element in batch {
                if let at = model.firstIndex(where: { $0.target == element.target && $0.address == element.address }) {
                    model[at].timeout = max(model[at].timeout, element.timeout)
                } else {
                    model.append(element)
                }
            }
            #expect(SetShadow.merged(batch) == model, "round \(round)")
        }
    }

    @Test("live elements seed the shadow at start")
    func seed() {
        var shadow = SetShadow(trustSeconds: 10)
        shadow.seed(v4, elements: [(address, 500)], now: 0)
        #expect(shadow.plan(SetElement(target: v4, address: address, timeout: 100), now: 1) == nil)
        #expect(shadow.plan(SetElement(target: v4, address: address, timeout: 100), now: 50)?.timeout == 450)
    }
}

@Suite("Address admission")
struct AddressAdmissionTests {
    @Test(
        "never admitted",
        arguments: [
            "127.0.0.1", "0.0.0.0", "169.254.169.254", "169.254.1.1", "224.0.0.1", "255.255.255.255", "::1", "::",
            "fe80::1", "ff02::1", "fd00:ec2::254", "::ffff:10.0.0.1",
        ])
    func denied(_ text: String) {
        #expect(!AddressAdmission.admits(IPAddress(text)!, admitPrivate: true))
    }

    @Test func privateRanges() {
        for text in ["10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "fd12::1"] {
            #expect(AddressAdmission.admits(IPAddress(text)!, admitPrivate: true))
            #expect(!AddressAdmission.admits(IPAddress(text)!, admitPrivate: false))
        }
        #expect(AddressAdmission.admits(IPAddress("192.0.2.1")!, admitPrivate: false))
        #expect(AddressAdmission.admits(IPAddress("2001:db8::1")!, admitPrivate: false))
    }

    /// The filter (prefix matching with masks on the address words) decides as comparing each
    /// prefix's leading bits byte by byte does: every range's first and last address and its
    /// neighbours outside, and seeded random addresses.
    @Test func masksAgreeWithPrefixes() {
        func inside(_ prefix: IPPrefix, _ address: IPAddress) -> Bool {
            guard prefix.address.isIPv4 == address.isIPv4 else { return false }
            let bytes = address.bytes
            let network = prefix.address.bytes
            let whole = prefix.length / 8
            guard bytes[..<whole] == network[..<whole] else { return false }
            let bits = prefix.length % 8
            guard bits > 0 else { return true }
            let mask = UInt8(0xFF) << UInt8(8 - bits)
            return bytes[whole] & mask == network[whole] & mask
        }
        func model(_ address: IPAddress, admitPrivate: Bool) -> Bool {
            if AddressAdmission.alwaysDenied.contains(where: { inside($0, address) }) { return false }
            return admitPrivate || !AddressAdmission.privateRanges.contains(where: { inside($0, address) })
        }
        var addresses: [IPAddress] = []
        for prefix in AddressAdmission.alwaysDenied + AddressAdmission.privateRanges {
            switch prefix.address {
            case .v4(let network):
                let last = network | (prefix.length == 0 ? ~0 : ~(~UInt32(0) << UInt32(32 - prefix.length)))
                addresses += [network, last, network &- 1, last &+ 1].map { IPAddress.v4($0) }
            case .v6(let high, let low):
                let hostHigh = prefix.length >= 64 ? 0 : ~UInt64(0) >> UInt64(prefix.length)
                let hostLow =
                    prefix.length <= 64
                    ? ~UInt64(0) : prefix.length == 128 ? 0 : ~UInt64(0) >> UInt64(prefix.length - 64)
                addresses += [
                    .v6(high: high, low: low), .v6(high: high | hostHigh, low: low | hostLow),
                    .v6(high: low == 0 ? high &- 1 : high, low: low &- 1),
                    .v6(
                        high: (low | hostLow) == ~0 ? (high | hostHigh) &+ 1 : high | hostHigh,
                        low: (low | hostLow) &+ 1),
                ]
            }
        }
        var random = SplitMix64(seed: 4)
        for _ in 0..<20_000 {
            addresses.append(.v4(UInt32(truncatingIfNeeded: random.next())))
            addresses.append(.v6(high: random.next(), low: random.next()))
            // High bits of the special IPv6 ranges, so that they are hit too.
            addresses.append(
                .v6(
                    high: [0, 0xFE80 << 48, 0xFF02 << 48, 0xFD00 << 48, 0xFD00_0EC2 << 32][Int(random.next() % 5)],
                    low: random.next() % 4 == 0 ? 0x254 : random.next()))
        }
        for address in addresses {
            for admitPrivate in [false, true] {
                #expect(
                    AddressAdmission.admits(address, admitPrivate: admitPrivate)
                        == model(address, admitPrivate: admitPrivate),
                    "\(address) admitPrivate \(admitPrivate)")
            }
        }
    }
}
