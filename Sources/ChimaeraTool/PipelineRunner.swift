import CChimaeraABI
import Glibc

/// Runs one pipeline: starts its runtime (a `chimaera start` child in its own process group),
/// runs the applications in order (each in its own process group, so a signal reaches the
/// whole command), and always stops the runtime it started.
///
/// SIGINT, SIGTERM and SIGHUP are blocked in this process and taken with `sigtimedwait` while
/// waiting, so no handler runs at an arbitrary point; children get an empty signal mask.
struct PipelineRunner {
    let spec: PipelineFile
    let segment: String
    let startTimeoutMs: Int
    /// Where the runtime's output goes; nil: a file in the work directory, removed at the end.
    let runtimeLog: String?

    /// With a hostfile: one runtime per host (`chimaera cluster start`), applications on this
    /// node's; see PipelineRunner+Cluster.swift.
    let hostfile: String?

    private var runtimePid: pid_t = 0
    var workDir = ""
    var env: [String: String] = [:]
    private var signals = sigset_t()
    /// With a hostfile, once `cluster start` ran: this node's segments (applications use the first).
    var clusterSegments: [String]?

    init(spec: PipelineFile, segment: String, startTimeoutMs: Int, runtimeLog: String?, hostfile: String?) {
        self.spec = spec
        self.segment = segment
        self.startTimeoutMs = startTimeoutMs
        self.runtimeLog = runtimeLog
        self.hostfile = hostfile
    }

    /// `pipe_<name>_<pid>`, the name cut to what a segment name allows.
    static func defaultSegment(_ name: String) -> String {
        let clean = String(name.map { c in c.isASCII && (c.isLetter || c.isNumber || c == "_" || c == "-") ? c : "_" }.prefix(32))
        return "pipe_\(clean)_\(getpid())"
    }

    /// The outcome of waiting for a child.
    enum Wait {
        case exited(Int32)
        case signalled(Int32)
        case timedOut
    }

    /// Runs the pipeline; returns the exit status (the first failing application's).
    mutating func run() -> Int32 {
        sigemptyset(&signals)
        for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&signals, s) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        defer { pthread_sigmask(SIG_UNBLOCK, &signals, nil) }

        var template = Array("/tmp/chimaera-pipeline-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            Tool.fail("pipeline \"\(spec.name)\": mkdtemp: \(Sys.errnoText())")
            return 1
        }
        workDir = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer { removeWorkDir() }

        env = Self.currentEnvironment()
        for (k, v) in spec.env { env[k] = expandVariables(v, env) }
        let dir = spec.file.path.contains("/") ? String(spec.file.path[..<spec.file.path.lastIndex(of: "/")!]) : "."
        env["CHIMAERA_PIPELINE_DIR"] = Self.absolute(dir.isEmpty ? "/" : dir)

        let name = spec.name
        var ran = 0
        var status: Int32 = 0
        for pkg in spec.pkgs {
            switch pkg {
            case .runtime(let r):
                if let failure = startRuntime(r) {
                    status = failure
                    break
                }
            case .app(let a):
                ran += 1
                let rc = runApp(a)
                if rc != 0 {
                    status = rc
                    break
                }
            }
            if status != 0 { break }
        }
        let stopped = stopRuntime()
        if status == 0 {
            say("pipeline \(name): done, \(ran) application(s) ran\(stopped)")
        } else {
            say("pipeline \(name): failed with status \(status)\(stopped)")
        }
        return status
    }

    // MARK: the runtime

    /// Starts the runtime and registers its modules; nil on success, else the exit status.
    private mutating func startRuntime(_ r: PipelineFile.Runtime) -> Int32? {
        let name = spec.name
        var configArgs: [String] = []
        if let c = r.config {
            configArgs = ["--config", expandVariables(c, env)]
        } else if r.port != nil || r.shmSize != nil {
            var text = ""
            if let s = r.shmSize { text += "runtime:\n  shm_size: \(s)\n" }
            if let p = r.port { text += "cluster:\n  port: \(p)\n" }
            let path = workDir + "/runtime.yaml"
            guard Self.writeFile(path, text) else {
                Tool.fail("pipeline \(name): \(path): \(Sys.errnoText())")
                return 1
            }
            configArgs = ["--config", path]
        }
        if let hostfile {
            guard let (seg, pid) = startCluster(r, hostfile: hostfile, configArgs: configArgs) else { return 1 }
            return finishStart(r, segment: seg, pid: pid)
        }
        let args = [ChildProcess.selfExe, "start", "--segment", segment, "--pid-file", workDir + "/runtime.pid"] + configArgs
        let log = runtimeLog ?? workDir + "/runtime.log"
        say("pipeline \(name): \(r.name): starting runtime \"\(segment)\"")
        switch spawn(args, env: env, output: log) {
        case .failure(let msg):
            Tool.fail("pipeline \(name): \(r.name): \(msg)")
            return 1
        case .success(let pid): runtimePid = pid
        }
        // It serves once its pid file holds its pid.
        let deadline = nowNs() + UInt64(startTimeoutMs) * 1_000_000
        while true {
            if Self.readFile(workDir + "/runtime.pid").flatMap({ pid_t($0.filter { $0.isNumber }) }) == runtimePid { break }
            switch waitChild(runtimePid, until: min(deadline, nowNs() + 20_000_000)) {
            case .exited(let s):
                runtimePid = 0
                Tool.fail("pipeline \(name): \(r.name): the runtime exited with status \(s) before it served:\n" + (Self.readFile(log) ?? ""))
                return 1
            case .signalled(let sig):
                Tool.fail("pipeline \(name): interrupted by signal \(sig) while the runtime started")
                return 128 + sig
            case .timedOut:
                if nowNs() >= deadline {
                    Tool.fail("pipeline \(name): \(r.name): the runtime did not serve within \(startTimeoutMs) ms:\n" + (Self.readFile(log) ?? ""))
                    return 1
                }
            }
        }
        return finishStart(r, segment: segment, pid: runtimePid)
    }

    /// Registers the modules on the runtime serving `segment` and waits `sleep`; nil on success.
    private mutating func finishStart(_ r: PipelineFile.Runtime, segment: String, pid: pid_t) -> Int32? {
        let name = spec.name
        do throws(ToolError) {
            let c = try Client(segment: segment, timeoutMs: 5000)
            for m in r.modules {
                do throws(ToolError) {
                    try c.registerModule(m)
                } catch {
                    Tool.fail("pipeline \(name): \(r.name): module \"\(m)\": \(error.message)")
                    return 1
                }
            }
        } catch {
            Tool.fail("pipeline \(name): \(r.name): cannot attach to the runtime: \(error.message)")
            return 1
        }
        env["CHIMAERA_SEGMENT"] = segment
        let mods = r.modules.isEmpty ? "" : ", modules " + r.modules.joined(separator: ", ")
        say("pipeline \(name): \(r.name): runtime \"\(segment)\" serving (pid \(pid)\(mods))")
        if r.sleep > 0 {
            let until = nowNs() + UInt64(r.sleep * 1e9)
            while nowNs() < until {
                if let sig = takeSignal(until: until) {
                    Tool.fail("pipeline \(name): interrupted by signal \(sig)")
                    return 128 + sig
                }
            }
        }
        return nil
    }

    /// Stops the runtime this pipeline started, if any; returns the report's tail.
    private mutating func stopRuntime() -> String {
        if let segs = clusterSegments { return stopCluster(segs) }
        let pid = runtimePid
        guard pid > 0 else { return "" }
        runtimePid = 0
        // The client is released before waiting: it must not outlive its runtime for long.
        let asked = (try? Client(segment: segment, timeoutMs: 1000)).map { (try? $0.stopRuntime()) != nil } ?? false
        if !asked { kill(pid, SIGTERM) }
        var result = waitChild(pid, until: nowNs() + 10_000_000_000, interruptible: false)
        var how = "stopped"
        if case .timedOut = result {
            kill(pid, SIGKILL)
            result = waitChild(pid, until: nowNs() + 5_000_000_000, interruptible: false)
            how = "killed (it did not stop within 10 s)"
        }
        _ = chi_segment_remove(segment)
        return "; runtime \"\(segment)\" (pid \(pid)) \(how)"
    }

    // MARK: applications

    /// Runs one application to its end; returns its exit status (128 + signal if one ended it).
    private func runApp(_ a: PipelineFile.App) -> Int32 {
        let name = spec.name
        var appEnv = env
        for (k, v) in a.env { appEnv[k] = expandVariables(v, appEnv) }
        say("pipeline \(name): \(a.name): \(a.display)")
        let pid: pid_t
        switch spawn(a.argv, env: appEnv, output: nil, search: true) {
        case .failure(let msg):
            Tool.fail("pipeline \(name): \(a.name): \(msg)")
            return 127
        case .success(let p): pid = p
        }
        while true {
            switch waitChild(pid, until: nowNs() + 1_000_000_000) {
            case .timedOut: continue
            case .exited(let s):
                if s != 0 { Tool.fail("pipeline \(name): \(a.name) exited with status \(s): \(a.display)") }
                return s
            case .signalled(let sig):
                // Pass it on to the application's process group, give it 5 s, then kill it.
                kill(-pid, sig)
                if case .timedOut = waitChild(pid, until: nowNs() + 5_000_000_000, interruptible: false) {
                    kill(-pid, SIGKILL)
                    _ = waitChild(pid, until: nowNs() + 5_000_000_000, interruptible: false)
                }
                Tool.fail("pipeline \(name): interrupted by signal \(sig) while \(a.name) ran")
                return 128 + sig
            }
        }
    }

    // MARK: processes

    enum Spawned {
        case success(pid_t)
        case failure(String)
    }

    /// Starts `argv` in a new process group with `env` and an empty signal mask; stdout and
    /// stderr go to `output` (appended) when given, else to ours.
    func spawn(_ argv: [String], env: [String: String], output: String?, search: Bool = false) -> Spawned {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let output {
            posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setpgroup(&attr, 0)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))
        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for a in cArgv { free(a) }
            for e in cEnv { free(e) }
        }
        fflush(nil)
        var pid: pid_t = 0
        let rc = search ? posix_spawnp(&pid, argv[0], &actions, &attr, cArgv, cEnv)
                        : posix_spawn(&pid, argv[0], &actions, &attr, cArgv, cEnv)
        if rc != 0 { return .failure("cannot run \(argv[0]): \(Sys.errnoText(rc))") }
        return .success(pid)
    }

    /// Waits for child `pid` to end until `deadline` (monotonic ns), or for a blocked signal
    /// (unless `interruptible` is false: then signals wait for later).
    func waitChild(_ pid: pid_t, until deadline: UInt64, interruptible: Bool = true) -> Wait {
        while true {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid {
                return (status & 0x7f) == 0 ? .exited((status >> 8) & 0xff) : .exited(128 + (status & 0x7f))
            }
            if r < 0 && errno != EINTR { return .exited(-1) }
            if nowNs() >= deadline { return .timedOut }
            if interruptible {
                if let sig = takeSignal(until: min(deadline, nowNs() + 20_000_000)) { return .signalled(sig) }
            } else {
                usleep(10_000)
            }
        }
    }

    /// A pending SIGINT/SIGTERM/SIGHUP taken before `deadline`, or nil.
    private func takeSignal(until deadline: UInt64) -> Int32? {
        let now = nowNs()
        let left = deadline > now ? deadline - now : 0
        var ts = timespec(tv_sec: Int(left / 1_000_000_000), tv_nsec: Int(left % 1_000_000_000))
        var set = signals
        let s = sigtimedwait(&set, nil, &ts)
        return s > 0 ? s : nil
    }

    // MARK: files and environment

    func say(_ text: String) {
        print(text)
        fflush(nil)
    }

    private func removeWorkDir() {
        for f in ["runtime.pid", "runtime.log", "runtime.yaml"] { unlink(workDir + "/" + f) }
        rmdir(workDir)
    }

    private static func currentEnvironment() -> [String: String] {
        var out: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { out[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            p += 1
        }
        return out
    }

    private static func absolute(_ path: String) -> String {
        guard let r = realpath(path, nil) else { return path }
        defer { free(r) }
        return String(cString: r)
    }

    private static func writeFile(_ path: String, _ text: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return text.withCString { write(fd, $0, strlen($0)) } == text.utf8.count
    }

    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while out.count < 1 << 20 {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out.suffix(8000), as: UTF8.self)
    }
}
