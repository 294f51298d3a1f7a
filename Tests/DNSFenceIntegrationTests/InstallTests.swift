import Foundation
import Testing

/// The tree `scripts/install.sh` stages: scripts/test.sh runs it into .build/install-check
/// before the tests (SwiftPM's build lock keeps a test from running the manual plugin itself).
let installed = repositoryRoot.appendingPathComponent(".build/install-check")

@Suite(
    "scripts/install.sh",
    .enabled(
        if: FileManager.default.fileExists(atPath: installed.appendingPathComponent("usr/bin/dnsfence").path),
        "scripts/test.sh stages an install into .build/install-check first; run it (or install.sh) for these"))
struct InstallTests {
    @Test("the man page documents every subcommand and option the binary has")
    func manual() throws {
        let page = installed.appendingPathComponent("usr/share/man/man1/dnsfence.1").path
        let man = try #require(Harness.tool("man"), "man (Debian's man-db) is not installed")
        let rendered = try Harness.run(man, ["-P", "cat", "-l", page])
        #expect(rendered.status == 0, "\(rendered.output)")
        let text = rendered.output.replacingOccurrences(of: "\u{2010}\n", with: "")
        #expect(text.contains("SIGHUP reloads"), "the discussion is in the page")
        // Every subcommand and every long option `--help` lists is in the page.
        for command in ["serve", "check", "reload", "run", "learn"] {
            let help = try Harness.run(Harness.dnsfence, [command, "--help"]).output
            let options = Set(help.matches(of: /--[a-z][a-z0-9-]+/).map { String($0.output) })
            #expect(options.count > 1, "\(command) --help lists options")
            for option in options { #expect(text.contains(option), "\(command) \(option) is missing from the page") }
            #expect(text.contains(command))
        }
    }

    @Test("the installed binary runs and names its commit; the units name the installed binary")
    func tree() throws {
        let version = try Harness.run(installed.appendingPathComponent("usr/bin/dnsfence").path, ["--version"])
        #expect(version.status == 0 && version.output.hasPrefix("0.1.0 (commit "), "\(version.output)")
        for unit in ["dnsfence.service", "dnsfence.socket"] {
            let text = try String(
                contentsOf: installed.appendingPathComponent("etc/systemd/system/\(unit)"), encoding: .utf8)
            #expect(!text.contains("/usr/local/bin"), "\(unit) still names /usr/local/bin")
        }
        let service = try String(
            contentsOf: installed.appendingPathComponent("etc/systemd/system/dnsfence.service"), encoding: .utf8)
        #expect(service.contains("ExecStart=/usr/bin/dnsfence serve"))
    }
}
