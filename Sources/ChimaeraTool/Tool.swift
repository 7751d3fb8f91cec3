import ArgumentParser
import CChimaeraABI
import ChimaeraDevKit
import Glibc

/// The `chimaera` command: start, stop and inspect a runtime, run benchmarks, make module
/// repos. It reaches the runtime only through libchimaera.so's C ABI, so a process that runs
/// a runtime (`start`) holds the one copy inside that library.
@main
struct Chimaera: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(
            commandName: "chimaera",
            abstract: "Start, stop and inspect a Chimaera runtime; run benchmarks; make module repos.",
            discussion: """
                The segment defaults to $CHIMAERA_SEGMENT, then the config's runtime.name ("default");
                the config file to $CHIMAERA_CONF.
                """,
            version: versionText,
            subcommands: [Start.self, Stop.self, Status.self, Top.self, Compose.self, Pipeline.self, Worch.self,
                          ModuleCommand.self, Migrate.self, Bench.self, Cluster.self,
                          MakeRepo.self, MakeMod.self, RefreshRepo.self])
    }

    /// Parses and runs; usage errors exit 2 (as the tool always has), failures 1.
    static func main() {
        var args = Array(CommandLine.arguments.dropFirst())
        // chi_make_repo and friends are symlinks to the tool: the name picks the command.
        let program = String(CommandLine.arguments.first?.split(separator: "/").last ?? "chimaera")
        if let cmd = DevKit.command(forProgram: program) { args.insert(cmd, at: 0) }
        do {
            var command = try parseAsRoot(args)
            try command.run()
        } catch let e as ExitCode {
            Glibc.exit(e.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            let text = fullMessage(for: error) + "\n"
            _ = text.withCString { write(2, $0, strlen($0)) }
            Glibc.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}

/// Options every runtime command takes.
struct RuntimeOptions: ParsableArguments {
    @Option(help: "The runtime's segment name (default: $CHIMAERA_SEGMENT, then the config's runtime.name).")
    var segment: String?

    @Option(help: "The configuration file (default: $CHIMAERA_CONF, else built-in defaults).")
    var config: String?
}

enum Tool {
    static func fail(_ msg: String) {
        var m = "chimaera: " + msg
        if !m.hasSuffix("\n") { m += "\n" }
        _ = m.withCString { write(2, $0, strlen($0)) }
    }

    /// Exits with `status` unless it is 0.
    static func finish(_ status: Int32) throws {
        if status != 0 { throw ExitCode(status) }
    }

    /// The segment and config the options resolve to, or nil after printing why not.
    static func resolve(_ o: RuntimeOptions) -> Resolved? {
        do throws(ToolError) {
            return try Resolved(segment: o.segment, config: o.config)
        } catch {
            fail(error.message)
            return nil
        }
    }

    /// `path` made absolute against the working directory.
    static func absolute(_ path: String) -> String {
        guard !path.hasPrefix("/"), let cwd = getcwd(nil, 0) else { return path }
        defer { free(cwd) }
        return String(cString: cwd) + "/" + path
    }

    /// The directory part of `path` exists (so a file can be made there), or an error naming it.
    static func checkParentDirectory(_ path: String, _ option: String) -> Bool {
        let dir = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        var st = stat()
        if stat(dir.isEmpty ? "/" : dir, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { return true }
        fail("\(option) \(path): directory \(dir) does not exist")
        return false
    }
}

/// `chimaera worch [set NAME]`: the work-orchestration policy, shown or switched.
struct Worch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the work-orchestration policy, or switch to module NAME (worch set NAME).")

    @OptionGroup var runtime: RuntimeOptions

    @Argument(help: "set") var verb: String?
    @Argument(help: "The policy module's name (with set).") var policy: String?

    func run() throws {
        if let verb, verb != "set" {
            Tool.fail("worch: unknown verb \"\(verb)\" (expected: set NAME)")
            throw ExitCode(2)
        }
        if verb == "set" && policy == nil {
            Tool.fail("worch set: give the policy module's name (worch_load_balance, worch_queue_round_robin, worch_proc_round_robin, or your own)")
            throw ExitCode(2)
        }
        guard let r = Tool.resolve(runtime) else { throw ExitCode(2) }
        let name = r.segment
        do throws(ToolError) {
            let c = try Client(segment: name)
            if let policy {
                try c.setWorkOrchestrator(policy)
                print("chimaera: work orchestrator of \"\(name)\" is now \(policy)")
            } else {
                let o = StatsView(try c.statsJSON()).object("orchestrator")
                print("\(o?.string("policy") ?? "?"): \(o?.int("moves") ?? 0) lane moves in \(o?.int("ticks") ?? 0) looks")
            }
        } catch {
            Tool.fail(error.message)
            throw ExitCode(1)
        }
    }
}

// MARK: the module kit

struct MakeRepo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-repo", abstract: "(chi_make_repo) Make a module repo: chimaera_repo.yaml, CMakeLists.txt.")
    @Argument(help: "The repo's directory.") var dir: String
    @Argument(help: "The namespace (lower_snake_case) prefixing module and CMake target names.") var namespace: String

    func run() throws { try Tool.finish(DevKit.makeRepo(dir: dir, namespace: namespace)) }
}

struct MakeMod: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-mod", abstract: "(chi_make_mod) Make a module in the repo DIR from the template.")
    @Argument(help: "DIR/NAME: the repo and the new module's name.") var path: String
    @Option(help: "The module's language: c or swift.") var lang = "c"

    func run() throws { try Tool.finish(DevKit.makeMod(path: path, lang: lang)) }
}

struct RefreshRepo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "refresh-repo",
        abstract: "(chi_refresh_repo) Regenerate ids, descriptors, dispatch and stubs from each module's <name>_methods.yaml.")
    @Argument(help: "The repo's directory.") var dir: String

    func run() throws { try Tool.finish(DevKit.refreshRepo(repo: dir)) }
}
