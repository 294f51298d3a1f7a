// Policy load and lookup benchmark (issue: "a policy with 1,000,000 names must load in seconds
// and look up in microseconds — show it in a benchmark, not a timed test").
//
// Usage: policy-benchmark [NAMES] [LOOKUPS]

import DNSFencePolicy
import DNSFenceWire

#if canImport(Glibc)
    import Glibc
#endif

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func rssMiB() -> Double {
    guard let f = fopen("/proc/self/status", "r") else { return 0 }
    defer { fclose(f) }
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, 256, f) != nil {
        let s = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if s.hasPrefix("VmRSS:") {
            return Double(s.split(separator: " ").dropFirst().first.flatMap { Double($0) } ?? 0) / 1024
        }
    }
    return 0
}

/// `value` with `digits` decimals (no Foundation).
func fixed(_ value: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = Int((value * scale).rounded())
    guard digits > 0 else { return String(scaled) }
    let whole = String(scaled / Int(scale))
    var fraction = String(abs(scaled) % Int(scale))
    while fraction.count < digits { fraction = "0" + fraction }
    return whole + "." + fraction
}

let args = CommandLine.arguments
let count = args.count > 1 ? Int(args[1]) ?? 1_000_000 : 1_000_000
let lookups = args.count > 2 ? Int(args[2]) ?? 1_000_000 : 1_000_000

// A plain list: 90% exact names, 10% wildcards, spread over 1,000 parent domains.
var text = ""
text.reserveCapacity(count * 32)
for i in 0..<count {
    let parent = "zone\(i % 1000).example"
    text += i % 10 == 0 ? "*.w\(i).\(parent)\n" : "host\(i).\(parent)\n"
}
let rssBefore = rssMiB()
let start = now()
let output = try PolicyCompiler().compile(
    name: "bench", sources: [PolicySource(file: "bench.allow", text: text, format: .list)])
let loadSeconds = now() - start
let rssAfter = rssMiB()
text = ""
let policy = output.policy

// Queries: exact hits, wildcard hits (one label below), misses under a known parent.
var questions: [DNSQuestion] = []
var rng = SystemRandomNumberGenerator()
for j in 0..<10_000 {
    let i = Int.random(in: 0..<count, using: &rng)
    let parent = "zone\(i % 1000).example"
    let name: String
    switch j % 3 {
    case 0: name = i % 10 == 0 ? "a.w\(i).\(parent)" : "host\(i).\(parent)"
    case 1: name = "x.y.w\(i - i % 10).zone\((i - i % 10) % 1000).example"
    default: name = "missing\(i).\(parent)"
    }
    questions.append(DNSQuestion(name: try DNSName(name), type: .a))
}
var passes = 0
let t0 = now()
for k in 0..<lookups {
    if case .pass = policy.decide(questions[k % questions.count]) { passes += 1 }
}
let perLookup = (now() - t0) / Double(lookups) * 1e9
let fields: [String] = [
    "names=\(count)", "rules=\(policy.rules.count)", "load_seconds=" + fixed(loadSeconds, 2),
    "rss_delta_mib=" + fixed(rssAfter - rssBefore, 0), "lookups=\(lookups)",
    "ns_per_lookup=" + fixed(perLookup, 0),
    "pass_ratio=" + fixed(Double(passes) / Double(lookups), 2),
]
print(fields.joined(separator: " "))

// An IXFR's worth of changes: 5 names removed, 5 added, patched into a copy of the index.
let removing = (0..<5).map { k in
    (name: try! DNSName("host\(k * 10 + 1).zone\((k * 10 + 1) % 1000).example"), wildcard: false)
}
let setting = try (0..<5).map { k in
    PolicyRule(
        name: try DNSName("added\(k).example"), isWildcard: k == 0, action: .pass, id: RuleID(file: "ixfr", line: k))
}
var patchSeconds: [Double] = []
var patched = policy
for _ in 0..<5 {
    let t = now()
    patched = PolicyCompiler().patch(patched, setting: setting, removing: removing).policy
    patchSeconds.append(now() - t)
}
print("patch_seconds=" + patchSeconds.map { fixed($0, 3) }.joined(separator: ","), "rules=\(patched.rules.count)")
