import Foundation
import Testing

/// A real DNS tunnel (Debian's iodine, `-T CNAME`) through an allowed wildcard, run by
/// scripts/bench-tunnel.sh: without a budget it carries tens of KB/s; with the default budget at
/// most 1 KB/s, or it does not come up at all.
@Suite(
    "iodine through an allowed wildcard",
    .enabled(if: isRoot && Harness.tool("iodine") != nil, "needs root and iodine: namespaces, veths, tun devices"))
struct IodineTunnelTests {
    /// The script's result lines, by budget: (came up, bytes per second).
    static func run(budgets: String, iodine: String) throws -> [String: (up: Bool, rate: Double)] {
        let result = try Background.script(
            "cd \(repositoryRoot.path) && DNSFENCE_BIN=\(Harness.dnsfence) BUDGETS='\(budgets)' "
                + "IODINE_ARGS='\(iodine)' TUNNEL_SECONDS=10 UP_SECONDS=30 scripts/bench-tunnel.sh",
            seconds: 240)
        print(result.output)
        var out: [String: (Bool, Double)] = [:]
        for line in result.output.split(separator: "\n") where line.hasPrefix("budget=") {
            var fields: [String: String] = [:]
            for field in line.split(separator: " ") {
                let pair = field.split(separator: "=", maxSplits: 1)
                if pair.count == 2 { fields[String(pair[0])] = String(pair[1]) }
            }
            if let budget = fields["budget"], let rate = fields["bytes_per_s"].flatMap(Double.init) {
                out[budget] = (fields["up"] == "yes", rate)
            }
        }
        return out
    }

    @Test("names within the default max-name: the name budget holds the tunnel to at most 1 KB/s")
    func budget() throws {
        let results = try Self.run(budgets: "off default", iodine: "-M 110")
        let open = try #require(results["off"], "the script ran without a budget")
        let fenced = try #require(results["default"], "the script ran with the default budget")
        #expect(open.up && open.rate > 10_000, "without a budget the tunnel works: \(open.rate) bytes/s")
        #expect(fenced.rate <= 1024, "with the default budget: \(fenced.rate) bytes/s")
    }

    @Test("iodine's own defaults (names up to 255): the default budget keeps the tunnel from moving anything")
    func lengths() throws {
        let results = try Self.run(budgets: "default", iodine: "")
        let fenced = try #require(results["default"])
        #expect(fenced.rate == 0, "\(fenced.rate) bytes/s")
    }
}
