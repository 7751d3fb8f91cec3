import ArgumentParser
import ChimaeraYAML
import Glibc

/// `chimaera pipeline`: pipelines in the seed's shape (a runtime, then applications).
struct Pipeline: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a pipeline: a runtime (chimaera_run) and applications, in the seed's YAML shape.",
        subcommands: [PipelineRun.self])
}

/// `chimaera pipeline run FILE`.
struct PipelineRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Start the pipeline's runtime, run its applications in order, stop what it started.",
        discussion: """
            The file: `name`, `env` (a map of variables, for the runtime and every application), \
            and `pkgs`, run in order. A `pkg_type: chimaera_run` package starts a runtime on this \
            node (keys: \(PipelineFile.runtimeKeys)); any other package is an application whose \
            `cmd` (a string for /bin/sh -c, or a list) runs with the pipeline's environment, \
            CHIMAERA_SEGMENT naming the runtime started and CHIMAERA_PIPELINE_DIR the file's \
            directory. The runtime is stopped when the last application ends, when one fails \
            (the pipeline exits with its status) and on SIGINT or SIGTERM (exit 128 + signal). \
            With --hostfile, chimaera_run starts one runtime per host (as `chimaera cluster start`; \
            the config must set cluster.key) and the applications run here, against this node's runtime.
            """)

    @Argument(help: "The pipeline file (YAML).") var file: String

    @Option(help: "The started runtime's segment (default: pipe_<name>_<pid>, unique).")
    var segment: String?

    @Option(help: "How long to wait for the runtime to serve, in milliseconds.")
    var startTimeoutMs = 30000

    @Option(help: "Start one runtime per host of this hostfile (chimaera cluster start); applications run here.")
    var hostfile: String?

    @Option(help: "Append the runtime's output here (default: a temporary file, shown if it fails).")
    var runtimeLog: String?

    func run() throws {
        let spec: PipelineFile
        do throws(FileLineError) {
            spec = try PipelineFile(path: file)
        } catch {
            Tool.fail(error.description)
            throw ExitCode(2)
        }
        let seg = segment ?? PipelineRunner.defaultSegment(spec.name)
        guard validName(seg) else {
            Tool.fail("--segment \(seg): not a valid segment name")
            throw ExitCode(2)
        }
        if let h = hostfile, access(h, R_OK) != 0 {
            Tool.fail("--hostfile \(h): \(Sys.errnoText())")
            throw ExitCode(2)
        }
        if let runtimeLog, !Tool.checkParentDirectory(runtimeLog, "--runtime-log") { throw ExitCode(2) }
        var runner = PipelineRunner(spec: spec, segment: seg, startTimeoutMs: max(startTimeoutMs, 100),
                                    runtimeLog: runtimeLog, hostfile: hostfile)
        throw ExitCode(runner.run())
    }
}
