import ArgumentParser
import CChimaeraABI
import ChimaeraYAML
import Glibc

/// What a compose file asks for: modules to load and pools to create, in file order.
struct ComposeFile {
    struct Pool {
        var name: String
        var module: String
        var containersPerNode: UInt32
        /// Copies of each container on distinct nodes (the runtime refuses more than it has).
        var replicas: UInt32 = 1
        /// Create parameters, already encoded for the module.
        var params: [UInt8]
        /// The line of the pool's entry, for errors the runtime reports later.
        var line: Int
    }

    var file: DeployFile
    var modules: [(name: String, line: Int)] = []
    var pools: [Pool] = []

    /// Reads and validates the whole file before anything is sent to the runtime.
    ///
    /// - Throws: The first problem, naming the file, the line, the pool and the key.
    init(path: String) throws(FileLineError) {
        let (f, top) = try DeployFile.load(path)
        file = f
        var sawPools = false
        for e in top {
            switch e.key {
            case "modules":
                for item in try f.items(e.value, "modules") {
                    modules.append((try f.name(item, "modules"), item.line))
                }
            case "pools":
                sawPools = true
                var seen: [String: Int] = [:]
                for item in try f.items(e.value, "pools") {
                    let p = try Self.pool(item, index: pools.count, in: f)
                    if let first = seen[p.name] {
                        throw f.error(p.line, "pool \"\(p.name)\": given twice (first on line \(first))")
                    }
                    seen[p.name] = p.line
                    pools.append(p)
                }
            default:
                throw f.error(e.keyLine, "unknown key `\(e.key)` (expected: modules, pools)")
            }
        }
        if !sawPools && modules.isEmpty {
            throw f.error(nil, "nothing to do: the file has neither `modules` nor `pools`")
        }
    }

    private static func pool(_ node: YAMLNode, index: Int, in f: DeployFile) throws(FileLineError) -> Pool {
        let entries = try f.entries(node, "pools[\(index)]")
        // The name first, so every later error can name the pool.
        guard let nameEntry = entries.first(where: { $0.key == "name" }) else {
            throw f.error(node.line, "pools[\(index)]: key `name` is required")
        }
        let name = try f.name(nameEntry.value, "pools[\(index)].name")
        let owner = "pool \"\(name)\""
        var module: String?
        var containers: UInt32 = 1
        var replicas: UInt32 = 1
        var paramEntries: [YAMLNode.Entry] = []
        var methods: (String, Int)?
        for e in entries {
            switch e.key {
            case "name": break
            case "module": module = try f.name(e.value, "\(owner): module")
            case "containers_per_node", "containers":
                containers = UInt32(try f.integer(e.value, "\(owner): \(e.key)", in: 1...1024))
            case "replicas":
                replicas = UInt32(try f.integer(e.value, "\(owner): replicas", in: 1...1024))
            case "methods": methods = (f.relative(try f.string(e.value, "\(owner): methods")), e.keyLine)
            case "params":
                if !e.value.isNull { paramEntries = try f.entries(e.value, "\(owner): params") }
            default:
                throw f.error(e.keyLine, "\(owner): unknown key `\(e.key)` (expected: name, module, containers_per_node, replicas, params, methods)")
            }
        }
        guard let module else { throw f.error(node.line, "\(owner): key `module` is required") }
        let params = if let (file, line) = methods {
            try CreateParams.encode(methodsFile: file, keyLine: line, params: paramEntries, owner: owner, in: f)
        } else {
            try CreateParams.encode(module: module, params: paramEntries, line: node.line, owner: owner, in: f)
        }
        return Pool(name: name, module: module, containersPerNode: containers, replicas: replicas, params: params,
                    line: node.line)
    }
}

/// `chimaera compose FILE`: registers the file's modules and creates its pools, idempotently.
struct Compose: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Register the modules and create the pools a YAML file lists (idempotent).",
        discussion: """
            The file (YAML):
              modules: [small_message]     # loaded by name (lib<name>.so)
              pools:
                - name: blocks             # creation is idempotent by name
                  module: bdev
                  containers_per_node: 2   # default 1
                  replicas: 2              # copies on distinct nodes; default 1
                  params: {path: /tmp/blocks.bin, size: 64M}
            `params` are the module's create parameters by name (bdev: url or path,
            size, buffered, temporary, data_high_latency; another module's from its
            kCreate, given `methods: <module>_methods.yaml`). A pool that exists with
            the same module and containers per node is left as it is; one that
            differs is an error. Exit status: 0 done, 1 refused, 2 a bad file.
            """)

    @OptionGroup var runtime: RuntimeOptions

    @Argument(help: "The compose file (YAML).") var file: String

    @Flag(help: "Report what was done as one JSON object.") var json = false

    @Option(help: "How long to wait for the runtime to answer, in milliseconds.")
    var timeoutMs = 5000

    func run() throws {
        let spec: ComposeFile
        do throws(FileLineError) {
            spec = try ComposeFile(path: file)
        } catch {
            Tool.fail(error.description)
            throw ExitCode(2)
        }
        guard let r = Tool.resolve(runtime) else { throw ExitCode(2) }
        let segment = r.segment
        let client: Client
        do throws(ToolError) {
            client = try Client(segment: segment, config: runtime.config, timeoutMs: UInt32(clamping: max(timeoutMs, 0)))
        } catch {
            Tool.fail("\(file): segment \"\(segment)\": \(error.message)")
            throw ExitCode(1)
        }
        var report = ComposeReport(file: file, segment: segment)
        let failure = apply(spec, client, &report)
        if json {
            print(report.json(error: failure))
        } else {
            report.printText()
        }
        if let failure {
            Tool.fail(failure)
            throw ExitCode(1)
        }
    }

    /// Applies the file in order; returns the first failure's message (what was done stays
    /// in `report`).
    private func apply(_ spec: ComposeFile, _ client: Client, _ report: inout ComposeReport) -> String? {
        let f = spec.file
        for m in spec.modules {
            do throws(ToolError) {
                try client.registerModule(m.name)
                report.modules.append(m.name)
            } catch {
                return f.error(m.line, "module \"\(m.name)\": \(error.message)").description
            }
        }
        for p in spec.pools {
            let owner = "pool \"\(p.name)\""
            do throws(ToolError) {
                if let have = try client.poolInfo(named: p.name) {
                    if have.moduleText != p.module || have.containers_per_node != p.containersPerNode {
                        return f.error(p.line, "\(owner) already exists with module \(have.moduleText) and \(have.containers_per_node) containers per node; the file asks for module \(p.module) and \(p.containersPerNode) (destroy the pool, or change the file)").description
                    }
                    report.pools.append(.init(name: p.name, module: p.module, id: have.id,
                                              containersPerNode: p.containersPerNode, containers: have.containers, created: false))
                    continue
                }
                let id = try client.createPool(module: p.module, name: p.name, containersPerNode: p.containersPerNode,
                                               params: p.params, replicas: p.replicas)
                let info = try client.poolInfo(named: p.name)
                report.pools.append(.init(name: p.name, module: p.module, id: id, containersPerNode: p.containersPerNode,
                                          containers: info?.containers ?? 0, created: true))
            } catch {
                return f.error(p.line, "\(owner) (module \(p.module)): \(error.message)").description
            }
        }
        return nil
    }
}

/// What `chimaera compose` did, for its text and JSON reports.
struct ComposeReport {
    struct Pool {
        var name: String
        var module: String
        var id: UInt64
        var containersPerNode: UInt32
        var containers: UInt32
        var created: Bool
    }

    var file: String
    var segment: String
    var modules: [String] = []
    var pools: [Pool] = []

    var created: Int { pools.filter(\.created).count }

    func printText() {
        for m in modules { print("module \(m): registered") }
        for p in pools {
            let what = p.created ? "created" : "exists"
            print("pool \(p.name): \(what) (id \(p.id), module \(p.module), \(p.containersPerNode) per node, \(p.containers) containers)")
        }
        print("chimaera: compose \(file) on \"\(segment)\": \(created) pool(s) created, \(pools.count - created) already there, \(modules.count) module(s) registered")
    }

    func json(error: String?) -> String {
        let pools = self.pools.map { p in
            JSONText.object([("name", JSONText.string(p.name)), ("module", JSONText.string(p.module)),
                             ("id", "\(p.id)"), ("containers_per_node", "\(p.containersPerNode)"),
                             ("containers", "\(p.containers)"),
                             ("action", JSONText.string(p.created ? "created" : "exists"))])
        }
        return JSONText.object([
            ("file", JSONText.string(file)), ("segment", JSONText.string(segment)),
            ("modules", "[" + modules.map(JSONText.string).joined(separator: ", ") + "]"),
            ("pools", "[" + pools.joined(separator: ", ") + "]"),
            ("created", "\(created)"), ("existing", "\(self.pools.count - created)"),
            ("ok", error == nil ? "true" : "false"),
            ("error", error.map(JSONText.string) ?? "null"),
        ])
    }
}
