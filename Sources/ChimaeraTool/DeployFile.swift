import ChimaeraYAML
import Glibc

/// A deployment file (`chimaera compose`, `chimaera pipeline run`) being read: its path, and
/// readers that turn each YAML value into what a key expects or an error naming the file, the
/// line, the owner (a pool, a package) and the key.
struct DeployFile {
    /// The path as the user gave it; errors print it so.
    let path: String

    /// Reads and parses `path`.
    ///
    /// - Returns: The document's root mapping's entries, with duplicate keys refused.
    /// - Throws: The file that cannot be read, invalid YAML, an empty document or a root that is
    ///   not a mapping, each with the file (and the line when there is one).
    static func load(_ path: String) throws(FileLineError) -> (DeployFile, [YAMLNode.Entry]) {
        let f = DeployFile(path: path)
        guard let bytes = readAll(path) else { throw f.error(nil, "cannot read it: " + Sys.errnoText()) }
        guard let root = try YAMLNode.parse(bytes: bytes, file: path) else {
            throw f.error(nil, "the file holds no YAML document")
        }
        return (f, try f.entries(root, "the file"))
    }

    /// A whole text file (a module's methods YAML, say).
    static func readText(_ path: String) throws(FileLineError) -> String {
        guard let bytes = readAll(path) else { throw FileLineError(file: path, line: nil, message: "cannot read it: " + Sys.errnoText()) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `path` as seen from this file's directory (an absolute path stays as it is).
    func relative(_ other: String) -> String {
        guard !other.hasPrefix("/"), let slash = path.lastIndex(of: "/") else { return other }
        return String(path[...slash]) + other
    }

    func error(_ line: Int?, _ message: String) -> FileLineError {
        FileLineError(file: path, line: line, message: message)
    }

    /// The entries of a mapping; `what` names it in the error ("pool \"x\"", "params").
    func entries(_ node: YAMLNode, _ what: String) throws(FileLineError) -> [YAMLNode.Entry] {
        guard case .mapping(let entries, _) = node else {
            throw error(node.line, "\(what) must be a mapping of `key: value` lines")
        }
        var seen: [String: Int] = [:]
        for e in entries {
            if let first = seen[e.key] {
                throw error(e.keyLine, "\(what): key `\(e.key)` is given twice (first on line \(first))")
            }
            seen[e.key] = e.keyLine
        }
        return entries
    }

    /// The items of a sequence (a flow `[a, b]` or block `- a` list).
    func items(_ node: YAMLNode, _ key: String) throws(FileLineError) -> [YAMLNode] {
        guard case .sequence(let items, _) = node else {
            throw error(node.line, "\(key): expected a list")
        }
        return items
    }

    /// A scalar's text.
    func string(_ node: YAMLNode, _ key: String) throws(FileLineError) -> String {
        guard case .scalar(let text, _, _) = node, !node.isNull else {
            throw error(node.line, "\(key): expected a value, not \(describe(node))")
        }
        return text
    }

    /// A list of scalars; a single scalar is a list of one.
    func strings(_ node: YAMLNode, _ key: String) throws(FileLineError) -> [String] {
        if case .scalar = node { return node.isNull ? [] : [try string(node, key)] }
        var out: [String] = []
        for item in try items(node, key) { out.append(try string(item, key)) }
        return out
    }

    /// An integer in `range`.
    func integer(_ node: YAMLNode, _ key: String, in range: ClosedRange<Int>) throws(FileLineError) -> Int {
        let text = try string(node, key)
        guard let v = Int(text), range.contains(v) else {
            throw error(node.line, "\(key): expected an integer from \(range.lowerBound) to \(range.upperBound), got \"\(text)\"")
        }
        return v
    }

    /// A non-negative number (seconds, say), fractions allowed.
    func seconds(_ node: YAMLNode, _ key: String) throws(FileLineError) -> Double {
        let text = try string(node, key)
        guard let v = Double(text), v >= 0, v <= 86_400 else {
            throw error(node.line, "\(key): expected a number of seconds from 0 to 86400, got \"\(text)\"")
        }
        return v
    }

    /// true/false (also yes/no, on/off).
    func bool(_ node: YAMLNode, _ key: String) throws(FileLineError) -> Bool {
        let text = try string(node, key)
        switch text {
        case "true", "True", "TRUE", "yes", "on": return true
        case "false", "False", "FALSE", "no", "off": return false
        default: throw error(node.line, "\(key): expected true or false, got \"\(text)\"")
        }
    }

    /// A byte count: digits with an optional K, M, G or T suffix (powers of 1024).
    func size(_ node: YAMLNode, _ key: String) throws(FileLineError) -> UInt64 {
        let text = try string(node, key)
        var digits = Substring(text)
        var shift: UInt64 = 0
        if let last = digits.last, let s = ["k": 10, "m": 20, "g": 30, "t": 40][last.lowercased()] {
            shift = UInt64(s)
            digits = digits.dropLast()
        }
        guard let n = UInt64(digits), n <= UInt64.max >> shift else {
            throw error(node.line, "\(key): expected a size (bytes, or a number with a K, M, G or T suffix), got \"\(text)\"")
        }
        return n << shift
    }

    /// A segment, pool or module name, as the library accepts them.
    func name(_ node: YAMLNode, _ key: String) throws(FileLineError) -> String {
        let text = try string(node, key)
        guard validName(text) else {
            throw error(node.line, "\(key): \"\(text)\" is not a valid name (letters, digits, _ - ., under 64 bytes, not starting with .)")
        }
        return text
    }

    private func describe(_ node: YAMLNode) -> String {
        switch node {
        case .scalar: "an empty value"
        case .sequence: "a list"
        case .mapping: "a mapping"
        }
    }

    /// The whole file, or nil with errno set.
    private static func readAll(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 65536) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return nil }
            if n == 0 { return out }
            // Deployment files are small; a huge one is a mistake (a data file given by name).
            if out.count + n > 16 << 20 {
                errno = EFBIG
                return nil
            }
            out += buf[0..<n]
        }
    }
}

/// Minimal JSON text building for `--json` reports (no Foundation in the tool).
enum JSONText {
    static func string(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    /// `{"k": v, ...}` from already-encoded values, in the given order.
    static func object(_ fields: [(String, String)]) -> String {
        "{" + fields.map { string($0.0) + ": " + $0.1 }.joined(separator: ", ") + "}"
    }
}
