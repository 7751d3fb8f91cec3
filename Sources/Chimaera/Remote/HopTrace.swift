import CChimaera
import Glibc

/// Where a remote round trip's time goes: with `CHI_REMOTE_TRACE=FILE` in a runtime's
/// environment, every 256th request (by request id) records a monotonic timestamp at each
/// hop this node sees, as lines `hop mode origin dest reqId ns` appended to FILE (buffered, written
/// every 16 KiB and at shutdown). Nodes on one machine share the clock, so joining the
/// files by (mode, origin, dest, reqId) gives the breakdown. Off (one load and branch per hop)
/// without the variable.
enum HopTrace {
    static let path: String? = getenv("CHI_REMOTE_TRACE").map { String(cString: $0) }
    static let enabled = path != nil
    static let every: UInt64 = 256
    private static let lock = Mutex()
    nonisolated(unsafe) private static var buffer = ""

    @inline(__always)
    static func note(_ hop: StaticString, tls: Bool, origin: UInt32, dest: UInt32, reqId: UInt64) {
        guard enabled, reqId % every == 0 else { return }
        let now = chi_now_ns()
        record("\(hop) \(tls ? "tls" : "plain") \(origin) \(dest) \(reqId) \(now)\n")
    }

    private static func record(_ line: String) {
        let full = lock.withLock { () -> Bool in
            buffer += line
            return buffer.utf8.count >= 16 << 10
        }
        if full { flush() }
    }

    /// Appends what is buffered to the file.
    static func flush() {
        guard let path else { return }
        let out = lock.withLock { () -> String in
            defer { buffer = "" }
            return buffer
        }
        guard !out.isEmpty else { return }
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        _ = out.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }
}
