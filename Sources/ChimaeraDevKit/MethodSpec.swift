import ChimaeraYAML
/// What a module's `<name>_methods.yaml` declares, after validation: the model every generator
/// (C headers, C runtime glue, Swift runtime glue) renders from.

/// An error in a file the module tools read or write, in the `file:line: message` form.
package typealias GenerateError = FileLineError

/// Several errors found in one pass, reported together so one run shows every problem.
package struct GenerateErrors: Error, CustomStringConvertible, Sendable {
    package var all: [GenerateError]

    package init(_ all: [GenerateError]) { self.all = all }

    package var description: String { all.map(\.description).joined(separator: "\n") }
}

/// The direction of a task parameter: who writes it.
package enum FieldDirection: String, Sendable, Equatable {
    case input = "in", output = "out", inout_ = "inout"

    /// The `CHI_DIR_*` constant's name.
    var cName: String {
        switch self {
        case .input: "CHI_DIR_IN"
        case .output: "CHI_DIR_OUT"
        case .inout_: "CHI_DIR_INOUT"
        }
    }

    /// Whether the runtime reads the field (the client fills it before submitting).
    var isInput: Bool { self != .output }
}

/// The type of a task parameter: one `CHI_FT_*` type with its size.
package enum FieldType: Sendable, Equatable {
    case u8, u16, u32, u64, i8, i16, i32, i64, f32, f64, bool
    /// `count` inline bytes.
    case bytes(Int)
    /// An inline NUL-terminated string of at most `count - 1` bytes.
    case str(Int)
    /// A shared-memory buffer whose byte count is the field named `sizeField`.
    case bulk(sizeField: String)
    case shmPtr
    case domainQuery

    /// Scalars travel by value to a plain handler and to the client stubs.
    var isScalar: Bool {
        switch self {
        case .u8, .u16, .u32, .u64, .i8, .i16, .i32, .i64, .f32, .f64, .bool: true
        default: false
        }
    }

    /// Integers can hold a bulk buffer's byte count.
    var isInteger: Bool {
        switch self {
        case .u8, .u16, .u32, .u64, .i8, .i16, .i32, .i64: true
        default: false
        }
    }

    var isBulk: Bool {
        if case .bulk = self { return true }
        return false
    }

    /// The `CHI_FT_*` constant's name.
    var cConstant: String {
        switch self {
        case .u8: "CHI_FT_U8"
        case .u16: "CHI_FT_U16"
        case .u32: "CHI_FT_U32"
        case .u64: "CHI_FT_U64"
        case .i8: "CHI_FT_I8"
        case .i16: "CHI_FT_I16"
        case .i32: "CHI_FT_I32"
        case .i64: "CHI_FT_I64"
        case .f32: "CHI_FT_F32"
        case .f64: "CHI_FT_F64"
        case .bool: "CHI_FT_BOOL"
        case .bytes: "CHI_FT_BYTES"
        case .str: "CHI_FT_STR"
        case .bulk: "CHI_FT_BULK"
        case .shmPtr: "CHI_FT_SHM_PTR"
        case .domainQuery: "CHI_FT_DOMAIN_QUERY"
        }
    }

    /// The field's C type for a scalar or a struct member (arrays give their element type).
    var cType: String {
        switch self {
        case .u8: "uint8_t"
        case .u16: "uint16_t"
        case .u32: "uint32_t"
        case .u64: "uint64_t"
        case .i8: "int8_t"
        case .i16: "int16_t"
        case .i32: "int32_t"
        case .i64: "int64_t"
        case .f32: "float"
        case .f64: "double"
        case .bool: "bool"
        case .bytes: "uint8_t"
        case .str: "char"
        case .bulk, .shmPtr: "chi_shm_ptr_t"
        case .domainQuery: "chi_domain_query_t"
        }
    }

    /// The Swift type the C type imports as (arrays give their element type).
    var swiftType: String {
        switch self {
        case .u8, .bytes: "UInt8"
        case .u16: "UInt16"
        case .u32: "UInt32"
        case .u64: "UInt64"
        case .i8: "Int8"
        case .i16: "Int16"
        case .i32: "Int32"
        case .i64: "Int64"
        case .f32: "Float"
        case .f64: "Double"
        case .bool: "Bool"
        case .str: "CChar"
        case .bulk, .shmPtr: "chi_shm_ptr_t"
        case .domainQuery: "chi_domain_query_t"
        }
    }

    /// The field's size in bytes, as C lays it out.
    var size: Int {
        switch self {
        case .u8, .i8, .bool: 1
        case .u16, .i16: 2
        case .u32, .i32, .f32: 4
        case .u64, .i64, .f64: 8
        case .bytes(let n), .str(let n): n
        case .bulk, .shmPtr: 16
        case .domainQuery: 24
        }
    }

    /// `[N]` for inline arrays, else "".
    var cArraySuffix: String {
        switch self {
        case .bytes(let n), .str(let n): "[\(n)]"
        default: ""
        }
    }
}

/// One task parameter, in declaration order (which is the struct's and the handler's order).
package struct FieldSpec: Sendable, Equatable {
    package var name: String
    package var direction: FieldDirection
    package var type: FieldType
    /// For bulk fields: `CHI_DT_WRITE` (the data travels with the request) and/or
    /// `CHI_DT_EXPOSE` (the remote side writes it; copied back on completion).
    package var bulkWrite = false
    package var bulkExpose = false
    /// The line it is declared on, for messages.
    package var line: Int
}

/// How the runtime calls a method.
package enum MethodStyle: String, Sendable, Equatable {
    /// `int Name(state, task, rctx)`, dispatched by the module's `run` hook.
    case classic
    /// `int32_t Name(rctx, field...)`, called by the runtime through libffi from the descriptor.
    case plain
}

/// One method of a module.
package struct MethodSpec: Sendable, Equatable {
    /// The YAML key without its `k`: `Compress` for `kCompress`.
    package var name: String
    package var id: Int
    package var style: MethodStyle
    package var periodic: Bool
    /// `local: true`: CHI_MF_LOCAL, its tasks are refused rather than sent to another node.
    package var local = false
    package var fields: [FieldSpec]
    /// Whether the method changes the container's state (CHI_MF_WRITE: replicated pools
    /// run it on every copy).
    package var write = false
    /// Free text for the generated comments.
    package var doc: String
    package var line: Int

    /// `compress` for `Compress`, `get_pool_id` for `GetPoolId`, `io_stats` for `IOStats`.
    package var snake: String { Naming.snake(name) }
    /// `compress`, `getPoolId`, `ioStats`: the Swift function name.
    package var lowerCamel: String { Naming.lowerCamel(name) }

    /// Index of the field called `name`.
    func fieldIndex(_ name: String) -> Int? { fields.firstIndex { $0.name == name } }

    /// The descriptor's `CHI_MF_*` flags, e.g. `CHI_MF_PERIODIC_OK`, `CHI_MF_WRITE`.
    var flagNames: [String] {
        (periodic ? ["CHI_MF_PERIODIC_OK"] : []) + (write ? ["CHI_MF_WRITE"] : []) + (local ? ["CHI_MF_LOCAL"] : [])
    }

    /// The descriptor's `CHI_MF_*` flags as a C expression.
    var cFlags: String {
        return flagNames.isEmpty ? "0" : flagNames.joined(separator: " | ")
    }

    /// The same flags as a Swift expression.
    var swiftFlags: String {
        return flagNames.isEmpty ? "0" : flagNames.map { "UInt32(\($0))" }.joined(separator: " | ")
    }
}

/// The inherited methods, with the fixed ids the seed gives them.
package enum InheritedMethod: String, CaseIterable, Sendable {
    case create = "Create", destroy = "Destroy", nodeFailure = "NodeFailure"
    case recover = "Recover", migrate = "Migrate", upgrade = "Upgrade"

    var id: Int {
        switch self {
        case .create: 0
        case .destroy: 1
        case .nodeFailure: 2
        case .recover: 3
        case .migrate: 4
        case .upgrade: 5
        }
    }

    /// Create, Destroy, Migrate and Upgrade are container hooks; NodeFailure and Recover are
    /// ordinary methods at fixed ids (tasks a client or a recovery tool sends like any other).
    /// Migrate was an ordinary method too until the runtime gained migrate_out/migrate_in (ABI
    /// 1.5); MethodsFile refuses the old form with a message rather than reinterpreting it.
    var isHook: Bool { self == .create || self == .destroy || self == .migrate || self == .upgrade }
}

/// One field of a container's declared state (`state:` in the methods YAML): a scalar,
/// `str[N]` or `bytes[N]`, saved and restored by the generated Migrate and Upgrade code.
package struct StateField: Sendable, Equatable {
    package var name: String
    package var type: FieldType
    /// The line it is declared on, for messages.
    package var line: Int
}

/// A module's whole declaration.
package struct ModuleSpec: Sendable, Equatable {
    /// Whether each hook is implemented (kDestroy: 1 rather than -1, ...).
    package var hasDestroy: Bool
    package var hasUpgrade: Bool
    package var hasMigrate = false
    /// The container state's fields when the YAML declares them (`state:`), in order; nil when
    /// the module's own code defines its state. A declared state is the kit's: it allocates,
    /// frees, saves and restores it.
    package var state: [StateField]? = nil
    /// The parameters kCreate declares: what `chi_pool_create` passes to each container.
    package var createParams: [FieldSpec]
    /// The methods tasks are sent to (custom ones and NodeFailure/Recover/Migrate), by id.
    package var methods: [MethodSpec]
}

/// Identifier rules and case conversions shared by the generators.
package enum Naming {
    /// Splits `GetPoolId` into `Get`, `Pool`, `Id` and `IOStats` into `IO`, `Stats`.
    static func words(_ name: String) -> [String] {
        let chars = Array(name)
        var words: [String] = []
        var current = ""
        for (i, c) in chars.enumerated() {
            let upper = c.isUppercase
            let prevLower = i > 0 && (chars[i - 1].isLowercase || chars[i - 1].isNumber)
            let nextLower = i + 1 < chars.count && chars[i + 1].isLowercase
            let prevUpper = i > 0 && chars[i - 1].isUppercase
            if upper && !current.isEmpty && (prevLower || (prevUpper && nextLower)) {
                words.append(current)
                current = ""
            }
            current.append(c)
        }
        if !current.isEmpty { words.append(current) }
        return words
    }

    /// `get_pool_id` for `GetPoolId`.
    static func snake(_ name: String) -> String { words(name).map { $0.lowercased() }.joined(separator: "_") }

    /// `getPoolId` for `GetPoolId`.
    static func lowerCamel(_ name: String) -> String {
        let w = words(name)
        guard let first = w.first else { return name }
        return first.lowercased() + w.dropFirst().joined()
    }

    /// `hello_example` -> `HelloExample`: the CMake package name of a namespace (the seed's rule).
    package static func upperCamel(snake: String) -> String {
        snake.split(separator: "_").map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
    }

    /// Module and namespace names: a C identifier in lower snake case, at most 40 bytes, so
    /// that `<namespace>_<module>` stays under the runtime's 64-byte name limit.
    package static func isSnakeIdentifier(_ s: String) -> Bool {
        guard let first = s.utf8.first, first >= 97 && first <= 122, s.utf8.count <= 40 else { return false }
        return s.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 }
            && !s.hasSuffix("_") && !s.contains("__")
    }

    /// Method keys: `k` then an UpperCamelCase identifier of ASCII letters and digits.
    static func isMethodKey(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard u.count >= 2, u.count <= 48, u[0] == 107, u[1] >= 65 && u[1] <= 90 else { return false }
        return u.dropFirst().allSatisfy { ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) }
    }

    /// Names a method may not take: the runtime hooks the generated code defines beside them.
    static let reservedMethods: Set<String> = ["Run", "Monitor", "MapTaskToLane", "State"]

    /// C and Swift keywords and the names the generated code uses, which fields may not take.
    static let reservedFields: Set<String> = [
        "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
        "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
        "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch",
        "typedef", "union", "unsigned", "void", "volatile", "while", "bool", "true", "false",
        "hdr", "rctx", "state", "task", "self", "class", "func", "let", "var", "in", "inout",
        "init", "deinit", "import", "protocol", "extension", "operator", "is", "as", "nil",
        "throw", "throws", "try", "catch", "where", "guard", "defer", "repeat", "Type", "Self",
        "associatedtype", "subscript", "internal", "private", "public", "fileprivate", "open",
        "any", "some", "super", "rethrows",
        // Macros of the C headers a module includes.
        "errno", "stdin", "stdout", "stderr", "assert", "offsetof", "alignas", "alignof",
        "complex", "imaginary", "noreturn", "static_assert", "thread_local",
    ]

    /// Field names: lower snake case C identifiers, not starting with the generated `chi_`.
    static func isFieldName(_ s: String) -> Bool {
        guard let first = s.utf8.first, (first >= 97 && first <= 122) || first == 95 else { return false }
        return s.utf8.count <= 48 && !s.hasPrefix("chi_") && !reservedFields.contains(s)
            && s.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 }
    }
}
