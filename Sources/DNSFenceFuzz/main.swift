// The fuzz target: built with `-sanitize=fuzzer,address` (scripts/fuzz.sh) it runs libFuzzer
// over FuzzOracle; built plainly it replays the files (or directories of files) it is given.
//
// Usage: DNSFenceFuzz [libFuzzer options] CORPUS...   (fuzzing build)
//        DNSFenceFuzz FILE|DIR...                     (plain build: replay)

import CFuzzDriver
import DNSFenceFuzzing
import Foundation

let oracle: FuzzOracle = {
    do { return try FuzzOracle() } catch { fatalError("fuzz: cannot set up: \(error)") }
}()

/// libFuzzer's entry point by name (its runtime refers to it), the same check as the driver's callback.
@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    if let broken = oracle.check(input) { fatalError("fuzz: \(broken)") }
    return 0
}

var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
let status = dnsfence_fuzz_driver(&argc, &argv) { data, size in fuzzOne(data, size) }
if status >= 0 { exit(status) }

// Not linked with libFuzzer: replay.
var files: [String] = []
for path in CommandLine.arguments.dropFirst() {
    var directory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &directory), directory.boolValue {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        files += names.sorted().map { "\(path)/\($0)" }
    } else {
        files.append(path)
    }
}
var failed = 0
for file in files {
    guard let data = FileManager.default.contents(atPath: file) else {
        print("fuzz: cannot read \(file)")
        failed += 1
        continue
    }
    if let broken = oracle.check(Array(data)) {
        print("fuzz: \(file): \(broken)")
        failed += 1
    }
}
print("fuzz: \(files.count) inputs replayed, \(failed) failed")
exit(failed == 0 ? 0 : 1)
