import ChimaeraYAML
/// Reads a module's `<name>_methods.yaml` into a `ModuleSpec`, checking everything the
/// generators rely on. Every problem is reported with its line; nothing is guessed.
///
/// The file maps method keys to ids. A key is `k` plus an UpperCamelCase name. The inherited
/// methods have fixed ids (kCreate 0, kDestroy 1, kNodeFailure 2, kRecover 3, kMigrate 4,
/// kUpgrade 5) or -1 for "not implemented"; kCreate is required. Custom methods take ids from
/// 10 to 4095; 6-9 are reserved. A method's value is its id, or a mapping:
///
///     kCompress:
///       id: 10
///       style: plain          # or classic (the default)
///       periodic: false       # may be submitted as a periodic task
///       local: false          # its tasks never leave their node (CHI_MF_LOCAL)
///       write: false          # changes the container's state (replicated pools: every copy)
///       doc: Compresses data into out.
///       params:               # in order: the task struct's and the handler's order
///         data: in bulk(size)           # a shared-memory buffer of `size` bytes
///         size: in u64
///         out: out bulk(out_cap) expose
///         out_cap: in u64
///         out_size: out u64
///
/// kDestroy, kMigrate and kUpgrade are container hooks, not methods: they take no params.
/// kMigrate was an ordinary method before the runtime had migrate_out/migrate_in; a kMigrate
/// that still declares params or a style is refused with a message saying so.
///
/// One more key, `state`, declares the fields of each container's state, in order, with the
/// types of create params (numbers, bool, str[N], bytes[N]). The kit then defines the state,
/// allocates and frees it, and generates its Migrate and Upgrade code:
///
///     state:
///       served: u64
///       name: str[32]
package enum MethodsFile {
    /// Parses and checks the file's text.
    ///
    /// - Parameters:
    ///   - text: The YAML source.
    ///   - file: The path used in messages.
    /// - Returns: The module's declaration.
    /// - Throws: `GenerateErrors` holding every problem found, in line order.
    package static func parse(_ text: String, file: String) throws(GenerateErrors) -> ModuleSpec {
        var reader = Reader(file: file)
        let spec = reader.read(text)
        if !reader.errors.isEmpty {
            throw GenerateErrors(reader.errors.sorted { ($0.line ?? 0) < ($1.line ?? 0) })
        }
        return spec!
    }
}

private struct Reader {
    let file: String
    var errors: [GenerateError] = []

    init(file: String) { self.file = file }

    mutating func fail(_ line: Int?, _ message: String) {
        errors.append(GenerateError(file: file, line: line, message: message))
    }

    mutating func read(_ text: String) -> ModuleSpec? {
        let root: YAMLNode?
        do throws(ConfigError) {
            root = try YAMLNode.parse(text, file: file)
        } catch {
            fail(error.line, error.message)
            return nil
        }
        guard let root, !root.isNull else {
            fail(1, "no methods are declared: the file needs at least `kCreate: 0`")
            return nil
        }
        guard case .mapping(let entries, _) = root else {
            fail(root.line, "expected a mapping of method keys to ids (`kCompress: 10`)")
            return nil
        }
        var seenKeys: [String: Int] = [:]
        var seenIds: [Int: (String, Int)] = [:]
        var hooks: [InheritedMethod: Bool] = [:]
        var createParams: [FieldSpec] = []
        var methods: [MethodSpec] = []
        var state: [StateField]?
        for e in entries {
            if let first = seenKeys[e.key] {
                fail(e.keyLine, "\(e.key) is declared twice (first on line \(first))")
                continue
            }
            seenKeys[e.key] = e.keyLine
            if e.key == "state" {
                state = stateFields(e.value)
                continue
            }
            guard Naming.isMethodKey(e.key) else {
                fail(e.keyLine, "bad method name \"\(e.key)\": use k followed by an UpperCamelCase name of letters and digits, like kCompress")
                continue
            }
            let name = String(e.key.dropFirst())
            let inherited = InheritedMethod(rawValue: name)
            if inherited == nil && (Naming.reservedMethods.contains(name) || name.hasPrefix("Chi")) {
                fail(e.keyLine, "\(e.key) is reserved: the generated code uses \(name.hasPrefix("Chi") ? "names starting with Chi" : name) itself")
                continue
            }
            guard let m = method(e, name: name, inherited: inherited) else { continue }
            if m.id == -1 {
                if inherited == .create {
                    fail(e.keyLine, "kCreate cannot be -1: every module builds its containers in Create (use kCreate: 0)")
                }
                continue
            }
            if let inherited {
                guard m.id == inherited.id else {
                    fail(e.value.line, "\(e.key) is an inherited method: its id must be \(inherited.id), or -1 if it is not implemented")
                    continue
                }
            } else if (6...9).contains(m.id) {
                fail(e.value.line, "id \(m.id) of \(e.key) is reserved: ids 6-9 lie between the inherited methods (0-5) and custom ones (10 and up)")
                continue
            } else if m.id < 10 {
                fail(e.value.line, "id \(m.id) of \(e.key) belongs to an inherited method: custom method ids start at 10")
                continue
            } else if m.id > 4095 {
                fail(e.value.line, "id \(m.id) of \(e.key) is too large: the runtime accepts method ids up to 4095")
                continue
            }
            if let (other, line) = seenIds[m.id] {
                fail(e.value.line, "\(e.key) has id \(m.id), already used by \(other) on line \(line)")
                continue
            }
            seenIds[m.id] = (e.key, e.value.line)
            if let snakeClash = methods.first(where: { $0.snake == m.snake }) {
                fail(e.keyLine, "\(e.key) and k\(snakeClash.name) give the same C name \"\(m.snake)\"")
                continue
            }
            switch inherited {
            case .create?:
                if let bad = m.fields.first(where: { $0.direction != .input || !createParamType($0.type) }) {
                    fail(bad.line, "create parameter \(bad.name) must be `in` and a number, bool, str[N] or bytes[N]: it is copied into each container as plain bytes")
                }
                createParams = m.fields
                hooks[.create] = true
            case .migrate? where !m.fields.isEmpty:
                fail(m.line, "kMigrate is the container hook that moves a container to another node (migrate_out/migrate_in) and takes no params; a method that used id 4 needs a custom id (10 and up)")
            case .destroy?, .upgrade?, .migrate?:
                if !m.fields.isEmpty { fail(m.line, "\(e.key) is a container hook and takes no params") }
                hooks[inherited!] = true
            default:
                methods.append(m)
            }
        }
        if hooks[.create] == nil && seenKeys["kCreate"] == nil {
            fail(1, "kCreate is missing: every module needs it (add `kCreate: 0`)")
        }
        return ModuleSpec(hasDestroy: hooks[.destroy] ?? false, hasUpgrade: hooks[.upgrade] ?? false,
                          hasMigrate: hooks[.migrate] ?? false, state: state,
                          createParams: createParams, methods: methods.sorted { $0.id < $1.id })
    }

    /// `state:`, a mapping of field names to types (no direction: the state is the module's).
    private mutating func stateFields(_ node: YAMLNode) -> [StateField] {
        guard case .mapping(let entries, let line) = node, !entries.isEmpty else {
            fail(node.line, "state must map field names to types, like `served: u64`, with at least one field")
            return []
        }
        var fields: [StateField] = []
        for e in entries {
            guard Naming.isFieldName(e.key) else {
                fail(e.keyLine, "bad state field name \"\(e.key)\": use a lower_snake_case C identifier that is not a keyword and does not start with chi_")
                continue
            }
            if fields.contains(where: { $0.name == e.key }) {
                fail(e.keyLine, "state field \(e.key) is declared twice")
                continue
            }
            guard case .scalar(let text, _, let vline) = e.value, let type = fieldType(text), createParamType(type) else {
                fail(e.value.line, "state field \(e.key): expected one of u8 u16 u32 u64 i8 i16 i32 i64 f32 f64 bool str[N] bytes[N] (the state is saved as plain values: no pointers)")
                continue
            }
            fields.append(StateField(name: e.key, type: type, line: vline))
        }
        if fields.count > 64 { fail(line, "state has \(fields.count) fields; at most 64 are supported") }
        return fields
    }

    private func createParamType(_ t: FieldType) -> Bool {
        switch t {
        case .bulk, .shmPtr, .domainQuery: false
        default: true
        }
    }

    /// One entry: `kName: id` or `kName: {id: ..., style: ..., periodic: ..., local: ..., doc: ..., params: ...}`.
    private mutating func method(_ e: YAMLNode.Entry, name: String, inherited: InheritedMethod?) -> MethodSpec? {
        var m = MethodSpec(name: name, id: 0, style: .classic, periodic: false, fields: [], doc: "", line: e.keyLine)
        switch e.value {
        case .scalar(let text, _, let line):
            guard let id = integer(text) else {
                fail(line, "the id of \(e.key) must be an integer, not \"\(text)\"")
                return nil
            }
            m.id = id
            return m
        case .mapping(let entries, let line):
            var sawId = false
            var seen = Set<String>()
            for f in entries {
                if !seen.insert(f.key).inserted {
                    fail(f.keyLine, "\(e.key).\(f.key) is given twice")
                    continue
                }
                switch f.key {
                case "id":
                    guard case .scalar(let text, _, _) = f.value, let id = integer(text) else {
                        fail(f.value.line, "\(e.key).id must be an integer")
                        return nil
                    }
                    m.id = id
                    sawId = true
                case "style":
                    guard case .scalar(let text, _, _) = f.value, let s = MethodStyle(rawValue: text) else {
                        fail(f.value.line, "\(e.key).style must be classic or plain")
                        continue
                    }
                    if inherited?.isHook == true && s == .plain {
                        fail(f.value.line, "\(e.key) is a container hook: it has no plain style")
                    }
                    m.style = s
                case "periodic":
                    guard case .scalar(let text, _, _) = f.value, let b = boolean(text) else {
                        fail(f.value.line, "\(e.key).periodic must be true or false")
                        continue
                    }
                    m.periodic = b
                case "local":
                    guard case .scalar(let text, _, _) = f.value, let b = boolean(text) else {
                        fail(f.value.line, "\(e.key).local must be true or false")
                        continue
                    }
                    if inherited != nil && b {
                        fail(f.value.line, "\(e.key) is inherited: only a custom method can be local")
                    }
                    m.local = b
                case "write":
                    guard case .scalar(let text, _, _) = f.value, let b = boolean(text) else {
                        fail(f.value.line, "\(e.key).write must be true or false")
                        continue
                    }
                    m.write = b
                case "doc":
                    guard case .scalar(let text, _, _) = f.value else {
                        fail(f.value.line, "\(e.key).doc must be text")
                        continue
                    }
                    guard !text.contains("*/") else {
                        fail(f.value.line, "\(e.key).doc may not contain */: it goes into C comments")
                        continue
                    }
                    m.doc = text.split(whereSeparator: \.isNewline).joined(separator: " ")
                case "params":
                    m.fields = params(f.value, owner: e.key)
                default:
                    fail(f.keyLine, "unknown key \(e.key).\(f.key): expected id, style, periodic, local, write, doc or params")
                }
            }
            if !sawId {
                fail(line, "\(e.key) has no id")
                return nil
            }
            return m
        case .sequence(_, let line):
            fail(line, "\(e.key) must be an id or a mapping with an id, not a list")
            return nil
        }
    }

    private mutating func params(_ node: YAMLNode, owner: String) -> [FieldSpec] {
        if node.isNull { return [] }
        guard case .mapping(let entries, let line) = node else {
            fail(node.line, "\(owner).params must map parameter names to `<in|out|inout> <type>`")
            return []
        }
        var fields: [FieldSpec] = []
        for e in entries {
            guard Naming.isFieldName(e.key) else {
                fail(e.keyLine, "bad parameter name \"\(e.key)\" in \(owner): use a lower_snake_case C identifier that is not a keyword and does not start with chi_")
                continue
            }
            if fields.contains(where: { $0.name == e.key }) {
                fail(e.keyLine, "parameter \(e.key) of \(owner) is declared twice")
                continue
            }
            guard case .scalar(let text, _, let vline) = e.value, let f = field(e.key, text, vline) else {
                if case .scalar = e.value {} else {
                    fail(e.value.line, "parameter \(e.key) of \(owner) must be `<in|out|inout> <type>`, like `in u64`")
                }
                continue
            }
            fields.append(f)
        }
        // Bulk buffers name their byte count: another integer parameter the runtime can read.
        for f in fields {
            guard case .bulk(let sizeName) = f.type else { continue }
            guard let size = fields.first(where: { $0.name == sizeName }) else {
                fail(f.line, "bulk parameter \(f.name) of \(owner) names its size \"\(sizeName)\", which is not a parameter of \(owner)")
                continue
            }
            if !size.type.isInteger || !size.direction.isInput {
                fail(size.line, "\(sizeName), the size of bulk parameter \(f.name), must be an `in` or `inout` integer")
            }
        }
        if fields.count > 64 { fail(line, "\(owner) has \(fields.count) parameters; at most 64 are supported") }
        return fields
    }

    /// `<in|out|inout> <type> [write] [expose]`.
    private mutating func field(_ name: String, _ text: String, _ line: Int) -> FieldSpec? {
        let words = text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        let grammar = "expected `<in|out|inout> <type> [write] [expose]` with a type from u8 u16 u32 u64 i8 i16 i32 i64 f32 f64 bool str[N] bytes[N] bulk(<size param>) shm_ptr domain_query"
        guard words.count >= 2, let dir = FieldDirection(rawValue: words[0]) else {
            fail(line, "parameter \(name): \"\(text)\": \(grammar)")
            return nil
        }
        guard let type = fieldType(words[1]) else {
            fail(line, "parameter \(name): unknown type \"\(words[1])\": \(grammar)")
            return nil
        }
        var f = FieldSpec(name: name, direction: dir, type: type, line: line)
        for w in words.dropFirst(2) {
            switch w {
            case "write" where type.isBulk: f.bulkWrite = true
            case "expose" where type.isBulk: f.bulkExpose = true
            default:
                fail(line, "parameter \(name): \"\(w)\" is not allowed here (only bulk parameters take write/expose)")
                return nil
            }
        }
        if type.isBulk && !f.bulkWrite && !f.bulkExpose {
            // The seed's defaults: inputs travel with the request, outputs are exposed.
            f.bulkWrite = dir != .output
            f.bulkExpose = dir != .input
        }
        if case .bulk(let s) = type, s == name {
            fail(line, "bulk parameter \(name) cannot be its own size")
            return nil
        }
        return f
    }

    private func fieldType(_ w: String) -> FieldType? {
        switch w {
        case "u8": return .u8
        case "u16": return .u16
        case "u32": return .u32
        case "u64": return .u64
        case "i8": return .i8
        case "i16": return .i16
        case "i32": return .i32
        case "i64": return .i64
        case "f32": return .f32
        case "f64": return .f64
        case "bool": return .bool
        case "shm_ptr": return .shmPtr
        case "domain_query": return .domainQuery
        default: break
        }
        if w.hasPrefix("bulk(") && w.hasSuffix(")") {
            let inner = String(w.dropFirst(5).dropLast())
            return Naming.isFieldName(inner) ? .bulk(sizeField: inner) : nil
        }
        for (prefix, make) in [("str[", FieldType.str), ("bytes[", FieldType.bytes)] where w.hasPrefix(prefix) && w.hasSuffix("]") {
            guard let n = Int(w.dropFirst(prefix.count).dropLast()), n >= 1, n <= 65536 else { return nil }
            return make(n)
        }
        return nil
    }

    private func integer(_ text: String) -> Int? {
        let t = text.hasPrefix("+") ? String(text.dropFirst()) : text
        guard !t.isEmpty, t.count <= 12, t.dropFirst(t.hasPrefix("-") ? 1 : 0).allSatisfy(\.isASCIIDigit) else { return nil }
        return Int(t)
    }

    private func boolean(_ text: String) -> Bool? {
        switch text {
        case "true", "True", "TRUE", "yes", "on": true
        case "false", "False", "FALSE", "no", "off": false
        default: nil
        }
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}
