import DNSFenceCore
import Foundation
import Testing

@testable import DNSFenceFirewall

/// libnftables waits on its socket with select(2), which aborts the process for a descriptor at
/// or above 1024: its commands run where no descriptor of the process can crowd it out.
@Suite("nft commands", .enabled(if: getuid() == 0, "needs root: nftables (CAP_NET_ADMIN)"))
struct NftCommandTests {
    @Test("a command runs, and refuses with libnftables' error, with every descriptor below 1024 taken")
    func everyLowDescriptorTaken() throws {
        let limit = DescriptorLimit.raise()
        try #require(limit >= 2048, "the descriptor limit is \(limit)")
        // Every free number below 1024, and one above (held only while the commands run: other
        // tests in this process get numbers above 1024 meanwhile, which is harmless to them).
        var taken: [Int32] = []
        defer { for fd in taken { close(fd) } }
        while taken.last.map({ $0 < 1024 }) ?? true {
            let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
            try #require(fd >= 0, "open: \(String(cString: strerror(errno)))")
            taken.append(fd)
        }
        let listed = NftContext.ready.run("list tables")
        guard case .success = listed else {
            Issue.record("list tables: \(listed)")
            return
        }
        let table = "dfc\(UInt32.random(in: 0..<UInt32.max))"
        guard case .failure(.rejected(let reason)) = NftContext.ready.run("list table inet \(table)") else {
            Issue.record("listing a missing table is refused")
            return
        }
        #expect(reason.contains("No such file or directory"), "\(reason)")
        // The process's table is as it was: what it had open, the commands left open.
        #expect(taken.allSatisfy { fcntl($0, F_GETFD) >= 0 })
    }
}
