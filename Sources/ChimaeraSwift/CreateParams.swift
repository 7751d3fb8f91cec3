import CChimaeraABI
import Glibc

/// A create parameter's value, given by name: `client.createPool(module: "bdev", name: "x",
/// ["path": "fs:///tmp/x.bin", "size": .int(1 << 30)])`. Literals pick the case; the module's create
/// descriptor decides the width, and a value that does not fit is an error.
public enum CreateValue: Sendable, Equatable, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByStringLiteral
{
    case int(Int64)
    case double(Double)
    case bool(Bool)
    case string(String)
    case bytes([UInt8])

    public init(integerLiteral v: Int64) { self = .int(v) }
    public init(floatLiteral v: Double) { self = .double(v) }
    public init(booleanLiteral v: Bool) { self = .bool(v) }
    public init(stringLiteral v: String) { self = .string(v) }
}

/// Lays out create parameters given by name as the bytes a module's Create expects, from the
/// create descriptor the module lists (ABI 1.7, CHI_MF_CREATE_PARAMS): the same rule the
/// Python binding and `chimaera compose` follow, so no module needs Swift code for it.
public enum CreateParams {
    /// One parameter the module declares: its name and C type, e.g. `size: u64`.
    public struct Field: Sendable, CustomStringConvertible {
        public let name: String
        public let offset: Int
        public let size: Int
        public let type: UInt32

        public var description: String {
            switch type {
            case CHI_FT_STR: return "\(name): str[\(size)]"
            case CHI_FT_BYTES: return "\(name): bytes[\(size)]"
            default: return "\(name): \(CreateParams.typeName(type))"
            }
        }
    }

    /// The create parameters `module` declares, in declaration order, and the size of its
    /// params struct; nil when it lists no create descriptor. Loads the module into this
    /// process to read its descriptors (no hook runs).
    public static func describe(module: String) throws(ChimaeraError) -> (fields: [Field], size: Int)? {
        var vt: UnsafePointer<chi_module_vtable_t>?
        try check(chi_module_describe(module, &vt))
        guard let vt, let methods = vt.pointee.methods else { return nil }
        for i in 0..<Int(vt.pointee.nmethods) where methods[i].flags & CHI_MF_CREATE_PARAMS != 0 {
            let m = methods[i]
            var fields: [Field] = []
            for j in 0..<Int(m.nfields) {
                guard let f = m.fields?[j] else { continue }
                fields.append(Field(name: f.name.map { String(cString: $0) } ?? "field\(j)",
                                    offset: Int(f.offset), size: Int(f.size), type: f.type))
            }
            return (fields, Int(m.task_size))
        }
        return nil
    }

    /// The params bytes for `values`; throws -EINVAL naming the problem and the known
    /// parameters for an unknown name, a value of the wrong kind or one that does not fit.
    /// Parameters left out are zero.
    public static func encode(module: String, _ values: [String: CreateValue]) throws(ChimaeraError) -> [UInt8] {
        guard let (fields, size) = try describe(module: module) else {
            if values.isEmpty { return [] }
            throw ChimaeraError(code: -EINVAL, message: "module \(module) lists no create parameters; give params as bytes")
        }
        let known = fields.map(\.description).joined(separator: ", ")
        var out = [UInt8](repeating: 0, count: size)
        for key in values.keys.sorted() {
            guard let f = fields.first(where: { $0.name == key }) else {
                throw ChimaeraError(code: -EINVAL, message: "\(module) has no create parameter \"\(key)\" (known: \(known))")
            }
            guard f.offset >= 0, f.size >= 0, f.offset + f.size <= size else {
                throw ChimaeraError(code: -EINVAL, message: "\(module): create parameter \(key) lies outside its params")
            }
            let bytes: [UInt8]
            do throws(ChimaeraError) {
                bytes = try encodeValue(values[key]!, f)
            } catch {
                throw ChimaeraError(code: -EINVAL, message: "\(module): create parameter \(f): \(error.message)")
            }
            out.replaceSubrange(f.offset..<(f.offset + bytes.count), with: bytes)
        }
        return out
    }

    private static func encodeValue(_ v: CreateValue, _ f: Field) throws(ChimaeraError) -> [UInt8] {
        func fail(_ why: String) -> ChimaeraError { ChimaeraError(code: -EINVAL, message: why) }
        func le<T: FixedWidthInteger>(_ x: T) -> [UInt8] { withUnsafeBytes(of: x.littleEndian) { Array($0) } }
        switch (f.type, v) {
        case (CHI_FT_STR, .string(let s)):
            let u = Array(s.utf8)
            guard u.count < f.size else { throw fail("\(u.count) bytes do not fit with their NUL") }
            guard !u.contains(0) else { throw fail("a string may not hold NUL") }
            return u
        case (CHI_FT_BYTES, .bytes(let b)):
            guard b.count <= f.size else { throw fail("\(b.count) bytes do not fit") }
            return b
        case (CHI_FT_BOOL, .bool(let b)):
            return [b ? 1 : 0] + [UInt8](repeating: 0, count: max(0, f.size - 1))
        case (CHI_FT_F32, .double(let d)):
            return le(Float(d).bitPattern)
        case (CHI_FT_F64, .double(let d)):
            return le(d.bitPattern)
        case (CHI_FT_F32, .int(let i)):
            return le(Float(i).bitPattern)
        case (CHI_FT_F64, .int(let i)):
            return le(Double(i).bitPattern)
        case (let t, .int(let i)) where integerWidth(t) != nil:
            let (bits, signed) = integerWidth(t)!
            let ok = signed ? (bits == 64 || (i >= -(1 << (bits - 1)) && i < (1 << (bits - 1))))
                            : (i >= 0 && (bits == 64 || i < (1 << bits)))
            guard ok, bits / 8 == f.size else { throw fail("\(i) does not fit") }
            return Array(le(UInt64(bitPattern: i)).prefix(bits / 8))
        default:
            throw fail("wrong kind of value \(v)")
        }
    }

    private static func integerWidth(_ t: UInt32) -> (bits: Int, signed: Bool)? {
        switch t {
        case CHI_FT_U8: return (8, false)
        case CHI_FT_U16: return (16, false)
        case CHI_FT_U32: return (32, false)
        case CHI_FT_U64: return (64, false)
        case CHI_FT_I8: return (8, true)
        case CHI_FT_I16: return (16, true)
        case CHI_FT_I32: return (32, true)
        case CHI_FT_I64: return (64, true)
        default: return nil
        }
    }

    static func typeName(_ t: UInt32) -> String {
        switch t {
        case CHI_FT_U8: return "u8"
        case CHI_FT_U16: return "u16"
        case CHI_FT_U32: return "u32"
        case CHI_FT_U64: return "u64"
        case CHI_FT_I8: return "i8"
        case CHI_FT_I16: return "i16"
        case CHI_FT_I32: return "i32"
        case CHI_FT_I64: return "i64"
        case CHI_FT_F32: return "f32"
        case CHI_FT_F64: return "f64"
        case CHI_FT_BOOL: return "bool"
        default: return "type \(t)"
        }
    }
}

extension Client {
    /// Creates (or finds, by name) a pool of `module` with create parameters given by name,
    /// laid out from the module's create descriptor (`CreateParams.encode`).
    public func createPool(module: String, name: String, containersPerNode: UInt32 = 1,
                           replicas: UInt32 = 1, _ params: [String: CreateValue]) throws(ChimaeraError) -> Pool
    {
        let bytes = try CreateParams.encode(module: module, params)
        return try createPool(module: module, name: name, containersPerNode: containersPerNode,
                              params: bytes, replicas: replicas)
    }
}
