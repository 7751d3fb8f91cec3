import ArgumentParser
import CChimaeraABI
import Glibc

/// `chimaera cluster start|stop|status --hostfile FILE`: one runtime per host of the
/// hostfile, node ids by line. Hosts that are this machine run here directly (several of
/// them get segments `<name>_n<id>`); the others through `ssh HOST <this program> ...` in
/// parallel, which assumes the same install path and a shared or copied config and hostfile
/// (as on a cluster with a shared file system).
struct Cluster: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "One runtime per host of the hostfile (local hosts here, others through ssh).")

    @Argument(help: "start, stop, status, or keygen DIR") var sub: String

    @Argument(help: "keygen: the directory for the CA and the certificates") var dir: String?

    @OptionGroup var runtime: RuntimeOptions

    @Option(help: "The cluster's hosts, one a line.") var hostfile: String?

    @Option(help: "keygen: the hosts to make certificates for (a hostfile).") var hosts: String?

    @Option(help: "Where start writes each node's log and pid file.") var logDir = "/tmp"

    @Flag(help: "status: print each node's statistics as JSON.") var json = false

    struct Node {
        var id: Int
        var host: String
        var port: Int
        var local: Bool
        var segment: String
    }

    func run() throws { try Tool.finish(main()) }

    private func main() -> Int32 {
        if sub == "keygen" { return keygen() }
        guard ["start", "stop", "status"].contains(sub) else {
            Tool.fail("cluster: expected start, stop, status or keygen, not \"\(sub)\"")
            return 2
        }
        guard let hostfile else {
            Tool.fail("cluster \(sub): missing --hostfile")
            return 2
        }
        if sub == "start" {
            var st = stat()
            guard stat(logDir, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
                Tool.fail("cluster start --log-dir \(logDir): no such directory")
                return 2
            }
        }
        let configPath = runtime.config
        let r: Resolved
        do throws(ToolError) {
            r = try Resolved(segment: runtime.segment, config: configPath, hostfile: hostfile)
        } catch {
            Tool.fail(error.message)
            return 2
        }
        let hosts = r.json.objects("hosts")
        guard !hosts.isEmpty else {
            Tool.fail("hostfile \(hostfile) lists no hosts")
            return 2
        }
        let base = r.segment
        let json = sub == "status" && self.json
        var nodes: [Node] = []
        for (i, h) in hosts.enumerated() {
            nodes.append(Node(id: i + 1, host: h.string("host"), port: h.int("port"), local: h.int("local") != 0, segment: base))
        }
        if nodes.filter(\.local).count > 1 {
            for i in nodes.indices where nodes[i].local { nodes[i].segment = "\(base)_n\(nodes[i].id)" }
        }
        let exe = ChildProcess.selfExe
        var jobs: [(Node, String, [String])] = []
        for n in nodes {
            var args: [String]
            switch sub {
            case "start":
                args = ["start", "--hostfile", absolute(hostfile), "--node-id", "\(n.id)", "--segment", n.segment,
                        "--detach", "--log-file", "\(logDir)/chimaera_\(n.segment).log",
                        "--pid-file", "\(logDir)/chimaera_\(n.segment).pid"]
                if let configPath { args += ["--config", absolute(configPath)] }
            case "stop":
                args = ["stop", "--segment", n.segment]
            default:
                args = ["status", "--segment", n.segment] + (json ? ["--json"] : [])
            }
            if n.local {
                jobs.append((n, exe, args))
            } else {
                let ssh = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", n.host, exe] + args
                jobs.append((n, findInPath("ssh") ?? "/usr/bin/ssh", ssh))
            }
        }
        // The text status also shows each node's membership view, read from its JSON.
        let views = sub == "status" && !json
        let all = jobs.map { ($0.1, $0.2) } + (views ? jobs.map { ($0.1, $0.2 + ["--json"]) } : [])
        let results = runAll(all, timeoutMs: 60_000)
        var failed = 0
        for (i, ((n, _, _), r)) in zip(jobs, results).enumerated() {
            let where_ = n.local ? "local" : "ssh"
            let text = r.output.split(separator: "\n").map { "    \($0)" }.joined(separator: "\n")
            print("node \(n.id) \(n.host):\(n.port) [\(where_), segment \(n.segment)]: \(r.status == 0 ? "ok" : "exit \(r.status)")")
            if !text.isEmpty && (sub == "status" || r.status != 0) { print(text) }
            if views && results[jobs.count + i].status == 0 {
                for line in Self.membershipLines(StatsView(results[jobs.count + i].output)) { print("    \(line)") }
            }
            if r.status != 0 { failed += 1 }
        }
        return failed == 0 ? 0 : 1
    }

    /// A node's membership view as text: its version, then each node's state, since when
    /// (local time of the node that holds the view) and incarnation.
    static func membershipLines(_ stats: StatsView) -> [String] {
        guard let m = stats.object("remote")?.object("membership") else { return [] }
        var out = ["membership view version \(m.int("version")):"]
        for n in m.objects("nodes") {
            let sinceMs = n.int("since_ms")
            var t = time_t(sinceMs / 1000)
            var tmv = tm()
            localtime_r(&t, &tmv)
            func pad(_ v: Int, _ w: Int) -> String { String(repeating: "0", count: max(0, w - String(v).count)) + String(v) }
            let clock = "\(pad(Int(tmv.tm_hour), 2)):\(pad(Int(tmv.tm_min), 2)):\(pad(Int(tmv.tm_sec), 2)).\(pad(sinceMs % 1000, 3))"
            let ago = String(format2: "%.1f", Double(n.int("for_ms")) / 1000)
            out.append("  node \(n.int("node")) \(n.string("state")) since \(clock) (\(ago) s ago, incarnation \(n.int("incarnation")))")
        }
        return out
    }

    /// `cluster keygen DIR --hosts FILE`: a cluster CA and a certificate per host of FILE.
    private func keygen() -> Int32 {
        guard let dir, let file = hosts ?? hostfile else {
            Tool.fail("cluster keygen: expected DIR --hosts FILE")
            return 2
        }
        do throws(ToolError) {
            print(try textOut { chi_cluster_keygen(dir, file, $0, $1) })
            return 0
        } catch {
            Tool.fail(error.message)
            return 1
        }
    }

    private func absolute(_ p: String) -> String {
        if p.hasPrefix("/") { return p }
        guard let cwd = getcwd(nil, 0) else { return p }
        defer { free(cwd) }
        return String(cString: cwd) + "/" + p
    }

    private func findInPath(_ name: String) -> String? {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") where access("\(dir)/\(name)", X_OK) == 0 {
            return "\(dir)/\(name)"
        }
        return nil
    }

    /// Runs every command at once; returns each one's status and output, in order.
    private func runAll(_ cmds: [(String, [String])], timeoutMs: Int) -> [ChildProcess.Result] {
        var pids: [pid_t] = []
        var files: [String] = []
        for (i, (path, args)) in cmds.enumerated() {
            let out = "/tmp/chimaera_cluster_\(getpid())_\(i).out"
            files.append(out)
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            let argv = ([path] + args).map { strdup($0) } + [nil]
            var pid: pid_t = 0
            let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
            for a in argv { free(a) }
            posix_spawn_file_actions_destroy(&actions)
            pids.append(rc == 0 ? pid : -1)
        }
        let deadline = nowNs() + UInt64(timeoutMs) * 1_000_000
        var results: [ChildProcess.Result] = []
        for (i, pid) in pids.enumerated() {
            var status: Int32 = 0
            var code: Int32 = -1
            if pid > 0 {
                while true {
                    let r = waitpid(pid, &status, WNOHANG)
                    if r == pid {
                        code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
                        break
                    }
                    if r < 0 && errno != EINTR { break }
                    if nowNs() > deadline {
                        kill(pid, SIGKILL)
                        _ = waitpid(pid, &status, 0)
                        code = 124
                        break
                    }
                    usleep(10_000)
                }
            }
            var text = pid > 0 ? "" : "cannot run \(cmds[i].0)"
            let fd = open(files[i], O_RDONLY)
            if fd >= 0 {
                var buf = [UInt8](repeating: 0, count: 4096)
                var bytes: [UInt8] = []
                while true {
                    let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
                    if n <= 0 { break }
                    bytes += buf[0..<n]
                }
                close(fd)
                text += String(decoding: bytes, as: UTF8.self)
            }
            unlink(files[i])
            results.append(ChildProcess.Result(status: code, output: Substring(text).trimmingCharacters(in: " \n")))
        }
        return results
    }
}
