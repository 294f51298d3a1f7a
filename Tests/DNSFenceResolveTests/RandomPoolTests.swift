import Testing

@testable import DNSFenceResolve

@Suite("random IDs and socket choice")
struct RandomPoolTests {
    @Test("indices are spread evenly over the range, across many buffer refills")
    func uniform() {
        let pool = RandomPool()
        var counts = [Int](repeating: 0, count: 64)
        for _ in 0..<64_000 { counts[pool.below(64)] += 1 }  // 31 refills of 4 KiB
        // 1,000 expected per bucket; 6 standard deviations is about ±190.
        #expect(counts.allSatisfy { (800...1200).contains($0) }, "\(counts)")
        var odd = [Int](repeating: 0, count: 3)
        for _ in 0..<30_000 { odd[pool.below(3)] += 1 }  // not a power of two: rejection sampling
        #expect(odd.allSatisfy { (9_500...10_500).contains($0) }, "\(odd)")
    }

    @Test("16-bit values are not repeated in a run (one buffer is not reused)")
    func distinct() {
        let pool = RandomPool()
        let values = (0..<10_000).map { _ in pool.next16() }
        // 10,000 draws from 65,536: about 700 collisions expected, far from all the same.
        #expect(Set(values).count > 8_500)
    }
}
