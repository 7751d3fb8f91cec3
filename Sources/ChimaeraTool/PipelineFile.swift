import ChimaeraYAML
import Glibc

/// A pipeline in the seed's (jarvis) shape: a name, an environment, and packages run in order.
///
/// ```yaml
/// name: test_pipeline
/// env: {CHI_MODULE_PATH: /opt/mods}   # a map; a name (the seed's `env: chimaera`) keeps ours
/// pkgs:
///   - pkg_type: chimaera_run           # starts a runtime
///     pkg_name: chimaera_run
///     sleep: 5                         # seconds to wait once it serves
///     port: 6000                       # cluster.port
///     modules: ['example_compressor']  # registered once it serves
///   - pkg_type: compressor             # an application: runs `cmd` with the pipeline's env
///     pkg_name: compressor
///     cmd: compress_test
/// ```
struct PipelineFile {
    /// The runtime a `chimaera_run` package starts.
    struct Runtime {
        var name: String
        var line: Int
        var sleep: Double = 0
        var port: Int?
        var modules: [String] = []
        var shmSize: String?
        var config: String?
    }

    /// An application package: a command, run with the pipeline's environment.
    struct App {
        var name: String
        var line: Int
        /// One string runs through /bin/sh -c; a list is the argv itself.
        var argv: [String]
        var display: String
        var env: [(String, String)] = []
    }

    enum Package {
        case runtime(Runtime)
        case app(App)
    }

    var file: DeployFile
    var name: String
    /// The variables the pipeline sets, in file order (values may use ${VAR}).
    var env: [(String, String)] = []
    var pkgs: [Package] = []

    /// The chimaera_run package's keys besides pkg_type and pkg_name.
    static let runtimeKeys = "sleep, port, modules, do_dbg, dbg_port, shm_size, config"

    /// Reads and validates the whole pipeline before anything starts.
    ///
    /// - Throws: The first problem, naming the file, the line, the package and the key.
    init(path: String) throws(FileLineError) {
        let (f, top) = try DeployFile.load(path)
        file = f
        var name: String?
        var sawPkgs = false
        for e in top {
            switch e.key {
            case "name": name = try f.string(e.value, "name")
            case "env":
                // The seed names an environment jarvis captured from a shell (`env: chimaera`);
                // this process's own environment plays that part, so a name adds nothing.
                if case .mapping = e.value { env = try Self.variables(e.value, "env", in: f) }
                else if case .sequence = e.value { throw f.error(e.value.line, "env: expected a map of VARIABLE: value (or the name of an environment)") }
            case "pkgs":
                sawPkgs = true
                var seen: [String: Int] = [:]
                var runtimeLine: Int?
                for item in try f.items(e.value, "pkgs") {
                    let p = try Self.package(item, index: pkgs.count, in: f)
                    let (pname, line): (String, Int)
                    switch p {
                    case .runtime(let r):
                        if let first = runtimeLine {
                            throw f.error(r.line, "package \"\(r.name)\": a second chimaera_run (the first is on line \(first)); one runtime a pipeline")
                        }
                        runtimeLine = r.line
                        (pname, line) = (r.name, r.line)
                    case .app(let a): (pname, line) = (a.name, a.line)
                    }
                    if let first = seen[pname] {
                        throw f.error(line, "package \"\(pname)\": pkg_name given twice (first on line \(first))")
                    }
                    seen[pname] = line
                    pkgs.append(p)
                }
            default:
                throw f.error(e.keyLine, "unknown key `\(e.key)` (expected: name, env, pkgs)")
            }
        }
        guard let name, !name.isEmpty else { throw f.error(nil, "key `name` is required") }
        guard sawPkgs, !pkgs.isEmpty else { throw f.error(nil, "pipeline \"\(name)\": `pkgs` lists no packages") }
        self.name = name
    }

    private static func variables(_ node: YAMLNode, _ what: String, in f: DeployFile) throws(FileLineError) -> [(String, String)] {
        var out: [(String, String)] = []
        for v in try f.entries(node, what) {
            guard !v.key.isEmpty, !v.key.contains("="), v.key.utf8.first.map({ $0 < 0x30 || $0 > 0x39 }) ?? false else {
                throw f.error(v.keyLine, "\(what): \"\(v.key)\" is not a variable name")
            }
            // An empty value sets the variable to "", as `export X=` does.
            out.append((v.key, v.value.isNull ? "" : try f.string(v.value, "\(what).\(v.key)")))
        }
        return out
    }

    private static func package(_ node: YAMLNode, index: Int, in f: DeployFile) throws(FileLineError) -> Package {
        let entries = try f.entries(node, "pkgs[\(index)]")
        guard let typeEntry = entries.first(where: { $0.key == "pkg_type" }) else {
            throw f.error(node.line, "pkgs[\(index)]: key `pkg_type` is required")
        }
        let type = try f.string(typeEntry.value, "pkgs[\(index)].pkg_type")
        var name = type
        if let n = entries.first(where: { $0.key == "pkg_name" }) { name = try f.string(n.value, "pkgs[\(index)].pkg_name") }
        let owner = "package \"\(name)\""
        if type == "chimaera_run" {
            var r = Runtime(name: name, line: node.line)
            for e in entries {
                let key = "\(owner): \(e.key)"
                switch e.key {
                case "pkg_type", "pkg_name": break
                case "sleep": r.sleep = try f.seconds(e.value, key)
                case "port": r.port = try f.integer(e.value, key, in: 1...65535)
                case "modules":
                    let ms = try f.strings(e.value, key)
                    for m in ms where !validName(m) {
                        throw f.error(e.value.line, "\(key): \"\(m)\" is not a valid module name")
                    }
                    r.modules = ms
                case "do_dbg":
                    if try f.bool(e.value, key) {
                        throw f.error(e.keyLine, "\(key): true is not supported (run the runtime under a debugger yourself: `chimaera start`)")
                    }
                case "dbg_port": _ = try f.integer(e.value, key, in: 0...65535)
                case "shm_size": r.shmSize = try f.string(e.value, key)
                case "config": r.config = try f.string(e.value, key)
                default:
                    throw f.error(e.keyLine, "\(owner): unknown key `\(e.key)` of chimaera_run (expected: \(runtimeKeys))")
                }
            }
            if r.config != nil && (r.port != nil || r.shmSize != nil) {
                throw f.error(node.line, "\(owner): with `config`, set cluster.port and runtime.shm_size in that file, not `port`/`shm_size` here")
            }
            return .runtime(r)
        }
        var argv: [String]?
        var display = ""
        var env: [(String, String)] = []
        for e in entries {
            switch e.key {
            case "pkg_type", "pkg_name": break
            case "cmd":
                if case .scalar = e.value {
                    display = try f.string(e.value, "\(owner): cmd")
                    argv = ["/bin/sh", "-c", display]
                } else {
                    let a = try f.strings(e.value, "\(owner): cmd")
                    guard !a.isEmpty else { throw f.error(e.value.line, "\(owner): cmd: the list is empty") }
                    argv = a
                    display = a.joined(separator: " ")
                }
            case "env": env = try variables(e.value, "\(owner): env", in: f)
            default:
                throw f.error(e.keyLine, "\(owner): unknown key `\(e.key)` (an application package takes: cmd, env)")
            }
        }
        guard let argv else {
            throw f.error(node.line, "\(owner): key `cmd` is required (the command this \(type) package runs)")
        }
        return .app(App(name: name, line: node.line, argv: argv, display: display, env: env))
    }
}

/// `${VAR}` and `$VAR` in `text`, replaced from `env` (an unset variable gives "").
func expandVariables(_ text: String, _ env: [String: String]) -> String {
    guard text.contains("$") else { return text }
    var out = ""
    var i = text.startIndex
    func isNameChar(_ c: Character) -> Bool { c == "_" || (c.isASCII && (c.isLetter || c.isNumber)) }
    while i < text.endIndex {
        let c = text[i]
        guard c == "$", text.index(after: i) < text.endIndex else {
            out.append(c)
            i = text.index(after: i)
            continue
        }
        var j = text.index(after: i)
        if text[j] == "{", let close = text[j...].firstIndex(of: "}") {
            out += env[String(text[text.index(after: j)..<close])] ?? ""
            i = text.index(after: close)
            continue
        }
        let start = j
        while j < text.endIndex && isNameChar(text[j]) { j = text.index(after: j) }
        if j == start {
            out.append(c)
            i = text.index(after: i)
        } else {
            out += env[String(text[start..<j])] ?? ""
            i = j
        }
    }
    return out
}
