/// A JSON value as etcd's gateway sends it, read by a small parser with hard limits.
///
/// The runtime's core links no Foundation (libchimaera.so stays small and self-contained), so
/// the metadata client carries its own reader. Everything it parses came over the network:
/// nesting depth and the input length are bounded, numbers stay text until asked for, and
/// every malformed input is an error, never a trap.
package enum MetadataJSON: Equatable, Sendable {
    case null
    case bool(Bool)
    /// The literal as written; etcd sends 64-bit integers as strings, small ones as numbers.
    case number(String)
    case string(String)
    case array([MetadataJSON])
    case object([String: MetadataJSON])

    /// The deepest nesting accepted (etcd's replies nest about five levels).
    static let maxDepth = 32

    /// Parses one JSON document; nil when it is malformed, nested too deep or has trailing bytes.
    package static func parse(_ bytes: some Collection<UInt8>) -> MetadataJSON? {
        var p = Parser(Array(bytes))
        guard let v = p.value(depth: 0) else { return nil }
        p.skipSpace()
        return p.i == p.b.count ? v : nil
    }

    package subscript(key: String) -> MetadataJSON? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    package var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    package var array: [MetadataJSON]? {
        if case .array(let a) = self { return a }
        return nil
    }

    package var bool: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// A 64-bit integer written as a number or as a decimal string (protobuf's JSON mapping).
    package var int64: Int64? {
        switch self {
        case .number(let s), .string(let s): return Int64(s)
        default: return nil
        }
    }

    /// `s` as a JSON string literal, quotes included.
    package static func quote(_ s: String) -> String { JSONWriter.quote(s) }

    private struct Parser {
        let b: [UInt8]
        var i = 0

        init(_ b: [UInt8]) { self.b = b }

        mutating func skipSpace() {
            while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
        }

        mutating func literal(_ word: String) -> Bool {
            let w = Array(word.utf8)
            guard i + w.count <= b.count, Array(b[i..<i + w.count]) == w else { return false }
            i += w.count
            return true
        }

        mutating func value(depth: Int) -> MetadataJSON? {
            guard depth <= MetadataJSON.maxDepth else { return nil }
            skipSpace()
            guard i < b.count else { return nil }
            switch b[i] {
            case UInt8(ascii: "{"):
                i += 1
                var o: [String: MetadataJSON] = [:]
                skipSpace()
                if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
                while true {
                    skipSpace()
                    guard let k = string() else { return nil }
                    skipSpace()
                    guard i < b.count, b[i] == UInt8(ascii: ":") else { return nil }
                    i += 1
                    guard let v = value(depth: depth + 1) else { return nil }
                    o[k] = v
                    skipSpace()
                    guard i < b.count else { return nil }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    if b[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
                    return nil
                }
            case UInt8(ascii: "["):
                i += 1
                var a: [MetadataJSON] = []
                skipSpace()
                if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                while true {
                    guard let v = value(depth: depth + 1) else { return nil }
                    a.append(v)
                    skipSpace()
                    guard i < b.count else { return nil }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    if b[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                    return nil
                }
            case UInt8(ascii: "\""):
                return string().map { .string($0) }
            case UInt8(ascii: "t"): return literal("true") ? .bool(true) : nil
            case UInt8(ascii: "f"): return literal("false") ? .bool(false) : nil
            case UInt8(ascii: "n"): return literal("null") ? .null : nil
            default:
                let start = i
                while i < b.count, b[i] == UInt8(ascii: "-") || b[i] == UInt8(ascii: "+")
                    || b[i] == UInt8(ascii: ".") || b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E")
                    || (b[i] >= UInt8(ascii: "0") && b[i] <= UInt8(ascii: "9")) { i += 1 }
                guard i > start, i - start <= 64 else { return nil }
                let s = String(decoding: b[start..<i], as: UTF8.self)
                guard Double(s) != nil else { return nil }
                return .number(s)
            }
        }

        mutating func hex4() -> UInt32? {
            guard i + 4 <= b.count else { return nil }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = b[i]
                i += 1
                let d: UInt8
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
                default: return nil
                }
                v = v << 4 | UInt32(d)
            }
            return v
        }

        mutating func string() -> String? {
            guard i < b.count, b[i] == UInt8(ascii: "\"") else { return nil }
            i += 1
            var out: [UInt8] = []
            while i < b.count {
                let c = b[i]
                i += 1
                if c == UInt8(ascii: "\"") {
                    // Invalid UTF-8 is refused rather than repaired: a key must round-trip.
                    return String(validating: out, as: UTF8.self)
                }
                if c < 0x20 { return nil }
                if c != UInt8(ascii: "\\") { out.append(c); continue }
                guard i < b.count else { return nil }
                let e = b[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "u"):
                    guard var u = hex4() else { return nil }
                    if (0xD800..<0xDC00).contains(u) {
                        guard literal("\\u"), let lo = hex4(), (0xDC00..<0xE000).contains(lo) else { return nil }
                        u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)
                    }
                    guard let scalar = Unicode.Scalar(u) else { return nil }
                    out += Array(String(Character(scalar)).utf8)
                default: return nil
                }
            }
            return nil
        }
    }
}

/// Standard base64 (RFC 4648, padded), which etcd's gateway uses for keys and values.
package enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    package static func encode(_ bytes: some Collection<UInt8>) -> String {
        let b = Array(bytes)
        var out: [UInt8] = []
        out.reserveCapacity((b.count + 2) / 3 * 4)
        var i = 0
        while i < b.count {
            let n = min(3, b.count - i)
            let v = UInt32(b[i]) << 16 | (n > 1 ? UInt32(b[i + 1]) << 8 : 0) | (n > 2 ? UInt32(b[i + 2]) : 0)
            out.append(alphabet[Int(v >> 18 & 63)])
            out.append(alphabet[Int(v >> 12 & 63)])
            out.append(n > 1 ? alphabet[Int(v >> 6 & 63)] : UInt8(ascii: "="))
            out.append(n > 2 ? alphabet[Int(v & 63)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    package static func encode(_ s: String) -> String { encode(Array(s.utf8)) }

    /// The bytes `s` encodes; nil for any character outside the alphabet or bad padding.
    package static func decode(_ s: String) -> [UInt8]? {
        let c = Array(s.utf8)
        guard c.count % 4 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(c.count / 4 * 3)
        var i = 0
        while i < c.count {
            var v: UInt32 = 0
            var pad = 0
            for k in 0..<4 {
                let x = c[i + k]
                let d: UInt32
                switch x {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"): d = UInt32(x - UInt8(ascii: "A"))
                case UInt8(ascii: "a")...UInt8(ascii: "z"): d = UInt32(x - UInt8(ascii: "a")) + 26
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(x - UInt8(ascii: "0")) + 52
                case UInt8(ascii: "+"): d = 62
                case UInt8(ascii: "/"): d = 63
                case UInt8(ascii: "="):
                    // Padding only at the end of the last quantum, at most two.
                    guard i + 4 == c.count, k >= 2 else { return nil }
                    pad += 1
                    d = 0
                default: return nil
                }
                if pad > 0 && x != UInt8(ascii: "=") { return nil }
                v = v << 6 | d
            }
            out.append(UInt8(v >> 16 & 0xFF))
            if pad < 2 { out.append(UInt8(v >> 8 & 0xFF)) }
            if pad < 1 { out.append(UInt8(v & 0xFF)) }
            i += 4
        }
        return out
    }
}
