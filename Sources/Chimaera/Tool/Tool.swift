import CChimaera
import Glibc

/// The `chimaera` command: start, stop and inspect a runtime, and run benchmarks.
package enum Tool {
    static let usage = """
        usage: chimaera <command> [options]

          start   [--segment NAME] [--config FILE] [--detach --pid-file FILE] [--log-file FILE]
                  [--hostfile FILE] [--node-id N]
                  run a runtime (foreground unless --detach; --detach returns once it serves)
          stop    [--segment NAME] [--timeout-ms N] [--all]
                  stop a runtime and remove its segment (--all: every node of its cluster)
        \(Cluster.usage)
          status  [--segment NAME] [--json] [--cpu-window-ms N]
                  workers, pools, lanes, task counts and CPU use
          worch   [set NAME] [--segment NAME]
                  show the work-orchestration policy, or switch to module NAME
          bench   small-message|idle|remote|bdev|python [--json] [--segment NAME] [options]
        \(DevKit.usage)

        The segment defaults to $CHIMAERA_SEGMENT, then the config's runtime.name ("default");
        the config file to $CHIMAERA_CONF.
        """

    /// Runs the tool; returns the exit status.
    ///
    /// - Parameters:
    ///   - args: The arguments after the program name.
    ///   - program: The program's base name: chi_make_repo, chi_make_mod and chi_refresh_repo
    ///     (symlinks to the tool) stand for their subcommand.
    package static func main(_ args: [String], program: String = "chimaera") -> Int32 {
        if let cmd = DevKit.command(forProgram: program) {
            var opts = Options(args)
            return DevKit.main(cmd, &opts)
        }
        guard let cmd = args.first else {
            print(usage)
            return 2
        }
        var opts = Options(Array(args.dropFirst()))
        let status: Int32
        switch cmd {
        case "start": status = start(&opts)
        case "stop": status = stop(&opts)
        case "status": status = Tool.status(&opts)
        case "bench": status = Bench.main(&opts)
        case "cluster": status = Cluster.main(&opts)
        case "worch": status = worch(&opts)
        case "make-repo", "make-mod", "refresh-repo": status = DevKit.main(cmd, &opts)
        case "help", "--help", "-h":
            print(usage)
            return 0
        default:
            fail("unknown command \"\(cmd)\"\n\(usage)")
            return 2
        }
        return status
    }

    /// `chimaera worch [set NAME]`: the work-orchestration policy, shown or switched.
    static func worch(_ opts: inout Options) -> Int32 {
        guard let config = loadConfig(&opts) else { return 2 }
        let name = segmentName(&opts, config)
        let verb = opts.positional()
        let policy = verb == "set" ? opts.positional() : nil
        if rejectUnknown(opts, "worch") { return 2 }
        if let verb, verb != "set" {
            fail("worch: unknown verb \"\(verb)\" (expected: set NAME)")
            return 2
        }
        if verb == "set" && policy == nil {
            fail("worch set: give the policy module's name (worch_load_balance, worch_queue_round_robin, worch_proc_round_robin, or your own)")
            return 2
        }
        do throws(ChiError) {
            let c = try RuntimeClient.connect(segment: name, configPath: nil, mode: UInt32(CHI_MODE_ATTACH), timeoutMs: 1000)
            defer { c.close() }
            if let policy {
                try c.setWorkOrchestrator(policy)
                print("chimaera: work orchestrator of \"\(name)\" is now \(policy)")
            } else {
                let stats = try c.statsJSON()
                let o = StatsView(stats).object("orchestrator")
                print("\(o?.string("policy") ?? "?"): \(o?.int("moves") ?? 0) lane moves in \(o?.int("ticks") ?? 0) looks")
            }
            return 0
        } catch {
            fail(error.message)
            return 1
        }
    }

    /// Reports the first option nobody asked for; true if there was one.
    static func rejectUnknown(_ opts: Options, _ cmd: String) -> Bool {
        guard let bad = opts.unused() else { return false }
        fail("unknown option \(bad) for \(cmd)")
        return true
    }

    static func fail(_ msg: String) {
        var m = "chimaera: " + msg
        if !m.hasSuffix("\n") { m += "\n" }
        _ = m.withCString { write(2, $0, strlen($0)) }
    }

    /// The segment to talk to: --segment, $CHIMAERA_SEGMENT, then the config's name.
    static func segmentName(_ opts: inout Options, _ config: RuntimeConfig) -> String {
        config.segmentName(explicit: opts.value("--segment"))
    }

    static func loadConfig(_ opts: inout Options) -> RuntimeConfig? {
        do {
            return try RuntimeConfig.load(path: opts.value("--config"))
        } catch {
            fail("configuration error: \(error.description)")
            return nil
        }
    }

    // MARK: start

    static func start(_ opts: inout Options) -> Int32 {
        guard var config = loadConfig(&opts) else { return 2 }
        if let f = opts.value("--hostfile") {
            do {
                config.cluster.hosts = try ClusterConfig.readHostfile(f, defaultPort: config.cluster.port)
                config.cluster.hostfile = f
            } catch {
                fail("hostfile: \(error.description)")
                return 2
            }
            if config.cluster.isMultiNode && config.cluster.key.isEmpty {
                fail("cluster.key (or cluster.key_file) must be set in the config: peers prove they hold it")
                return 2
            }
        }
        if let n = opts.value("--node-id") {
            guard let id = Int(n), id >= 1, id <= max(1, config.cluster.hosts.count) else {
                fail("--node-id \(n): expected a node id between 1 and \(max(1, config.cluster.hosts.count)) (the cluster's hosts)")
                return 2
            }
            config.cluster.nodeId = id
        }
        let name = segmentName(&opts, config)
        guard ModuleLoader.validName(name) else {
            fail("invalid segment name \"\(name)\"")
            return 2
        }
        let detach = opts.flag("--detach")
        let pidFile = opts.value("--pid-file")
        let logFile = opts.value("--log-file")
        if rejectUnknown(opts, "start") { return 2 }
        if let pid = SharedSegment.livePid(of: name) {
            fail("segment \"\(name)\" is already served by pid \(pid); stop it with `chimaera stop --segment \(name)`")
            return 1
        }
        if !detach { return serve(config: config, name: name, pidFile: pidFile, notify: nil) }

        var fds: [Int32] = [0, 0]
        guard pipeCloexec(&fds) else {
            fail("pipe: \(Sys.errnoText())")
            return 1
        }
        let pid = fork()
        if pid < 0 {
            fail("fork: \(Sys.errnoText())")
            return 1
        }
        if pid == 0 {
            close(fds[0])
            setsid()
            let devnull = open("/dev/null", O_RDWR)
            dup2(devnull, 0)
            let out = logFile.map { open($0, O_WRONLY | O_CREAT | O_APPEND, 0o644) } ?? devnull
            dup2(out >= 0 ? out : devnull, 1)
            dup2(out >= 0 ? out : devnull, 2)
            exit(serve(config: config, name: name, pidFile: pidFile, notify: fds[1]))
        }
        close(fds[1])
        // Wait for the child's verdict: "OK" once it serves, or its error text.
        var msg = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 1024)
        var pfd = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        let deadline = chi_now_ns() + 30_000_000_000
        while chi_now_ns() < deadline {
            if poll(&pfd, 1, 1000) <= 0 { continue }
            let n = buf.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, 1024) }
            if n <= 0 { break }
            msg += buf[0..<n]
        }
        close(fds[0])
        let text = String(decoding: msg, as: UTF8.self)
        if text.hasPrefix("OK") {
            print("chimaera: runtime \"\(name)\" serving (pid \(pid))")
            return 0
        }
        fail(text.isEmpty ? "the runtime exited before it was ready (see its log)" : text)
        return 1
    }

    /// Runs a runtime in this process until it is stopped.
    static func serve(config: RuntimeConfig, name: String, pidFile: String?, notify: Int32?) -> Int32 {
        func report(_ s: String) {
            if let fd = notify {
                _ = s.withCString { write(fd, $0, strlen($0)) }
                close(fd)
            }
        }
        // A daemon takes write errors as errors, from its first write on (its own segment
        // is one: `ulimit -f` applies to /dev/shm too).
        chi_ignore_write_signals()
        let rt: Runtime
        do {
            rt = try Runtime(config: config, segmentName: name)
        } catch {
            fail(error.message)
            report(error.message)
            return 1
        }
        _ = chi_install_stop_signals(rt.stopFlag)
        do {
            rt.internalClient = RuntimeClient(internalFor: rt, spinNs: UInt64(config.clientSpinUs) * 1000)
            try rt.start()
        } catch {
            // A start that fails leaves nothing behind: its segment and socket go.
            rt.shutdown()
            fail(error.message)
            report(error.message)
            return 1
        }
        if let pidFile {
            let fd = open(pidFile, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            if fd >= 0 {
                _ = "\(getpid())\n".withCString { write(fd, $0, strlen($0)) }
                close(fd)
            }
        }
        let workers = rt.workers.map { "\($0.kind.rawValue)\($0.cpu >= 0 ? "@cpu\($0.cpu)" : "")" }
        print("chimaera: runtime \"\(name)\" ready: pid \(getpid()), segment \(SharedSegment.filePath(name)), workers \(workers.joined(separator: " "))")
        fflush(nil)
        report("OK\n")
        rt.waitForStop()
        rt.shutdown()
        if let pidFile { unlink(pidFile) }
        print("chimaera: runtime \"\(name)\" stopped")
        return 0
    }

    // MARK: stop

    static func stop(_ opts: inout Options) -> Int32 {
        guard let config = loadConfig(&opts) else { return 2 }
        let name = segmentName(&opts, config)
        let timeoutMs = Int(opts.value("--timeout-ms") ?? "10000") ?? 10000
        let all = opts.flag("--all")
        if rejectUnknown(opts, "stop") { return 2 }
        if all { stopOtherNodes(name) }
        guard let pid = SharedSegment.livePid(of: name) else {
            if access(SharedSegment.filePath(name), F_OK) == 0 {
                _ = Sys.shmUnlink(SharedSegment.shmName(name))
                unlink(SharedSegment.socketPath(name))
                fail("no runtime was serving segment \"\(name)\"; removed its stale segment")
            } else {
                fail("no runtime is serving segment \"\(name)\"")
            }
            return 1
        }
        var asked = false
        if let c = try? RuntimeClient.connect(segment: name, configPath: nil, mode: UInt32(CHI_MODE_ATTACH), timeoutMs: 1000) {
            asked = (try? c.stopRuntime()) != nil
        }
        if !asked { kill(pid, SIGTERM) }
        let deadline = chi_now_ns() + UInt64(timeoutMs) * 1_000_000
        while Sys.processAlive(pid) && chi_now_ns() < deadline { usleep(5_000) }
        if Sys.processAlive(pid) {
            fail("runtime pid \(pid) did not stop within \(timeoutMs) ms; killing it")
            kill(pid, SIGKILL)
            while Sys.processAlive(pid) { usleep(5_000) }
        }
        if access(SharedSegment.filePath(name), F_OK) == 0 { _ = Sys.shmUnlink(SharedSegment.shmName(name)) }
        unlink(SharedSegment.socketPath(name))
        print("chimaera: runtime \"\(name)\" (pid \(pid)) stopped")
        return 0
    }
}

extension Tool {
    /// `stop --all`: asks every other node of the runtime's cluster to stop (through this
    /// node's runtime), before this node stops.
    static func stopOtherNodes(_ segment: String) {
        guard let c = try? RuntimeClient.connect(segment: segment, configPath: nil, mode: UInt32(CHI_MODE_ATTACH), timeoutMs: 1000),
              let stats = try? c.statsJSON() else { return }
        let flat = ChildProcess.parseFlatJSON(stats)
        let me = Int(flat["node_id"] ?? 1), nodes = Int(flat["nodes"] ?? 1)
        guard nodes > 1 else { return }
        for n in 1...nodes where n != me {
            do {
                try c.stopRuntime(node: UInt32(n))
                print("chimaera: node \(n) stopping")
            } catch {
                fail("node \(n): \(error.message)")
            }
        }
    }
}

/// Command-line options: `--key value` and `--flag`, with a check that all were used.
struct Options {
    private var args: [String]
    private var used = Set<Int>()

    init(_ args: [String]) { self.args = args }

    mutating func value(_ key: String) -> String? {
        guard let i = args.firstIndex(of: key), i + 1 < args.count else { return nil }
        used.insert(i)
        used.insert(i + 1)
        return args[i + 1]
    }

    mutating func flag(_ key: String) -> Bool {
        guard let i = args.firstIndex(of: key) else { return false }
        used.insert(i)
        return true
    }

    /// The first positional argument not yet used.
    mutating func positional() -> String? {
        for (i, a) in args.enumerated() where !used.contains(i) && !a.hasPrefix("--") {
            used.insert(i)
            return a
        }
        return nil
    }

    func unused() -> String? {
        for (i, a) in args.enumerated() where !used.contains(i) { return a }
        return nil
    }
}
