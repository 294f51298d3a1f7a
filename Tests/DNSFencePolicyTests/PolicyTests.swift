import DNSFenceCore
import DNSFencePolicy
import DNSFenceWire
import Testing

let sampleRPZ = """
    $TTL 60
    @  SOA localhost. root.localhost. 1 3600 600 86400 60
       NS  localhost.
    example.com     CNAME rpz-passthru.      ; allow exactly this name
    *.example.org   CNAME rpz-passthru.      ; allow its subdomains
    api.internal    A     10.200.0.2         ; rewrite to the proxy
    api.internal    AAAA  fd00::2
    blocked.example.org CNAME .
    empty.example.org   CNAME *.
    silent.example.org  CNAME rpz-drop.
    *.cdn.example.org   CNAME rpz-passthru.
    alias.internal  CNAME api.internal.
    """

let sampleList = """
    # plain allowlist
    allowed.test
    *.wild.test     # subdomains only
    Mixed.Case.TEST.
    """

func compile(_ sources: [PolicySource], types: Set<DNSType> = Policy.defaultTypes, deny: DenyResponse = .nxdomain)
    throws -> PolicyCompiler.Output
{
    try PolicyCompiler().compile(name: "sandbox", sources: sources, allowedTypes: types, denyResponse: deny)
}

struct DecisionCase: Sendable, CustomTestStringConvertible {
    var name: String
    var type: DNSType
    var expected: String
    var rule: String?
    var testDescription: String { "\(name) \(type) → \(expected)" }
}

@Suite("Policy decisions")
struct PolicyTests {
    static let policy: Policy = {
        do {
            return try compile([
                PolicySource(file: "zones/sandbox.rpz", text: sampleRPZ),
                PolicySource(file: "zones/sandbox.allow", text: sampleList),
            ]).policy
        } catch {
            preconditionFailure("\(error)")
        }
    }()

    static let cases: [DecisionCase] = [
        // RPZ actions
        DecisionCase(name: "example.com", type: .a, expected: "pass", rule: "zones/sandbox.rpz:4"),
        DecisionCase(name: "www.example.com", type: .a, expected: "deny nxdomain EDE15", rule: nil),
        DecisionCase(name: "example.org", type: .a, expected: "deny nxdomain EDE15", rule: nil),
        DecisionCase(name: "a.b.example.org", type: .aaaa, expected: "pass", rule: "zones/sandbox.rpz:5"),
        DecisionCase(
            name: "blocked.example.org", type: .a, expected: "deny nxdomain EDE15", rule: "zones/sandbox.rpz:8"),
        DecisionCase(name: "empty.example.org", type: .a, expected: "deny nodata EDE15", rule: "zones/sandbox.rpz:9"),
        DecisionCase(name: "silent.example.org", type: .a, expected: "deny drop EDE15", rule: "zones/sandbox.rpz:10"),
        // longer suffix beats shorter
        DecisionCase(name: "x.cdn.example.org", type: .a, expected: "pass", rule: "zones/sandbox.rpz:11"),
        // exact beats wildcard
        DecisionCase(name: "sub.blocked.example.org", type: .a, expected: "pass", rule: "zones/sandbox.rpz:5"),
        // local data
        DecisionCase(name: "api.internal", type: .a, expected: "local A", rule: "zones/sandbox.rpz:6"),
        DecisionCase(name: "API.Internal", type: .aaaa, expected: "local AAAA", rule: "zones/sandbox.rpz:6"),
        DecisionCase(name: "api.internal", type: .https, expected: "local nodata", rule: "zones/sandbox.rpz:6"),
        DecisionCase(name: "alias.internal", type: .a, expected: "local CNAME", rule: "zones/sandbox.rpz:12"),
        // qtype filtering
        DecisionCase(name: "example.com", type: .txt, expected: "deny nodata EDE17", rule: "zones/sandbox.rpz:4"),
        DecisionCase(name: "api.internal", type: .mx, expected: "deny nodata EDE17", rule: "zones/sandbox.rpz:6"),
        // plain list
        DecisionCase(name: "allowed.test", type: .a, expected: "pass", rule: "zones/sandbox.allow:2"),
        DecisionCase(name: "sub.allowed.test", type: .a, expected: "deny nxdomain EDE15", rule: nil),
        DecisionCase(name: "wild.test", type: .a, expected: "deny nxdomain EDE15", rule: nil),
        DecisionCase(name: "a.wild.test", type: .a, expected: "pass", rule: "zones/sandbox.allow:3"),
        DecisionCase(name: "mixed.case.test", type: .a, expected: "pass", rule: "zones/sandbox.allow:4"),
        DecisionCase(name: "unrelated.net", type: .a, expected: "deny nxdomain EDE15", rule: nil),
        DecisionCase(name: ".", type: .ns, expected: "deny nxdomain EDE15", rule: nil),
    ]

    static func summary(_ decision: PolicyDecision) -> String {
        switch decision {
        case .pass: return "pass"
        case .localData(let records, _):
            return records.isEmpty
                ? "local nodata" : "local " + Set(records.map(\.type.description)).sorted().joined(separator: ",")
        case .deny(let response, let error, _): return "deny \(response.rawValue) EDE\(error.infoCode)"
        }
    }

    @Test("decision table", arguments: cases)
    func decide(_ item: DecisionCase) throws {
        let decision = Self.policy.decide(DNSQuestion(name: try DNSName(item.name), type: item.type))
        #expect(Self.summary(decision) == item.expected)
        #expect(decision.rule?.description == item.rule)
    }

    @Test("local data answers carry the name as asked")
    func localDataOwner() throws {
        let asked = try DNSName("API.internal")
        guard case .localData(let records, _) = Self.policy.decide(DNSQuestion(name: asked, type: .a)) else {
            Issue.record("expected local data")
            return
        }
        #expect(records.map(\.name.wire) == [asked.wire])
        #expect(records.first?.address == IPAddress("10.200.0.2"))
        #expect(records.first?.ttl == 60)
    }

    @Test("EDE text names the policy and the rule")
    func edeText() throws {
        let decision = Self.policy.decide(DNSQuestion(name: try DNSName("blocked.example.org"), type: .a))
        guard case .deny(_, let error, _) = decision else {
            Issue.record("expected deny")
            return
        }
        #expect(error.extraText == "dnsfence: policy sandbox: denied by zones/sandbox.rpz:8")
    }

    @Test("the configured deny response applies to default deny", arguments: DenyResponse.allCases)
    func denyResponse(_ response: DenyResponse) throws {
        let policy = try compile([PolicySource(file: "a.allow", text: "ok.test\n")], deny: response).policy
        let decision = policy.decide(DNSQuestion(name: try DNSName("other.test"), type: .a))
        #expect(
            decision
                == .deny(
                    response: response,
                    error: ExtendedDNSError(15, "dnsfence: policy sandbox: not allowlisted"), rule: nil))
    }

    @Test("a custom type list replaces the default")
    func customTypes() throws {
        let policy = try compile([PolicySource(file: "a.allow", text: "ok.test\n")], types: [.a, .txt]).policy
        #expect(policy.decide(DNSQuestion(name: try DNSName("ok.test"), type: .txt)).actionLabel == "pass")
        #expect(policy.decide(DNSQuestion(name: try DNSName("ok.test"), type: .aaaa)).actionLabel == "deny")
    }
}

struct LoadErrorCase: Sendable, CustomTestStringConvertible {
    var label: String
    var source: PolicySource
    var expected: PolicyLoadError
    var testDescription: String { label }
}

@Suite("Policy load errors and warnings")
struct PolicyLoadTests {
    static let soa = "$TTL 60\n@ SOA localhost. root.localhost. 1 3600 600 86400 60\n"
    static let cases: [LoadErrorCase] = [
        LoadErrorCase(
            label: "two names on a line", source: PolicySource(file: "l.allow", text: "a.test\nb.test c.test\n"),
            expected: PolicyLoadError(
                file: "l.allow", line: 2, message: "expected one name per line, found 'b.test c.test'")),
        LoadErrorCase(
            label: "star inside a name", source: PolicySource(file: "l.allow", text: "a.*.test\n"),
            expected: PolicyLoadError(
                file: "l.allow", line: 1,
                message: "'a.*.test': '*' is only allowed as the whole first label ('*.example.com')")),
        LoadErrorCase(
            label: "U-label", source: PolicySource(file: "l.allow", text: "\n\nbücher.example\n"),
            expected: PolicyLoadError(
                file: "l.allow", line: 3,
                message: "'bücher.example': label 'bücher' is not ASCII; write its A-label 'xn--bcher-kva' instead")),
        LoadErrorCase(
            label: "bad zone line",
            source: PolicySource(file: "z.rpz", text: soa + "ok.test CNAME rpz-passthru.\nbad.test A 300.1.2.3\n"),
            expected: PolicyLoadError(
                file: "z.rpz", line: 4, message: "Syntax error, could not parse the RR's rdata: 'bad.test A 300.1.2.3'")
        ),
        LoadErrorCase(
            label: "no SOA", source: PolicySource(file: "z.rpz", text: "ok.test CNAME rpz-passthru.\n"),
            expected: PolicyLoadError(
                file: "z.rpz", line: 1, message: "an RPZ zone must start with its SOA record, found CNAME")),
        LoadErrorCase(
            label: "IP trigger", source: PolicySource(file: "z.rpz", text: soa + "32.1.2.0.10.rpz-ip CNAME .\n"),
            expected: PolicyLoadError(
                file: "z.rpz", line: 3, message: "RPZ trigger 'rpz-ip' is not supported (only QNAME triggers)")),
        LoadErrorCase(
            label: "action beside data",
            source: PolicySource(file: "z.rpz", text: soa + "x.test A 10.0.0.1\nx.test CNAME .\n"),
            expected: PolicyLoadError(
                file: "z.rpz", line: 4,
                message: "x.test. already has local data at line 3; an RPZ action must be the name's only record")),
        LoadErrorCase(
            label: "owner outside the zone", source: PolicySource(file: "z.rpz", text: soa + "x.test. CNAME .\n"),
            expected: PolicyLoadError(
                file: "z.rpz", line: 3,
                message: "owner x.test. is outside the zone rpz.invalid. (write names relative to the zone)")),
        LoadErrorCase(
            label: "$INCLUDE", source: PolicySource(file: "z.rpz", text: soa + "$INCLUDE /etc/passwd\n"),
            expected: PolicyLoadError(file: "z.rpz", line: 3, message: "$INCLUDE is not supported")),
    ]

    @Test("load errors name file and line", arguments: cases)
    func loadError(_ item: LoadErrorCase) {
        #expect(throws: item.expected) { try compile([item.source]) }
    }

    @Test("wildcards on public suffixes, allow-all and conflicts are warned about")
    func warnings() throws {
        let output = try compile([
            PolicySource(file: "w.allow", text: "*.com\n*.co.uk\n*.example.co.uk\n*\nok.test\n"),
            PolicySource(file: "w.rpz", text: Self.soa + "ok.test CNAME .\n"),
        ])
        #expect(
            output.warnings.map(\.description) == [
                "w.rpz:3: warning: rule ok.test. (deny) conflicts with w.allow:5 (pass); the earlier rule wins",
                "w.allow:1: warning: '*.com.' is a wildcard on the public suffix 'com.': it allows names of unrelated owners",
                "w.allow:2: warning: '*.co.uk.' is a wildcard on the public suffix 'co.uk.': it allows names of unrelated owners",
                "w.allow:4: warning: '*.' allows every name: the policy filters nothing",
            ])
        // The earlier (pass) rule won.
        #expect(output.policy.decide(DNSQuestion(name: try DNSName("ok.test"), type: .a)).actionLabel == "pass")
    }
}

@Suite("Client policy selection")
struct ClientPolicySelectorTests {
    static func policy(_ name: String) throws -> Policy {
        try PolicyCompiler().compile(name: name, sources: []).policy
    }

    @Test func selection() throws {
        let selector = ClientPolicySelector([
            .init(policy: try Self.policy("wide"), clients: [IPPrefix("10.0.0.0/8")!]),
            .init(policy: try Self.policy("narrow"), clients: [IPPrefix("10.200.0.0/24")!]),
            .init(policy: try Self.policy("listener"), clients: []),
            .init(policy: try Self.policy("guarded"), clients: [IPPrefix("192.168.1.0/24")!]),
        ])
        #expect(selector.select(client: IPAddress("10.200.0.5")!, listenerPolicy: nil)?.name == "narrow")
        #expect(selector.select(client: IPAddress("10.1.0.5")!, listenerPolicy: nil)?.name == "wide")
        #expect(selector.select(client: IPAddress("172.16.0.1")!, listenerPolicy: nil) == nil)
        #expect(selector.select(client: IPAddress("10.200.0.5")!, listenerPolicy: "listener")?.name == "listener")
        #expect(selector.select(client: IPAddress("192.168.1.9")!, listenerPolicy: "guarded")?.name == "guarded")
        #expect(selector.select(client: IPAddress("192.168.2.9")!, listenerPolicy: "guarded") == nil)
        #expect(selector.select(client: IPAddress("::1")!, listenerPolicy: "missing") == nil)
    }
}

@Suite("CNAME chains")
struct ChainTests {
    static func wire(_ name: String) -> [UInt8]? { (try? DNSName(name))?.wire }

    @Test("a denied target ends the chain under its rule; unlisted targets are followed; loops and long chains break")
    func judge() throws {
        let policy = PolicyTests.policy
        let question = try #require(Self.wire("example.com"))
        guard
            case .denied(_, let ede, let rule) = policy.judgeChain(
                question: question, targets: [Self.wire("cdn.other.net"), Self.wire("blocked.example.org")], type: .a)
        else {
            Issue.record("a target with a deny rule must deny")
            return
        }
        #expect(rule?.file == "zones/sandbox.rpz" && ede.extraText.contains("blocked.example.org."))
        guard case .follow = policy.judgeChain(question: question, targets: [Self.wire("cdn.other.net")], type: .a)
        else {
            Issue.record("an unlisted target is followed")
            return
        }
        guard
            case .broken(let loop) = policy.judgeChain(
                question: question, targets: [Self.wire("EXAMPLE.com")], type: .a)
        else {
            Issue.record("a chain back to the question is a loop, in any letter case")
            return
        }
        #expect(loop == "a CNAME loop")
        let long = (0..<17).map { Self.wire("c\($0).cdn.net") }
        guard case .broken = policy.judgeChain(question: question, targets: long, type: .a) else {
            Issue.record("17 links break")
            return
        }
        guard case .broken = policy.judgeChain(question: question, targets: [nil], type: .a) else {
            Issue.record("an unreadable target breaks")
            return
        }
    }
}
