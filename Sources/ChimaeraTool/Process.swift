import CChimaeraABI
import Glibc

/// Running helper programs (the bench's C baselines and clients) and reading their output.
enum ChildProcess {
    struct Result {
        var status: Int32
        var output: String
    }

    /// Runs `path args` with stdout captured; kills it after `timeoutMs`.
    static func run(_ path: String, _ args: [String], timeoutMs: Int = 120_000, cpu: Int32? = nil) -> Result {
        var fds: [Int32] = [0, 0]
        guard pipeCloexec(&fds) else { return Result(status: -1, output: "") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        defer { posix_spawn_file_actions_destroy(&actions) }
        let argv = ([path] + args).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        let pinnedArgv = (["/usr/bin/taskset", "-c", "\(cpu ?? 0)", path] + args).map { strdup($0) } + [nil]
        defer { for a in pinnedArgv { free(a) } }
        var pid: pid_t = 0
        // A child on one CPU: through taskset, which sets the mask and execs it (same pid).
        let rc = cpu != nil && access("/usr/bin/taskset", X_OK) == 0
            ? posix_spawn(&pid, "/usr/bin/taskset", &actions, nil, pinnedArgv, environ)
            : posix_spawn(&pid, path, &actions, nil, argv, environ)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            return Result(status: -1, output: "cannot run \(path): \(Sys.errnoText(rc))")
        }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        let deadline = nowNs() + UInt64(timeoutMs) * 1_000_000
        var pfd = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        while true {
            let now = nowNs()
            if now >= deadline {
                kill(pid, SIGKILL)
                break
            }
            let r = poll(&pfd, 1, Int32(min(1000, (deadline - now) / 1_000_000 + 1)))
            if r < 0 && errno == EINTR { continue }
            if r <= 0 { continue }
            let n = buf.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, 4096) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        close(fds[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return Result(status: code, output: String(decoding: out, as: UTF8.self))
    }

    /// The numbers of a flat JSON object (`{"k": 1.5, ...}`); other values are skipped.
    static func parseFlatJSON(_ text: String) -> [String: Double] {
        var result: [String: Double] = [:]
        guard let open = text.firstIndex(of: "{"), let close = text.lastIndex(of: "}") else { return result }
        let body = text[text.index(after: open)..<close]
        for part in body.split(separator: ",") {
            let kv = part.split(separator: ":", maxSplits: 1)
            guard kv.count == 2 else { continue }
            let k = kv[0].trimmingCharacters(in: " \"\n\t")
            if let v = Double(kv[1].trimmingCharacters(in: " \n\t")) { result[k] = v }
        }
        return result
    }

    /// This executable's path.
    static var selfExe: String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, 4095)
        return n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "chimaera"
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        var s = self[...]
        while let f = s.first, chars.contains(f) { s = s.dropFirst() }
        while let l = s.last, chars.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

/// A pipe whose ends are closed on exec, so helpers and daemons do not inherit them.
func pipeCloexec(_ fds: inout [Int32]) -> Bool {
    guard pipe(&fds) == 0 else { return false }
    _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
    _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
    return true
}
