extension Substring {
    /// Without leading and trailing spaces, tabs and carriage returns.
    package func trimmingSpaces() -> Substring {
        var s = self
        while let c = s.first, c == " " || c == "\t" || c == "\r" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\r" { s = s.dropLast() }
        return s
    }
}

extension StringProtocol {
    /// A name as an operator writes it (`Example.org`, `example.org.`), absolute and
    /// lower-cased (`example.org.`): how patterns, zones and key names are compared.
    package var absoluteLowercased: String {
        let lower = lowercased()
        return lower.hasSuffix(".") ? lower : lower + "."
    }
}
