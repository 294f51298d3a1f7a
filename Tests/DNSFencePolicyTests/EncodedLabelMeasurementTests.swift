import DNSFenceCore
import DNSFencePolicy
import DNSFenceWire
import Foundation
import Testing

/// uBlock Origin's filter lists, as Debian's webext-ublock-origin-firefox installs them.
private let uBlockLists =
    "/usr/share/mozilla/extensions/{ec8030f7-c20a-464f-9b0e-13a3a9e97384}/uBlock0@raymondhill.net/assets/thirdparties"

/// The false-positive rate of `deny-encoded` on real hostnames, and what it catches of random
/// data, measured with the code that runs (docs/configuration.md, "Tunnel budgets").
@Suite(
    "encoded labels: measured",
    .enabled(
        if: FileManager.default.fileExists(atPath: uBlockLists + "/easylist/easylist.txt"),
        "needs Debian's webext-ublock-origin-firefox (real hostnames) and publicsuffix; CI installs both"))
struct EncodedLabelMeasurementTests {
    /// Every `||host^` of the EasyList, EasyPrivacy and URLhaus lists, and every rule of the
    /// Public Suffix List: about 100,000 names real services use.
    static func hostnames() throws -> Set<String> {
        var names = Set<String>()
        for file in ["easylist/easylist.txt", "easylist/easyprivacy.txt", "urlhaus-filter/urlhaus-filter-online.txt"] {
            for line in try String(contentsOfFile: "\(uBlockLists)/\(file)", encoding: .utf8).split(separator: "\n") {
                guard line.hasPrefix("||"), let end = line.firstIndex(of: "^") else { continue }
                let host = line[line.index(line.startIndex, offsetBy: 2)..<end].lowercased()
                if host.contains("."),
                    host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") })
                {
                    names.insert(host)
                }
            }
        }
        let suffixes = try String(contentsOfFile: "/usr/share/publicsuffix/public_suffix_list.dat", encoding: .utf8)
        for line in suffixes.split(separator: "\n") where !line.hasPrefix("//") && !line.hasPrefix("!") {
            let rule = line.hasPrefix("*.") ? String(line.dropFirst(2)) : String(line)
            if rule.contains("."),
                rule.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") })
            {
                names.insert(rule.lowercased())
            }
        }
        return names
    }

    @Test("real hostnames: at most 0.1 % flagged below their registrable domain (where a wildcard would be)")
    func falsePositives() throws {
        let suffixes = PublicSuffixList(
            text: try String(contentsOfFile: "/usr/share/publicsuffix/public_suffix_list.dat", encoding: .utf8))
        let names = try Self.hostnames()
        var checked = 0
        var flagged: [String] = []
        for text in names {
            guard let name = try? DNSName(text) else { continue }
            // The registrable domain: one label more than the longest public suffix.
            var suffix = name
            var registrable: DNSName? = nil
            while suffix.labelCount > 1 {
                let parent = suffix.parent()
                if suffixes.isPublicSuffix(parent) {
                    registrable = suffix
                    break
                }
                suffix = parent
            }
            guard let registrable, registrable.labelCount < name.labelCount else { continue }
            checked += 1
            let wire = name.wire
            let below = wire.count - registrable.wire.count
            if wire.withUnsafeBytes({ EncodedLabel.judge(wire: $0, below: below) }) != nil { flagged.append(text) }
        }
        let rate = Double(flagged.count) / Double(names.count)
        print(
            "encoded labels: \(flagged.count) of \(names.count) real hostnames flagged (\(checked) with labels "
                + "below their registrable domain), \(String(format: "%.3f", rate * 100)) %; e.g. "
                + flagged.sorted().prefix(5).joined(separator: ", "))
        #expect(names.count > 50_000)
        #expect(rate <= 0.001)
    }

    @Test(
        "random data as tunnels encode it: hex, base32 and base64 labels of 24 and 48 characters, and 30 and 60 cut into labels of 15"
    )
    func caught() {
        var random = SplitMix64(seed: 20_261_205)
        var split = SplitMix64(seed: 20_261_206)
        let alphabets = [
            ("hex", Array("0123456789abcdef".utf8)), ("base32", Array("abcdefghijklmnopqrstuvwxyz012345".utf8)),
            ("base64", Array("abcdefghijklmnopqrstuvwxyz0123456789-_".utf8)),
        ]
        // The least share caught, by alphabet, at 24 and at 48 characters.
        let floors: [String: (Double, Double)] = ["hex": (0.99, 0.99), "base32": (0.85, 0.97), "base64": (0.80, 0.93)]
        // The same for 30 and 60 characters cut into labels of 15.
        let splitFloors: [String: (Double, Double)] = [
            "hex": (0.80, 0.97), "base32": (0.85, 0.93), "base64": (0.85, 0.95),
        ]
        for (kind, alphabet) in alphabets {
            for length in [24, 48] {
                var caught = 0
                for _ in 0..<2000 {
                    let label = (0..<length).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] }
                    if label.withUnsafeBytes({ EncodedLabel.judge($0) }) != nil { caught += 1 }
                }
                let share = Double(caught) / 2000
                print(
                    "encoded labels: \(kind) of \(length) characters: \(String(format: "%.1f", share * 100)) % caught")
                let floor = length == 24 ? floors[kind]!.0 : floors[kind]!.1
                #expect(share >= floor, "\(kind) \(length): \(share)")
            }
            // Cut into labels of 15, each too short to judge alone: judged joined.
            for length in [30, 60] {
                var caught = 0
                for _ in 0..<2000 {
                    var wire: [UInt8] = []
                    for _ in 0..<(length / 15) {
                        wire.append(15)
                        wire += (0..<15).map { _ in alphabet[Int(split.next() % UInt64(alphabet.count))] }
                    }
                    let below = wire.count
                    wire += [1, 0x78, 0]  // x.
                    if wire.withUnsafeBytes({ EncodedLabel.judge(wire: $0, below: below) }) != nil { caught += 1 }
                }
                let share = Double(caught) / 2000
                print(
                    "encoded labels: \(kind) of \(length) characters in labels of 15: "
                        + "\(String(format: "%.1f", share * 100)) % caught")
                let floor = length == 30 ? splitFloors[kind]!.0 : splitFloors[kind]!.1
                #expect(share >= floor, "\(kind) \(length) in labels of 15: \(share)")
            }
        }
    }
}
