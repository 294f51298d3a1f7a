import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Unpredictable numbers for query IDs and socket choice (RFC 5452), taken from a buffer that
/// the kernel's CSPRNG refills 4 KiB at a time: one read per 2,048 IDs instead of the
/// getrandom(2) call `SystemRandomNumberGenerator` makes each time (three per forwarded query).
final class RandomPool: Sendable {
    static let shared = RandomPool()

    private struct State {
        var bytes = [UInt8](repeating: 0, count: 4096)
        var next = 4096
    }

    private let state = Mutex(State())

    /// A uniformly random 16-bit value.
    func next16() -> UInt16 {
        state.withLock { state in
            if state.next + 2 > state.bytes.count {
                Self.refill(&state.bytes)
                state.next = 0
            }
            defer { state.next += 2 }
            return UInt16(state.bytes[state.next]) << 8 | UInt16(state.bytes[state.next + 1])
        }
    }

    /// A uniformly random index below `count` (rejection sampling, no modulo bias).
    func below(_ count: Int) -> Int {
        precondition(count > 0 && count <= 65536)
        let limit = 65536 - 65536 % count
        while true {
            let value = Int(next16())
            if value < limit { return value % count }
        }
    }

    /// /dev/urandom, opened once (the same CSPRNG as getrandom(2), which Glibc's module map
    /// does not export); -1 if it cannot be opened.
    private static let urandom: Int32 = open("/dev/urandom", O_RDONLY | O_CLOEXEC)

    private static func refill(_ bytes: inout [UInt8]) {
        var filled = 0
        bytes.withUnsafeMutableBytes { raw in
            while filled < raw.count && urandom >= 0 {
                let n = read(urandom, raw.baseAddress! + filled, raw.count - filled)
                if n > 0 {
                    filled += n
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    break
                }
            }
            if filled < raw.count {
                var generator = SystemRandomNumberGenerator()
                for i in filled..<raw.count { raw[i] = UInt8.random(in: 0...255, using: &generator) }
            }
        }
    }
}
