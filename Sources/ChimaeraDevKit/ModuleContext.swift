/// The names every generated file of one module derives from its repo's namespace and its
/// own name, so that one rule gives the C, Swift and CMake spellings.
package struct ModuleContext: Sendable {
    /// The language the runtime side is written in.
    package enum Language: String, Sendable {
        /// `cpp`: the seed's C++ shape (task structs, `class Server`, `class Client`) over the
        /// header-only C++ module layer in bindings/cpp.
        case c, swift, cpp

        /// How messages name it.
        var title: String {
            switch self {
            case .c: "C"
            case .swift: "Swift"
            case .cpp: "C++"
            }
        }
    }

    /// The repo's namespace: `example`.
    package let namespace: String
    /// The module's directory and header prefix: `compressor`.
    package let name: String
    package let language: Language
    /// The version the vtable reports (chimaera_mod.yaml's `version`).
    package let version: Int

    /// The context of module `name` of the repo with `namespace`.
    package init(namespace: String, name: String, language: Language, version: Int) {
        self.namespace = namespace
        self.name = name
        self.language = language
        self.version = version
    }

    /// The name the runtime registers and loads it by: `example_compressor`, so the shared
    /// object is libexample_compressor.so (the seed's `lib_name_`).
    var moduleName: String { "\(namespace)_\(name)" }
    /// `COMPRESSOR`: the prefix of its macros.
    var upper: String { name.uppercased() }
    /// `EXAMPLE_COMPRESSOR`: the prefix of its include guards.
    var guardPrefix: String { moduleName.uppercased() }
    /// The Swift module of the C headers a Swift module imports: `CCompressor`.
    var cModule: String { "C" + Naming.upperCamel(snake: name) }

    /// Paths inside the module directory.
    var methodsYAML: String { "include/\(name)/\(name)_methods.yaml" }
    var methodsHeader: String { "include/\(name)/\(name)_methods.h" }
    var tasksHeader: String { "include/\(name)/\(name)_tasks.h" }
    var clientHeader: String { "include/\(name)/\(name)_client.h" }
    var runtimeSource: String {
        switch language {
        case .c: "src/\(name)_runtime.c"
        case .swift: "Sources/\(name)/\(name)_runtime.swift"
        case .cpp: "src/\(name)_runtime.cc"
        }
    }
    var libExec: String {
        switch language {
        case .c: "src/\(name)_lib_exec.h"
        case .swift: "Sources/\(name)/\(name)_lib_exec.swift"
        case .cpp: "include/\(name)/\(name)_lib_exec.h"
        }
    }
    /// The generated C++ client of a C or Swift module (chi::<name>::Client).
    var cppClientHeader: String { "include/\(name)/\(name)_cpp_client.h" }
    /// The C++ client library's source (the seed's src/<name>_client.cc).
    var clientSource: String { "src/\(name)_client.cc" }

    /// `COMPRESSOR_METHOD_COMPRESS`.
    func idMacro(_ m: MethodSpec) -> String { "\(upper)_METHOD_\(m.snake.uppercased())" }
    /// `compressor_compress_task_t`.
    func taskType(_ m: MethodSpec) -> String { "\(name)_\(m.snake)_task_t" }
    /// `compressor_create_params_t`.
    var paramsType: String { "\(name)_create_params_t" }
    /// `compressor_state_t`.
    var stateType: String { "\(name)_state_t" }
}

/// Small text helpers for the templates.
enum Text {
    /// `head(a, b, c)` on one line if it fits in `width`, else as many parameters a line as fit,
    /// continuation lines aligned after the parenthesis (the way clang-format packs them).
    static func call(_ head: String, _ args: [String], tail: String = "", indent: String = "", width: Int = 100) -> [String] {
        let pad = String(repeating: " ", count: indent.count + head.count + 1)
        var lines: [String] = []
        var line = indent + head + "("
        for (i, a) in args.enumerated() {
            let piece = a + (i == args.count - 1 ? ")" + tail : ",")
            let fresh = line == indent + head + "(" || line == pad
            if !fresh && line.count + 1 + piece.count > width {
                lines.append(line)
                line = pad + piece
            } else {
                line += (fresh ? "" : " ") + piece
            }
        }
        if args.isEmpty { line += ")" + tail }
        lines.append(line)
        return lines
    }

    /// Wraps `text` into comment lines of at most `width` characters, each starting `prefix`.
    static func wrap(_ text: String, prefix: String, width: Int = 96) -> [String] {
        var lines: [String] = []
        var line = prefix
        for word in text.split(separator: " ") {
            if line.count + word.count + 1 > width && line != prefix {
                lines.append(line)
                line = prefix
            }
            line += (line == prefix ? "" : " ") + word
        }
        if line != prefix { lines.append(line) }
        return lines
    }

    /// A `/** ... */` comment holding `text`, wrapped, continuation lines starting ` *  `.
    static func doc(_ text: String, indent: String = "") -> [String] {
        var lines = wrap(text, prefix: indent + " *  ", width: 96)
        guard !lines.isEmpty else { return [] }
        lines[0] = indent + "/** " + lines[0].dropFirst(indent.count + 4)
        lines[lines.count - 1] += " */"
        return lines
    }

    /// A method's one-line summary: `Compress (method 10)` plus its doc.
    static func summary(_ m: MethodSpec) -> String {
        let base = "\(m.name) (method \(m.id)\(m.style == .plain ? ", plain" : ""))"
        return m.doc.isEmpty ? base + "." : base + ": " + m.doc
    }

    /// How a field is declared, for comments: `in: bulk of size bytes, DT_WRITE`.
    static func fieldNote(_ f: FieldSpec) -> String {
        var s = f.direction.rawValue
        if case .bulk(let size) = f.type {
            let modes = [f.bulkWrite ? "DT_WRITE" : nil, f.bulkExpose ? "DT_EXPOSE" : nil].compactMap { $0 }
            s += ": bulk of `\(size)` bytes, \(modes.joined(separator: " | "))"
        } else if case .str(let n) = f.type {
            s += ": string of at most \(n - 1) bytes"
        }
        return s
    }
}
