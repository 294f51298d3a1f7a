/// Punycode (RFC 3492) encoding, used only to tell a user which A-label to write for a
/// non-ASCII label. dnsfence does not map or normalise Unicode (IDNA2008 mapping is the
/// writer's job), so it never converts silently.
enum Punycode {
    private static let base = 36, tMin = 1, tMax = 26, skew = 38, damp = 700
    private static let initialBias = 72, initialN = 0x80

    /// `xn--…` for a label that contains non-ASCII characters (lower-cased first), or nil
    /// when the encoding overflows.
    static func aLabel(for label: String) -> String? {
        guard let encoded = encode(Array(label.lowercased().unicodeScalars.map { Int($0.value) })) else {
            return nil
        }
        return "xn--" + encoded
    }

    private static func digit(_ d: Int) -> Character {
        Character(Unicode.Scalar(UInt8(d < 26 ? d + 97 : d + 22)))
    }

    private static func adapt(_ deltaIn: Int, _ numPoints: Int, _ first: Bool) -> Int {
        var delta = first ? deltaIn / damp : deltaIn / 2
        delta += delta / numPoints
        var k = 0
        while delta > ((base - tMin) * tMax) / 2 {
            delta /= base - tMin
            k += base
        }
        return k + (base - tMin + 1) * delta / (delta + skew)
    }

    private static func encode(_ input: [Int]) -> String? {
        var output = ""
        for c in input where c < 0x80 { output.append(Character(Unicode.Scalar(UInt8(c)))) }
        let basicCount = output.count
        var handled = basicCount
        if basicCount > 0 { output.append("-") }
        var n = initialN, delta = 0, bias = initialBias
        while handled < input.count {
            guard let m = input.filter({ $0 >= n }).min() else { return nil }
            let (grow, overflow) = (m - n).multipliedReportingOverflow(by: handled + 1)
            guard !overflow else { return nil }
            delta += grow
            n = m
            for c in input {
                if c < n { delta += 1 }
                if c == n {
                    var q = delta
                    var k = base
                    while true {
                        let t = k <= bias ? tMin : (k >= bias + tMax ? tMax : k - bias)
                        if q < t { break }
                        output.append(digit(t + (q - t) % (base - t)))
                        q = (q - t) / (base - t)
                        k += base
                    }
                    output.append(digit(q))
                    bias = adapt(delta, handled + 1, handled == basicCount)
                    delta = 0
                    handled += 1
                }
            }
            delta += 1
            n += 1
        }
        return output
    }
}
