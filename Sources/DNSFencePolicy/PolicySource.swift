import DNSFenceWire

/// The text of one policy file and how to read it.
public struct PolicySource: Sendable, Hashable {
    public enum Format: String, Sendable, Hashable {
        /// Response Policy Zone in zone-file syntax.
        case rpz
        /// One name per line, `*.name` for subdomains, `#` comments.
        case list
    }

    /// The path as the user wrote it; it becomes part of every rule id.
    public var file: String
    public var text: String
    public var format: Format

    public init(file: String, text: String, format: Format? = nil) {
        self.file = file
        self.text = text
        self.format = format ?? PolicySource.format(forPath: file)
    }

    /// `.rpz` and `.zone` files are RPZ; everything else is a plain list.
    public static func format(forPath path: String) -> Format {
        path.hasSuffix(".rpz") || path.hasSuffix(".zone") ? .rpz : .list
    }
}

/// A policy file could not be loaded; nothing of it is used.
public struct PolicyLoadError: Error, Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var message: String

    public init(file: String, line: Int, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String { "\(file):\(line): error: \(message)" }
}

/// Something legal but probably not meant.
public struct PolicyWarning: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var message: String

    public init(file: String, line: Int, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String { "\(file):\(line): warning: \(message)" }
}
