import CChimaeraABI
import ChimaeraDevKit
import ChimaeraYAML
import Glibc

/// A pool's create parameters given by name in a compose file, encoded as the bytes the
/// module's Create expects (`chi_pool_create_opts_t.params`).
///
/// The layout comes from one of three places: the module's `<name>_methods.yaml` (the module
/// kit's declaration, whose kCreate params are laid out as the generated
/// `<name>_create_params_t` is: declaration order, natural C alignment), named by the pool's
/// `methods` key; else the layouts the tool knows, one function per module (the built-in bdev,
/// whose keys are friendlier than its struct: `path` as a file, flags as booleans); else the
/// module's own create descriptor (ABI 1.7, CHI_MF_CREATE_PARAMS), read with
/// chi_module_describe from the tool's module search path.
enum CreateParams {
    /// One parameter placed in the params struct: its name, type and byte offset.
    private typealias Laid = (name: String, type: FieldType, offset: Int)

    /// The bytes for `params` of a pool of `module`, empty when `params` is empty.
    ///
    /// - Parameters:
    ///   - owner: The pool, as errors name it (`pool "x"`).
    /// - Throws: An unknown key, a missing required key or a bad value, naming the key.
    static func encode(module: String, params: [YAMLNode.Entry], line: Int, owner: String,
                       in f: DeployFile) throws(FileLineError) -> [UInt8] {
        switch module {
        case CHI_BDEV_MODULE_NAME: return try bdev(params, line: line, owner: owner, in: f)
        default:
            guard let first = params.first else { return [] }
            if let (fields, size) = described(module) {
                return try place(fields, size: size, params, owner: owner,
                                 source: "the create descriptor of module \"\(module)\"", in: f)
            }
            throw f.error(first.keyLine, "\(owner): params.\(first.key): module \"\(module)\" takes no create parameters the tool knows of (it lists no create descriptor, or is not on CHI_MODULE_PATH here; give the pool `methods: <module>_methods.yaml` to lay them out from its kCreate)")
        }
    }

    /// The fields and size of `module`'s create descriptor, if the module is found here and
    /// lists one whose fields all map to kit types (chi_module_describe runs no hook).
    private static func described(_ module: String) -> ([Laid], Int)? {
        var vt: UnsafePointer<chi_module_vtable_t>?
        guard chi_module_describe(module, &vt) == 0, let vt, let methods = vt.pointee.methods else { return nil }
        for i in 0..<Int(vt.pointee.nmethods) where methods[i].flags & UInt32(CHI_MF_CREATE_PARAMS) != 0 {
            let m = methods[i]
            var out: [Laid] = []
            for j in 0..<Int(m.nfields) {
                guard let d = m.fields?[j] else { return nil }
                let n = Int(d.size)
                let types: [UInt32: FieldType] = [
                    CHI_FT_U8: .u8, CHI_FT_U16: .u16, CHI_FT_U32: .u32, CHI_FT_U64: .u64, CHI_FT_I8: .i8,
                    CHI_FT_I16: .i16, CHI_FT_I32: .i32, CHI_FT_I64: .i64, CHI_FT_F32: .f32, CHI_FT_F64: .f64,
                    CHI_FT_BOOL: .bool, CHI_FT_BYTES: .bytes(n), CHI_FT_STR: .str(n),
                ]
                // The loader checked the types and sizes; a bool wider than a byte has no kit type.
                guard let t = types[d.type], d.type != CHI_FT_BOOL || n == 1 else { return nil }
                out.append((String(cString: d.name), t, Int(d.offset)))
            }
            return (out, Int(m.task_size))
        }
        return nil
    }

    /// The bytes for `params` laid out as the kCreate params `methodsFile` declares.
    ///
    /// - Throws: An unreadable or invalid methods file, a key kCreate does not declare, or a
    ///   value outside its type, naming the pool and the key.
    static func encode(methodsFile: String, keyLine: Int, params: [YAMLNode.Entry], owner: String,
                       in f: DeployFile) throws(FileLineError) -> [UInt8] {
        let spec: ModuleSpec
        do throws(FileLineError) {
            let text = try DeployFile.readText(methodsFile)
            do throws(GenerateErrors) {
                spec = try MethodsFile.parse(text, file: methodsFile)
            } catch {
                throw f.error(keyLine, "\(owner): methods: \(error.description)")
            }
        } catch {
            throw f.error(keyLine, "\(owner): methods: \(methodsFile): \(error.message)")
        }
        return try generic(spec.createParams, params, owner: owner, file: methodsFile, in: f)
    }

    /// Lays the values out as a C struct of `fields` in order, each at its natural alignment;
    /// fields not given stay zero (as a module's Create sees a shorter struct's tail).
    private static func generic(_ fields: [FieldSpec], _ params: [YAMLNode.Entry], owner: String, file: String,
                                in f: DeployFile) throws(FileLineError) -> [UInt8] {
        guard !params.isEmpty else { return [] }
        var laid: [Laid] = []
        var at = 0, maxAlign = 1
        for field in fields {
            let (size, align) = layout(field.type)
            at = (at + align - 1) / align * align
            laid.append((field.name, field.type, at))
            at += size
            maxAlign = max(maxAlign, align)
        }
        return try place(laid, size: (at + maxAlign - 1) / maxAlign * maxAlign, params, owner: owner,
                         source: "kCreate in \(file)", in: f)
    }

    /// Writes the values into `size` zero bytes at the fields' offsets; `source` names where
    /// the layout came from in errors.
    private static func place(_ laid: [Laid], size: Int, _ params: [YAMLNode.Entry], owner: String,
                              source: String, in f: DeployFile) throws(FileLineError) -> [UInt8] {
        var offsets: [String: (Int, FieldType)] = [:]
        for (name, type, at) in laid { offsets[name] = (at, type) }
        var bytes = [UInt8](repeating: 0, count: size)
        let known = laid.map(\.name).joined(separator: ", ")
        for e in params {
            let key = "\(owner): params.\(e.key)"
            guard let (offset, type) = offsets[e.key] else {
                throw f.error(e.keyLine, "\(key): \(source) declares no such parameter (it declares: \(known.isEmpty ? "none" : known))")
            }
            let v = try value(type, e.value, key, in: f)
            bytes.replaceSubrange(offset..<(offset + v.count), with: v)
        }
        return bytes
    }

    /// Size and alignment of a create parameter (the kit allows numbers, bool, str and bytes).
    private static func layout(_ t: FieldType) -> (Int, Int) {
        switch t {
        case .u8, .i8, .bool: (1, 1)
        case .u16, .i16: (2, 2)
        case .u32, .i32, .f32: (4, 4)
        case .u64, .i64, .f64: (8, 8)
        case .bytes(let n), .str(let n): (n, 1)
        case .bulk, .shmPtr: (16, 8)
        case .domainQuery: (24, 8)
        }
    }

    /// One value's bytes, checked against its type.
    private static func value(_ t: FieldType, _ node: YAMLNode, _ key: String, in f: DeployFile) throws(FileLineError) -> [UInt8] {
        func int(_ lo: Int64, _ hi: Int64) throws(FileLineError) -> Int64 {
            Int64(try f.integer(node, key, in: Int(lo)...Int(hi)))
        }
        func le<T>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
        switch t {
        case .u8: return le(UInt8(try int(0, 255)))
        case .i8: return le(Int8(try int(-128, 127)))
        case .u16: return le(UInt16(try int(0, 65535)))
        case .i16: return le(Int16(try int(-32768, 32767)))
        case .u32: return le(UInt32(try int(0, Int64(UInt32.max))))
        case .i32: return le(Int32(try int(Int64(Int32.min), Int64(Int32.max))))
        case .i64: return le(try int(Int64.min, Int64.max))
        case .u64:
            let text = try f.string(node, key)
            guard let v = UInt64(text) else { throw f.error(node.line, "\(key): expected an unsigned 64-bit integer, got \"\(text)\"") }
            return le(v)
        case .f32, .f64:
            let text = try f.string(node, key)
            guard let v = Double(text) else { throw f.error(node.line, "\(key): expected a number, got \"\(text)\"") }
            return t == .f32 ? le(Float(v)) : le(v)
        case .bool: return [try f.bool(node, key) ? 1 : 0]
        case .str(let n), .bytes(let n):
            let text = Array(try f.string(node, key).utf8)
            let room = t == .str(n) ? n - 1 : n
            guard text.count <= room else { throw f.error(node.line, "\(key): longer than \(room) bytes") }
            return text
        case .bulk, .shmPtr, .domainQuery:
            throw f.error(node.line, "\(key): a shared-memory pointer cannot be a create parameter")
        }
    }

    /// bdev: `url` (fs:///abs/path or ram://) or `path` (a file, made an fs:// URL), `size`
    /// per container, and the flags as booleans.
    private static func bdev(_ params: [YAMLNode.Entry], line: Int, owner: String,
                             in f: DeployFile) throws(FileLineError) -> [UInt8] {
        var url: String?, urlLine = line, size: UInt64?, flags: UInt32 = 0
        for e in params {
            let key = "\(owner): params." + e.key
            switch e.key {
            case "url", "path":
                if url != nil {
                    throw f.error(e.keyLine, "\(key): give either params.url or params.path, not both")
                }
                let v = try f.string(e.value, key)
                url = e.key == "path" ? "fs://" + v : v
                urlLine = e.keyLine
            case "size":
                let v = try f.size(e.value, key)
                guard v >= CHI_BDEV_UNIT else {
                    throw f.error(e.keyLine, "\(key): \(v) bytes is less than one block (\(CHI_BDEV_UNIT) bytes)")
                }
                size = v
            case "buffered":
                if try f.bool(e.value, key) { flags |= UInt32(CHI_BDEV_CREATE_BUFFERED) }
            case "temporary":
                if try f.bool(e.value, key) { flags |= UInt32(CHI_BDEV_CREATE_TEMPORARY) }
            case "data_high_latency":
                if try f.bool(e.value, key) { flags |= UInt32(CHI_BDEV_CREATE_DATA_HIGH_LATENCY) }
            default:
                throw f.error(e.keyLine, "\(key): unknown create parameter of bdev (known: url or path, size, buffered, temporary, data_high_latency)")
            }
        }
        guard let url else { throw f.error(line, "\(owner): params.url (or params.path) is required for a bdev pool") }
        guard let size else { throw f.error(line, "\(owner): params.size is required for a bdev pool") }
        guard url.utf8.count < Int(CHI_BDEV_URL_MAX) else {
            throw f.error(urlLine, "\(owner): params.url: longer than \(CHI_BDEV_URL_MAX - 1) bytes")
        }
        var p = chi_bdev_params(url, size, flags)
        return withUnsafeBytes(of: &p) { Array($0) }
    }
}
