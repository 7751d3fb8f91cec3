import ArgumentParser
import CChimaeraABI
import Glibc

/// `chimaera start`: runs a runtime, in the foreground or detached (chi_runtime_serve).
struct Start: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a runtime (foreground unless --detach; --detach returns once it serves).")

    @OptionGroup var runtime: RuntimeOptions

    @Flag(help: "Run in the background; return once the runtime serves (or failed to start).")
    var detach = false

    @Option(help: "Write the runtime's pid here once it serves (removed when it stops).")
    var pidFile: String?

    @Option(help: "With --detach: append the runtime's output here (default: /dev/null).")
    var logFile: String?

    @Option(help: "The cluster's hosts, one a line (replaces the config's cluster.hosts).")
    var hostfile: String?

    @Option(help: "This node's id: its line in the hostfile (1-based).")
    var nodeId: Int?

    func run() throws {
        // Paths are checked before anything starts: a detached runtime has nowhere to say so.
        if let pidFile, !Tool.checkParentDirectory(pidFile, "--pid-file") { throw ExitCode(2) }
        if let logFile, !Tool.checkParentDirectory(logFile, "--log-file") { throw ExitCode(2) }
        if let h = hostfile, access(h, R_OK) != 0 {
            Tool.fail("hostfile \(h): \(Sys.errnoText())")
            throw ExitCode(2)
        }
        let r: Resolved
        do throws(ToolError) {
            r = try Resolved(segment: runtime.segment, config: runtime.config, hostfile: hostfile, nodeId: nodeId ?? 0)
        } catch {
            Tool.fail(error.message)
            throw ExitCode(2)
        }
        if hostfile != nil && r.json.objects("hosts").count > 1 && r.json.int("key_set") == 0 {
            Tool.fail("cluster.key (or cluster.key_file) must be set in the config: peers prove they hold it")
            throw ExitCode(2)
        }
        let name = r.segment
        if r.pid != 0 {
            Tool.fail("segment \"\(name)\" is already served by pid \(r.pid); stop it with `chimaera stop --segment \(name)`")
            throw ExitCode(1)
        }
        if !detach {
            try Tool.finish(serve(name, notify: -1))
            return
        }

        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            Tool.fail("pipe: \(Sys.errnoText())")
            throw ExitCode(1)
        }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        var out: Int32 = -1
        if let logFile {
            out = open(logFile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard out >= 0 else {
                Tool.fail("--log-file \(logFile): \(Sys.errnoText())")
                throw ExitCode(2)
            }
        }
        fflush(nil)
        let pid = fork()
        if pid < 0 {
            Tool.fail("fork: \(Sys.errnoText())")
            throw ExitCode(1)
        }
        if pid == 0 {
            close(fds[0])
            setsid()
            let devnull = open("/dev/null", O_RDWR)
            dup2(devnull, 0)
            dup2(out >= 0 ? out : devnull, 1)
            dup2(out >= 0 ? out : devnull, 2)
            // The runtime rotates the log file by size (runtime.log_max_bytes) once it knows it.
            if let logFile { setenv("CHIMAERA_LOG_FILE", Tool.absolute(logFile), 1) }
            Glibc.exit(serve(name, notify: fds[1]))
        }
        close(fds[1])
        if out >= 0 { close(out) }
        // Wait for the child's verdict: "OK" once it serves, or its error text.
        var msg = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 1024)
        var pfd = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        let deadline = nowNs() + 30_000_000_000
        while nowNs() < deadline {
            if poll(&pfd, 1, 1000) <= 0 { continue }
            let n = buf.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, 1024) }
            if n <= 0 { break }
            msg += buf[0..<n]
        }
        close(fds[0])
        let text = String(decoding: msg, as: UTF8.self)
        if text.hasPrefix("OK") {
            print("chimaera: runtime \"\(name)\" serving (pid \(pid))")
            return
        }
        Tool.fail(text.isEmpty ? "the runtime exited before it was ready (see its log)" : text)
        // Reap it if it already exited, so it leaves no zombie behind a failed start.
        var status: Int32 = 0
        _ = waitpid(pid, &status, WNOHANG)
        throw ExitCode(1)
    }

    /// Runs the runtime in this process until it stops; returns the exit status.
    private func serve(_ name: String, notify: Int32) -> Int32 {
        do throws(ToolError) {
            try withServeOpts(segment: name, config: runtime.config, hostfile: hostfile, pidFile: pidFile,
                              nodeId: nodeId ?? 0, notifyFd: notify) { o throws(ToolError) in
                _ = try check { chi_runtime_serve(o) }
            }
            return 0
        } catch {
            Tool.fail(error.message)
            return 1
        }
    }
}

/// `chimaera stop`: stops a runtime and removes its segment.
struct Stop: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop a runtime and remove its segment (--all: every node of its cluster).")

    @OptionGroup var runtime: RuntimeOptions

    @Option(help: "How long to wait before killing the runtime.")
    var timeoutMs = 10000

    @Flag(help: "Also stop every other node of the runtime's cluster.")
    var all = false

    func run() throws {
        guard let r = Tool.resolve(runtime) else { throw ExitCode(2) }
        let name = r.segment
        if all { stopOtherNodes(name) }
        let pid = r.pid
        guard pid != 0 else {
            if chi_segment_remove(name) == 1 {
                Tool.fail("no runtime was serving segment \"\(name)\"; removed its stale segment")
            } else {
                Tool.fail("no runtime is serving segment \"\(name)\"")
            }
            throw ExitCode(1)
        }
        var asked = false
        if let c = try? Client(segment: name) { asked = (try? c.stopRuntime()) != nil }
        if !asked { kill(pid, SIGTERM) }
        let deadline = nowNs() + UInt64(max(timeoutMs, 0)) * 1_000_000
        while Sys.processAlive(pid) && nowNs() < deadline { usleep(5_000) }
        if Sys.processAlive(pid) {
            Tool.fail("runtime pid \(pid) did not stop within \(timeoutMs) ms; killing it")
            kill(pid, SIGKILL)
            while Sys.processAlive(pid) { usleep(5_000) }
        }
        _ = chi_segment_remove(name)
        print("chimaera: runtime \"\(name)\" (pid \(pid)) stopped")
    }

    /// `stop --all`: asks every other node of the runtime's cluster to stop (through this
    /// node's runtime), before this node stops.
    private func stopOtherNodes(_ segment: String) {
        guard let c = try? Client(segment: segment), let stats = try? c.statsJSON() else { return }
        let v = StatsView(stats)
        let me = v.int("node_id"), nodes = v.int("nodes")
        guard nodes > 1 else { return }
        for n in 1...nodes where n != me {
            do throws(ToolError) {
                try c.stopRuntime(node: UInt32(n))
                print("chimaera: node \(n) stopping")
            } catch {
                Tool.fail("node \(n): \(error.message)")
            }
        }
    }
}
