/// A source file with marked regions, the way chi_refresh_repo edits files a user also edits.
///
/// Three kinds of marker lines, each alone on its line inside a comment (`/* ... */`, `// ...`
/// or `# ...`):
///
/// - `CHI_AUTOGEN_BEGIN(name)` ... `CHI_AUTOGEN_END(name)`: the tool's; rewritten on every
///   refresh.
/// - `CHI_BEGIN(Method) <checksum>` ... `CHI_END(Method)`: the user's code for one method. The
///   tool adds one with a skeleton when the method is new and never changes it afterwards,
///   except while the body still matches the checksum of the skeleton it wrote (nobody edited
///   it): then it follows the declaration (new parameters) or goes away with the method.
/// - `CHI_AUTOGEN_METHODS`: where new methods' regions are inserted.
///
/// Everything else is the user's text and is kept byte for byte.
struct MarkedFile {
    /// How the file writes a comment, for the markers the tool adds.
    enum CommentStyle {
        /// `.macro`: the seed's C++ files, where the markers are bare (empty) macros on their
        /// own line, `CHI_BEGIN(Compress)`, with a checksum in a trailing `// 1a2b3c4d`.
        case block, slashes, hash, macro

        func wrap(_ s: String) -> String {
            switch self {
            case .block: "/* \(s) */"
            case .slashes: "// \(s)"
            case .hash: "# \(s)"
            case .macro: s
            }
        }

        /// The line opening user region `name` whose skeleton has `checksum`.
        func begin(_ name: String, _ checksum: String) -> String {
            self == .macro ? "CHI_BEGIN(\(name))  // \(checksum)" : wrap("CHI_BEGIN(\(name)) \(checksum)")
        }
    }

    /// A plain line, a region (with its marker lines and the line it starts on), or the anchor.
    enum Piece: Equatable {
        case text(String)
        case generated(name: String, begin: String, body: [String], end: String, line: Int)
        case user(name: String, checksum: String?, begin: String, body: [String], end: String, line: Int)
        case anchor(String, line: Int)
    }

    /// The path used in messages.
    let file: String
    let style: CommentStyle
    /// The file, in order.
    private(set) var pieces: [Piece]
    private let trailingNewline: Bool

    /// Splits `text` into plain lines and regions.
    ///
    /// - Throws: `GenerateError` naming the line of an unbalanced, mismatched, nested or
    ///   repeated marker.
    init(_ text: String, file: String, style: CommentStyle) throws(GenerateError) {
        self.file = file
        self.style = style
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        trailingNewline = text.hasSuffix("\n")
        if trailingNewline { lines.removeLast() }
        var pieces: [Piece] = []
        var open: (kind: Marker.Kind, name: String, checksum: String?, begin: String, line: Int)?
        var body: [String] = []
        var seen: [String: Int] = [:]
        var sawAnchor: Int?
        for (i, line) in lines.enumerated() {
            let n = i + 1
            guard let m = Marker(line, bare: style == .macro) else {
                if open != nil { body.append(line) } else { pieces.append(.text(line)) }
                continue
            }
            if let o = open {
                guard m.kind == o.kind.closing, m.name == o.name else {
                    throw GenerateError(file: file, line: n, message: "\(m.text) inside the region \(o.kind.rawValue)(\(o.name)) opened on line \(o.line); close that one first with \(o.kind.closing!.rawValue)(\(o.name))")
                }
                pieces.append(o.kind == .autogenBegin
                    ? .generated(name: o.name, begin: o.begin, body: body, end: line, line: o.line)
                    : .user(name: o.name, checksum: o.checksum, begin: o.begin, body: body, end: line, line: o.line))
                open = nil
                body = []
                continue
            }
            switch m.kind {
            case .autogenBegin, .begin:
                let key = "\(m.kind.rawValue)(\(m.name))"
                if let first = seen[key] {
                    throw GenerateError(file: file, line: n, message: "a second \(key) (the first is on line \(first)); merge them")
                }
                seen[key] = n
                open = (m.kind, m.name, m.checksum, line, n)
            case .anchor:
                if let first = sawAnchor {
                    throw GenerateError(file: file, line: n, message: "a second CHI_AUTOGEN_METHODS line (the first is on line \(first))")
                }
                sawAnchor = n
                pieces.append(.anchor(line, line: n))
            case .autogenEnd, .end:
                throw GenerateError(file: file, line: n, message: "\(m.text) closes no region")
            }
        }
        if let o = open {
            throw GenerateError(file: file, line: o.line, message: "\(o.kind.rawValue)(\(o.name)) is never closed by \(o.kind.closing!.rawValue)(\(o.name))")
        }
        self.pieces = pieces
    }

    /// The file's text.
    func render() -> String {
        var out: [String] = []
        for p in pieces {
            switch p {
            case .text(let l), .anchor(let l, _): out.append(l)
            case .generated(_, let b, let body, let e, _), .user(_, _, let b, let body, let e, _):
                out.append(b)
                out += body
                out.append(e)
            }
        }
        return out.joined(separator: "\n") + (trailingNewline ? "\n" : "")
    }

    /// The names of the user regions, with the line each starts on.
    var userRegions: [(name: String, line: Int)] {
        pieces.compactMap {
            if case .user(let n, _, _, _, _, let l) = $0 { return (n, l) }
            return nil
        }
    }

    /// The body of the user region `name`, or nil if the file has none.
    func userRegionBody(_ name: String) -> [String]? {
        for case .user(name, _, _, let body, _, _) in pieces { return body }
        return nil
    }

    /// Replaces the body of the generated region `name`.
    ///
    /// - Throws: `GenerateError` if the file has no such region (its markers were deleted).
    mutating func setGenerated(_ name: String, _ body: [String]) throws(GenerateError) {
        guard let i = pieces.firstIndex(where: {
            if case .generated(name, _, _, _, _) = $0 { return true }
            return false
        }) else {
            throw GenerateError(file: file, line: nil, message: "the generated region CHI_AUTOGEN_BEGIN(\(name)) ... CHI_AUTOGEN_END(\(name)) is missing; put the two marker lines back where it belongs")
        }
        guard case .generated(_, let b, _, let e, let l) = pieces[i] else { return }
        pieces[i] = .generated(name: name, begin: b, body: body, end: e, line: l)
    }

    /// Brings the user regions in line with the declared methods.
    ///
    /// - Parameter wanted: Each declared method's region name and skeleton, in declaration order.
    /// - Returns: The regions kept although their method is no longer declared, because they
    ///   hold the user's code.
    /// - Throws: `GenerateError` when a region must be added and the file has no
    ///   CHI_AUTOGEN_METHODS line to add it at.
    mutating func syncUserRegions(_ wanted: [(name: String, skeleton: [String])]) throws(GenerateError) -> [String] {
        var orphans: [String] = []
        var present = Set<String>()
        var i = 0
        while i < pieces.count {
            guard case .user(let name, let sum, let b, let body, let e, let line) = pieces[i] else {
                i += 1
                continue
            }
            present.insert(name)
            let pristine = sum != nil && sum == Self.checksum(body)
            if let w = wanted.first(where: { $0.name == name }) {
                if pristine && body != w.skeleton {
                    pieces[i] = .user(name: name, checksum: Self.checksum(w.skeleton),
                                      begin: beginLine(b, name, w.skeleton), body: w.skeleton, end: e, line: line)
                }
                i += 1
            } else if pristine || body.allSatisfy({ $0.allSatisfy(\.isWhitespace) }) {
                pieces.remove(at: i)
                if i < pieces.count, pieces[i] == .text("") { pieces.remove(at: i) }
            } else {
                orphans.append(name)
                i += 1
            }
        }
        let missing = wanted.filter { !present.contains($0.name) }
        guard !missing.isEmpty else { return orphans }
        guard let at = pieces.firstIndex(where: {
            if case .anchor = $0 { return true }
            return false
        }) else {
            throw GenerateError(file: file, line: nil, message: "no CHI_AUTOGEN_METHODS line, so the skeleton for \(missing[0].name) has nowhere to go; add the line `\(style.wrap("CHI_AUTOGEN_METHODS: new methods are added above this line"))` where new methods should appear")
        }
        // New regions take the anchor's indentation (inside a C++ class body it is indented).
        var indent = ""
        if case .anchor(let l, _) = pieces[at] { indent = String(l.prefix { $0 == " " || $0 == "\t" }) }
        var insert: [Piece] = []
        for w in missing {
            insert.append(.user(name: w.name, checksum: Self.checksum(w.skeleton),
                                begin: indent + style.begin(w.name, Self.checksum(w.skeleton)),
                                body: w.skeleton, end: indent + style.wrap("CHI_END(\(w.name))"), line: 0))
            insert.append(.text(""))
        }
        pieces.insert(contentsOf: insert, at: at)
        return orphans
    }

    /// The line the user region `name` starts on in the rendered text.
    func renderedLine(ofRegion name: String) -> Int? {
        var line = 1
        for p in pieces {
            switch p {
            case .text, .anchor: line += 1
            case .generated(_, _, let body, _, _): line += body.count + 2
            case .user(let n, _, _, let body, _, _):
                if n == name { return line }
                line += body.count + 2
            }
        }
        return nil
    }

    /// The begin line with its checksum replaced, keeping the user's indentation.
    private func beginLine(_ old: String, _ name: String, _ skeleton: [String]) -> String {
        let indent = old.prefix { $0 == " " || $0 == "\t" }
        return indent + style.begin(name, Self.checksum(skeleton))
    }

    /// FNV-1a of the lines, as 8 hex digits: enough to tell an edited skeleton from the original.
    static func checksum(_ lines: [String]) -> String {
        var h: UInt32 = 0x811c_9dc5
        for byte in lines.joined(separator: "\n").utf8 {
            h ^= UInt32(byte)
            h = h &* 0x0100_0193
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }
}

/// One marker line, recognised only when the marker is the whole comment.
private struct Marker {
    enum Kind: String {
        case autogenBegin = "CHI_AUTOGEN_BEGIN", autogenEnd = "CHI_AUTOGEN_END"
        case begin = "CHI_BEGIN", end = "CHI_END", anchor = "CHI_AUTOGEN_METHODS"

        var closing: Kind? {
            switch self {
            case .autogenBegin: .autogenEnd
            case .begin: .end
            default: nil
            }
        }
    }

    var kind: Kind
    var name: String
    var checksum: String?
    var text: String

    /// `bare`: also a marker written as a macro, alone on its line but for a trailing `//`
    /// comment, which holds the checksum of a CHI_BEGIN line (8 hex digits) or anything else.
    init?(_ line: String, bare: Bool = false) {
        var s = Substring(line).trimmingWhitespace()
        if bare && s.hasPrefix("CHI_") {
            var comment: Substring = ""
            var i = s.startIndex
            while i < s.endIndex, s.index(after: i) < s.endIndex {
                if s[i] == "/" && s[s.index(after: i)] == "/" {
                    comment = s[s.index(i, offsetBy: 2)...].trimmingWhitespace()
                    s = s[..<i].trimmingWhitespace()
                    break
                }
                i = s.index(after: i)
            }
            if s.hasSuffix(";") { s = s.dropLast().trimmingWhitespace() }
            let isSum = comment.count == 8 && comment.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) })
            if s.hasPrefix("CHI_BEGIN("), isSum { s = Substring(s + " " + comment) }
        } else if s.hasPrefix("/*") && s.hasSuffix("*/") && s.count >= 4 {
            s = s.dropFirst(2).dropLast(2)
        } else if s.hasPrefix("//") {
            s = s.dropFirst(2)
        } else if s.hasPrefix("#") {
            s = s.dropFirst()
        } else {
            return nil
        }
        s = s.trimmingWhitespace()
        if s.hasPrefix(Kind.anchor.rawValue) {
            let rest = s.dropFirst(Kind.anchor.rawValue.count)
            guard rest.isEmpty || rest.hasPrefix(":") else { return nil }
            self.kind = .anchor
            self.name = ""
            self.text = Kind.anchor.rawValue
            return
        }
        guard let open = s.firstIndex(of: "("), let close = s.firstIndex(of: ")"), open < close,
              let kind = Kind(rawValue: String(s[..<open])), kind != .anchor
        else { return nil }
        let name = s[s.index(after: open)..<close]
        guard !name.isEmpty, name.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 95 })
        else { return nil }
        let rest = s[s.index(after: close)...].trimmingWhitespace()
        if rest.isEmpty {
            checksum = nil
        } else if kind == .begin, rest.count == 8, rest.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) {
            checksum = String(rest)
        } else {
            return nil
        }
        self.kind = kind
        self.name = String(name)
        self.text = "\(kind.rawValue)(\(name))"
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return s
    }
}
