import Foundation
import Testing

/// docs/fleet.md, run as written: in a network namespace of its own (so its fixed ports are its
/// own) and one directory, every fenced block in order. A block whose first line is
/// `# file: PATH` or `; file: PATH` is written to PATH; a ```sh block is run (`sh -e`) and must
/// succeed. Whatever it started is stopped at the end, whatever happened.
@Suite("fleet documentation", .enabled(if: isRoot, "needs root: the walk-through runs in a namespace of its own"))
struct FleetDocsTests {
    /// The fenced blocks of a markdown file: (language, text).
    static func fenced(_ file: String) throws -> [(String, String)] {
        let text = try String(contentsOf: repositoryRoot.appendingPathComponent(file), encoding: .utf8)
        var blocks: [(String, String)] = []
        var current: (String, [Substring])? = nil
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if let open = current {
                if line == "```" {
                    blocks.append((open.0, open.1.joined(separator: "\n") + "\n"))
                    current = nil
                } else {
                    current!.1.append(line)
                }
            } else if line.hasPrefix("```") {
                current = (String(line.dropFirst(3)), [])
            }
        }
        return blocks
    }

    @Test("every block of docs/fleet.md: Knot DNS as the primary, a key, dnsfence, an edit, Prometheus rules")
    func walkThrough() throws {
        let netns = "dffd-\(String(UInt32.random(in: 0..<UInt32.max), radix: 16))"
        try sh("ip netns add \(netns) && ip -n \(netns) link set lo up")
        defer {
            _ = try? sh("for p in $(ip netns pids \(netns)); do kill -9 $p; done; ip netns del \(netns)")
        }
        let directory = try Harness.temporaryDirectory()
        let bin = directory.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: bin.appendingPathComponent("dnsfence").path, withDestinationPath: Harness.dnsfence)
        let work = directory.appendingPathComponent("work")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let path = bin.path + ":/usr/sbin:/usr/bin:/sbin:/bin"
        var ran = 0
        var written: [String] = []
        for (language, text) in try Self.fenced("docs/fleet.md") {
            let first = text.prefix { $0 != "\n" }
            if first.hasPrefix("# file: ") || first.hasPrefix("; file: ") {
                let file = String(first.dropFirst(8))
                try text.write(to: work.appendingPathComponent(file), atomically: true, encoding: .utf8)
                written.append(file)
                continue
            }
            guard language == "sh" else { continue }
            // Output to a file, not a pipe: the daemons a block starts keep theirs open.
            let script = "cd \(work.path) && export PATH=\(path) && set -e\n" + text
            let quoted = "'" + script.replacingOccurrences(of: "'", with: "'\\''") + "'"
            let result = try Background.script("exec ip netns exec \(netns) /bin/sh -c \(quoted)", seconds: 60)
            let log = (try? String(contentsOf: work.appendingPathComponent("dnsfence.log"), encoding: .utf8)) ?? ""
            try #require(result.status == 0, "\(text)\n→ \(result.output)\ndnsfence.log:\n\(log)")
            ran += 1
        }
        #expect(
            written == [
                "zones/sandbox.rpz.zone", "knot.conf", "dnsfence.yaml", "prometheus.yml", "dnsfence-fleet.rules.yml",
            ])
        #expect(ran == 6)
    }
}
