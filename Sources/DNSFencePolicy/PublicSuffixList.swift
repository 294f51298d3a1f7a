public import DNSFenceWire

/// Public suffixes (names under which unrelated parties register names), used to warn about
/// wildcards such as `*.com` or `*.co.uk`.
///
/// Every single-label name (a TLD) counts; `embedded` adds common multi-label suffixes, and
/// ``init(text:)`` reads the Mozilla list format (Debian's `publicsuffix` package ships it).
public struct PublicSuffixList: Sendable {
    private var suffixes: Set<DNSName>
    private var wildcardParents: Set<DNSName>

    /// Builds from the Mozilla `public_suffix_list.dat` format: one rule per line, `//`
    /// comments, `*.` wildcards, `!` exceptions (ignored: an exception only narrows a wildcard).
    public init(text: String) {
        var suffixes = Set<DNSName>()
        var wildcardParents = Set<DNSName>()
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.split(separator: " ").first.map(String.init) ?? ""
            if line.isEmpty || line.hasPrefix("//") || line.hasPrefix("!") { continue }
            if line.hasPrefix("*.") {
                if let name = try? DNSName(String(line.dropFirst(2))) { wildcardParents.insert(name) }
            } else if let name = try? DNSName(line) {
                suffixes.insert(name)
            }
        }
        self.suffixes = suffixes
        self.wildcardParents = wildcardParents
    }

    /// Whether `name` is a public suffix.
    public func isPublicSuffix(_ name: DNSName) -> Bool {
        if name.labelCount == 1 { return true }
        if suffixes.contains(name) { return true }
        return name.labelCount >= 2 && wildcardParents.contains(name.parent())
    }

    /// A built-in list of frequently met multi-label suffixes, for machines without the
    /// `publicsuffix` package.
    public static let embedded = PublicSuffixList(
        text: """
            co.uk
            org.uk
            ac.uk
            gov.uk
            me.uk
            net.uk
            com.au
            net.au
            org.au
            edu.au
            gov.au
            co.nz
            co.jp
            ne.jp
            or.jp
            com.br
            com.cn
            com.tw
            com.hk
            co.in
            co.kr
            co.za
            com.mx
            com.ar
            com.tr
            com.sg
            github.io
            gitlab.io
            herokuapp.com
            appspot.com
            blogspot.com
            cloudfront.net
            amazonaws.com
            s3.amazonaws.com
            azurewebsites.net
            web.app
            pages.dev
            workers.dev
            vercel.app
            netlify.app
            *.compute.amazonaws.com
            """)
}
