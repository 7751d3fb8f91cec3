import CChimaeraABI
import Glibc

// The tool's side of libchimaera.so's C ABI: thin wrappers that turn negative returns into
// errors carrying chi_last_error()'s message. Nothing here holds runtime state.

/// A failed call, with the message the tool prints.
struct ToolError: Error {
    var code: Int32
    var message: String

    init(_ code: Int32, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The error of a C call that returned `rc` < 0.
    static func last(_ rc: Int32) -> ToolError {
        let m = chi_last_error().map { String(cString: $0) } ?? ""
        return ToolError(rc, m.isEmpty ? (chi_strerror(rc).map { String(cString: $0) } ?? "error \(rc)") : m)
    }
}

/// Calls `body`; throws the library's message if it returned a negative code.
@discardableResult
func check(_ body: () -> Int32) throws(ToolError) -> Int32 {
    let rc = body()
    if rc < 0 { throw ToolError.last(rc) }
    return rc
}

/// Runs a C call that writes text into a buffer, growing it on -ERANGE.
func textOut(_ body: (UnsafeMutablePointer<CChar>, Int) -> Int32) throws(ToolError) -> String {
    var cap = 1 << 16
    while true {
        var buf = [CChar](repeating: 0, count: cap)
        let rc = buf.withUnsafeMutableBufferPointer { body($0.baseAddress!, cap) }
        if rc == -ERANGE && cap < 1 << 26 {
            cap *= 4
            continue
        }
        if rc < 0 { throw ToolError.last(rc) }
        return String(decoding: buf.prefix(Int(rc)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// What the library resolves a start's options to (chi_config_resolve), without starting.
struct Resolved {
    var json: StatsView
    var segment: String { json.string("segment") }
    var pid: pid_t { pid_t(json.int("pid")) }

    /// - Throws: the library's message (a bad config key, hostfile, node id or segment name).
    init(segment: String?, config: String?, hostfile: String? = nil, nodeId: Int = 0) throws(ToolError) {
        let text = try withServeOpts(segment: segment, config: config, hostfile: hostfile, pidFile: nil,
                                     nodeId: nodeId, notifyFd: -1) { o throws(ToolError) in
            try textOut { chi_config_resolve(o, $0, $1) }
        }
        json = StatsView(text)
    }
}

/// Calls `body` with a chi_serve_opts_t whose strings live for the call.
func withServeOpts<R>(segment: String?, config: String?, hostfile: String?, pidFile: String?, nodeId: Int,
                      notifyFd: Int32, _ body: (UnsafePointer<chi_serve_opts_t>) throws(ToolError) -> R) throws(ToolError) -> R {
    let strings = [segment, config, hostfile, pidFile].map { $0.map { strdup($0) } }
    defer { for s in strings { free(s ?? nil) } }
    var o = chi_serve_opts_t()
    o.size = UInt32(MemoryLayout<chi_serve_opts_t>.size)
    o.notify_fd = notifyFd
    o.segment = UnsafePointer(strings[0] ?? nil)
    o.config_path = UnsafePointer(strings[1] ?? nil)
    o.hostfile = UnsafePointer(strings[2] ?? nil)
    o.pid_file = UnsafePointer(strings[3] ?? nil)
    o.node_id = UInt32(nodeId)
    return try body(&o)
}

/// A client attached to a running runtime through libchimaera.so.
final class Client {
    let handle: OpaquePointer

    /// Attaches to the runtime serving `segment` (nil: the default), waiting at most `timeoutMs`.
    init(segment: String?, config: String? = nil, timeoutMs: UInt32 = 1000) throws(ToolError) {
        var o = chi_client_opts_t()
        o.size = UInt32(MemoryLayout<chi_client_opts_t>.size)
        o.mode = CHI_MODE_ATTACH
        o.connect_timeout_ms = timeoutMs
        let seg = segment.map { strdup($0) } ?? nil, conf = config.map { strdup($0) } ?? nil
        defer { free(seg); free(conf) }
        o.segment = UnsafePointer(seg)
        o.config_path = UnsafePointer(conf)
        var h: OpaquePointer?
        try check { chi_client_init(&o, &h) }
        handle = h!
    }

    deinit { _ = chi_client_finalize(handle) }

    func statsJSON() throws(ToolError) -> String { try textOut { chi_runtime_stats(handle, $0, $1) } }

    /// The pid of the runtime this client is attached to.
    func daemonPid() throws(ToolError) -> pid_t { pid_t(StatsView(try statsJSON()).int("pid")) }

    func stopRuntime() throws(ToolError) { try check { chi_runtime_stop(handle) } }

    func stopRuntime(node: UInt32) throws(ToolError) { try check { chi_runtime_stop_node(handle, node) } }

    func setWorkOrchestrator(_ name: String) throws(ToolError) { try check { chi_runtime_set_worch(handle, name) } }

    /// Hot upgrade (chi_module_upgrade_report); returns the runtime's JSON report.
    func upgradeModule(_ name: String, path: String?, flags: UInt32) throws(ToolError) -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let rc = buf.withUnsafeMutableBufferPointer { b in
            chi_module_upgrade_report(handle, name, path, flags, b.baseAddress, b.count)
        }
        if rc < 0 { throw ToolError.last(rc) }
        return String(cString: buf)
    }

    func createPool(module: String, name: String, containersPerNode: UInt32) throws(ToolError) -> UInt64 {
        var o = chi_pool_create_opts_t()
        o.size = UInt32(MemoryLayout<chi_pool_create_opts_t>.size)
        o.containers_per_node = containersPerNode
        var id: UInt64 = 0
        let m = strdup(module), n = strdup(name)
        defer { free(m); free(n) }
        o.module = UnsafePointer(m)
        o.name = UnsafePointer(n)
        try check { chi_pool_create(handle, &o, &id) }
        return id
    }

    /// One synchronous small_message Md on container 0; returns its `ret`.
    func md(pool: UInt64, timeoutNs: Int64 = 10_000_000_000) throws(ToolError) -> Int32 {
        var dq = chi_dq_direct_id(UInt32(CHI_SUBDOMAIN_GLOBAL_CONTAINERS), 0)
        var t: UnsafeMutablePointer<chi_task_t>?
        try check { chi_task_new(handle, pool, UInt32(CHI_SM_MD), MemoryLayout<chi_sm_md_task_t>.size, &dq, &t) }
        defer { _ = chi_task_del(handle, t) }
        let rc = chi_task_call(handle, t, timeoutNs)
        if rc < 0 { throw ToolError.last(rc) }
        let ret = UnsafeMutableRawPointer(t!).assumingMemoryBound(to: chi_sm_md_task_t.self).pointee.ret
        guard ret == 1 else { throw ToolError(-EIO, "Md returned rc \(rc), ret \(ret)") }
        return ret
    }
}

/// The tool's version line: its own version, the ABI it was built for and the library's.
var versionText: String {
    let abi = chi_abi_version()
    let lib = chi_version_string().map { String(cString: $0) } ?? "?"
    return "chimaera \(CHI_VERSION_STRING) (ABI \(CHI_ABI_MAJOR).\(CHI_ABI_MINOR); libchimaera.so \(lib), ABI \(abi >> 16).\(abi & 0xffff))"
}

/// Monotonic nanoseconds.
func nowNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

enum Sys {
    static func errnoText(_ e: CInt = errno) -> String { String(cString: strerror(e)) }

    /// Whether `pid` exists (and is not a zombie of ours: callers reap their own children).
    static func processAlive(_ pid: pid_t) -> Bool { pid > 0 && (kill(pid, 0) == 0 || errno == EPERM) }
}

/// Whether `name` is a valid segment or module name (as the library checks it).
func validName(_ name: String) -> Bool {
    !name.isEmpty && name.utf8.count < 64 && name.first != "." && name.utf8.allSatisfy {
        ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x5f || $0 == 0x2d || $0 == 0x2e
    }
}

/// CPU time of a process, from /proc/PID/stat.
enum ProcessStats {
    /// utime + stime of process `pid` in nanoseconds, or 0 if unreadable.
    static func cpuTimeNs(pid: pid_t) -> UInt64 {
        let fd = open("/proc/\(pid)/stat", O_RDONLY)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 1024)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 1023) }
        guard n > 0 else { return 0 }
        let text = String(decoding: buf[0..<n], as: UTF8.self)
        // Fields after the command name (which may hold spaces) start after the last ')'.
        guard let close = text.lastIndex(of: ")") else { return 0 }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let ut = UInt64(fields[11]), let st = UInt64(fields[12]) else { return 0 }
        let hz = UInt64(sysconf(Int32(_SC_CLK_TCK)))
        return (ut + st) * 1_000_000_000 / max(hz, 1)
    }
}
