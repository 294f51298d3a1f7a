/// Durations as written in the configuration: `30`, `30s`, `5m`, `2h`, `1d`, `1w`.
enum DurationParser {
    static func seconds(_ text: String) -> UInt32? {
        guard let last = text.last else { return nil }
        let multipliers: [Character: UInt64] = ["s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604_800]
        let (digits, multiplier) =
            last.isNumber ? (Substring(text), UInt64(1)) : (text.dropLast(), multipliers[last] ?? 0)
        guard multiplier > 0, !digits.isEmpty, digits.allSatisfy(\.isASCII), let value = UInt64(digits) else {
            return nil
        }
        let total = value.multipliedReportingOverflow(by: multiplier)
        guard !total.overflow, total.partialValue <= UInt64(Int32.max) else { return nil }
        return UInt32(total.partialValue)
    }
}
