import CChimaera
import Glibc
import Testing

@testable import Chimaera

/// A real etcd cluster of `count` members on loopback for one test: fresh ports and data
/// directories under a temporary directory, every member stopped by its pid in `stop()`
/// (call it from a `defer`, so a failing test stops it too). Unchecked Sendable: only the
/// test's own thread starts and kills members; other threads read the endpoints.
final class EtcdTestCluster: @unchecked Sendable {
    /// The etcd binary ($CHI_ETCD, else /usr/bin/etcd or /usr/local/bin/etcd); nil when none
    /// is installed, and the tests that need one are skipped.
    static let binary: String? = {
        var candidates = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        if let e = getenv("CHI_ETCD") { candidates.insert(String(cString: e), at: 0) }
        return candidates.first { access($0, X_OK) == 0 }
    }()

    static let skipReason: Comment = "etcd is not installed (make deps installs Debian's etcd-server)"

    let dir: String
    private(set) var pids: [pid_t?]
    let clientPorts: [Int]
    let peerPorts: [Int]

    var endpoints: [EtcdEndpoint] { clientPorts.map { EtcdEndpoint(host: "127.0.0.1", port: $0) } }

    /// Starts the members and waits (at most `readyMs`) until each one answers a read.
    init(count: Int = 3, readyMs: Int = 30_000) throws {
        guard let binary = Self.binary else { throw Failure("no etcd binary") }
        var template = Array("/tmp/chi-etcd-XXXXXX".utf8CString)
        guard let d = mkdtemp(&template) else { throw Failure("mkdtemp: \(Sys.errnoText())") }
        dir = String(cString: d)
        let ports = try Self.freePorts(2 * count)
        clientPorts = Array(ports[0..<count])
        peerPorts = Array(ports[count...])
        pids = Array(repeating: nil, count: count)
        let initial = (0..<count).map { "m\($0)=http://127.0.0.1:\(peerPorts[$0])" }.joined(separator: ",")
        for i in 0..<count {
            let c = "http://127.0.0.1:\(clientPorts[i])"
            let p = "http://127.0.0.1:\(peerPorts[i])"
            let args = ["--name", "m\(i)", "--data-dir", "\(dir)/m\(i).etcd",
                        "--listen-client-urls", c, "--advertise-client-urls", c,
                        "--listen-peer-urls", p, "--initial-advertise-peer-urls", p,
                        "--initial-cluster", initial, "--initial-cluster-token", "chi-test-\(getpid())-\(ports[0])",
                        "--initial-cluster-state", "new",
                        // Short heartbeats and elections: failover within a second on loopback.
                        "--heartbeat-interval", "50", "--election-timeout", "500"]
            do {
                pids[i] = try Self.spawn(binary, args, log: "\(dir)/m\(i).log")
            } catch {
                stop()
                throw error
            }
        }
        do {
            try waitReady(readyMs)
        } catch {
            stop()
            throw error
        }
    }

    deinit { stop() }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ s: String) { description = s }
    }

    /// SIGKILLs member `i` and reaps it.
    func kill(_ i: Int) {
        guard let pid = pids[i] else { return }
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        pids[i] = nil
    }

    /// SIGSTOPs (or with `resume`, SIGCONTs) member `i`: it keeps its connections but
    /// answers nothing. stop() kills a stopped member too.
    func pause(_ i: Int, resume: Bool = false) {
        if let pid = pids[i] { Glibc.kill(pid, resume ? SIGCONT : SIGSTOP) }
    }

    /// Stops every member still running and removes the directory.
    func stop() {
        for i in pids.indices { kill(i) }
        if !dir.isEmpty { _ = ChildProcess.run("/bin/rm", ["-rf", dir], timeoutMs: 10_000) }
    }

    /// A store on every endpoint, member 0 first.
    func store(prefix: String, timeoutMs: Int = 3000) throws -> EtcdStore {
        try EtcdStore(endpoints: endpoints, prefix: prefix, timeoutMs: timeoutMs)
    }

    private func waitReady(_ ms: Int) throws {
        let deadline = chi_now_ns() + UInt64(ms) * 1_000_000
        for (i, e) in endpoints.enumerated() {
            let one = try EtcdStore(endpoints: [e], prefix: "/ready/", timeoutMs: 1000)
            while true {
                do {
                    _ = try one.pool(named: "none")
                    break
                } catch {
                    if pids[i].map({ waitpid($0, nil, WNOHANG) != 0 }) ?? true {
                        throw Failure("etcd member \(i) exited; see \(dir)/m\(i).log")
                    }
                    if chi_now_ns() > deadline { throw Failure("etcd member \(i) not ready after \(ms) ms: \(error)") }
                    usleep(100_000)
                }
            }
        }
    }

    private static func spawn(_ path: String, _ args: [String], log: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ([path] + args).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
        guard rc == 0 else { throw Failure("cannot run \(path): \(Sys.errnoText(rc))") }
        return pid
    }

    /// `n` distinct loopback ports the kernel just reported free.
    private static func freePorts(_ n: Int) throws -> [Int] {
        var fds: [CInt] = []
        defer { for fd in fds { close(fd) } }
        var out: [Int] = []
        while out.count < n {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw Failure("socket: \(Sys.errnoText())") }
            fds.append(fd)
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_addr.s_addr = inet_addr("127.0.0.1")
            a.sin_port = 0
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let ok = withUnsafeMutablePointer(to: &a) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
                }
            }
            guard ok else { throw Failure("bind: \(Sys.errnoText())") }
            out.append(Int(UInt16(bigEndian: a.sin_port)))
        }
        return out
    }
}
