import ArgumentParser
import CChimaeraABI
import Glibc

/// `chimaera module upgrade NAME [--path FILE]`: hot upgrade of a loaded module.
struct ModuleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "module",
        abstract: "Manage the modules loaded in a runtime.",
        subcommands: [ModuleUpgrade.self])
}

struct ModuleUpgrade: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upgrade",
        abstract: "Swap a new build of module NAME into every container of its pools, on every node, while tasks keep coming.",
        discussion: """
            Each container is plugged (new tasks wait, none is refused), the tasks running finish
            in the old code, the new version's upgrade hook builds the new state from the old, and
            the container is unplugged. All or nothing: if one container's upgrade fails, every
            one keeps the old version. Prints the version change and each container's pause.
            """)

    @OptionGroup var runtime: RuntimeOptions

    @Argument(help: "The module's name (as registered).") var name: String

    @Option(help: "The new shared object (default: lib<NAME>.so found again on the module search path). In a cluster the same path on every node.")
    var path: String?

    @Flag(help: "Accept a version that is not newer than the loaded one.") var force = false
    @Flag(help: "For a module without an upgrade hook: create its containers afresh (their state is lost).")
    var recreate = false
    @Flag(help: "Print the runtime's JSON report.") var json = false

    func run() throws {
        guard let r = Tool.resolve(runtime) else { throw ExitCode(2) }
        var flags: UInt32 = 0
        if force { flags |= UInt32(CHI_UPGRADE_FORCE) }
        if recreate { flags |= UInt32(CHI_UPGRADE_RECREATE) }
        let file: String? = path.map { p in
            guard !p.hasPrefix("/"), let cwd = getcwd(nil, 0) else { return p }
            defer { free(cwd) }
            return String(cString: cwd) + "/" + p
        }
        do throws(ToolError) {
            let c = try Client(segment: r.segment)
            let report = try c.upgradeModule(name, path: file, flags: flags)
            if json {
                print(report)
                return
            }
            let v = StatsView(report)
            print("chimaera: \(name) upgraded from version \(v.int("old_version")) to \(v.int("new_version")): \(v.int("containers")) containers, longest pause \(v.double("pause_us_max")) us")
        } catch {
            Tool.fail("module upgrade \(name): \(error.message)")
            throw ExitCode(1)
        }
    }
}
