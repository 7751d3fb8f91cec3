import CChimaeraABI
import Glibc

/// A connection to a Chimaera runtime, from Swift: a thin layer over libchimaera.so's C ABI
/// (`chi_client_*`), so a process holds one runtime copy, the library's, whichever mode it uses.
///
/// ```swift
/// let client = try Client(segment: "demo")
/// let pool = try client.createPool(module: "small_message", name: "ipc_test")
/// let md = SmallMessageClient(pool)
/// let one = try md.md(depth: 0, .directHash(7))          // blocks this thread
/// let two = try await md.mdAsync(depth: 0, .directHash(8)) // suspends this task instead
/// ```
/// A client is thread-safe. `close()` (or deinit) detaches; an embedded runtime stops with it.
/// `close()` must not race with other calls on the same client.
public final class Client: @unchecked Sendable {
    public enum Mode: UInt32, Sendable {
        /// `CHIMAERA_EMBEDDED=1` or the config's `client.mode`, else attach.
        case auto = 0
        /// Attach to a running daemon.
        case attach = 1
        /// Run the runtime inside this process (libchimaera.so's, found beside the library's
        /// modules in `<libdir>/chimaera`: no environment variable needed).
        case embedded = 2
    }

    /// The `chi_client_t *` handle; nil once closed.
    private(set) var handle: OpaquePointer?
    /// Parks awaited tasks that did not complete within `awaitSpinNs`.
    let parker: CompletionParker

    /// How long `await` on a task polls its completion word on the awaiting thread before it
    /// parks the Swift task (default 20 us: about the cost of one thread wake-up here, so a
    /// short task never pays for a park and a long one pays at most twice). 0 or less: park
    /// at once. Set it before the client is shared between threads: it is read unsynchronised.
    public var awaitSpinNs: Int64 = 20_000

    /// Attaches to (or embeds) a runtime. With no runtime serving the segment this throws
    /// `ChimaeraError.noRuntime` within the connect timeout (default 500 ms).
    public init(segment: String? = nil, config: String? = nil, mode: Mode = .auto,
                connectTimeoutMs: UInt32 = 0) throws(ChimaeraError)
    {
        let built = chi_swift_abi_compiled(), loaded = chi_abi_version()
        guard built >> 16 == loaded >> 16 else {
            throw ChimaeraError(code: -Int32(CHI_EABI), message: "the Swift API was built for ABI \(built >> 16).\(built & 0xFFFF) but the libchimaera.so loaded has ABI \(loaded >> 16).\(loaded & 0xFFFF)")
        }
        var o = chi_client_opts_t()
        o.size = UInt32(MemoryLayout<chi_client_opts_t>.size)
        o.mode = mode.rawValue
        o.connect_timeout_ms = connectTimeoutMs
        // Borrowed for the call only.
        let seg = segment.map { strdup($0) } ?? nil, conf = config.map { strdup($0) } ?? nil
        defer { free(seg); free(conf) }
        o.segment = UnsafePointer(seg)
        o.config_path = UnsafePointer(conf)
        var h: OpaquePointer?
        try check(chi_client_init(&o, &h))
        handle = h
        parker = CompletionParker(client: h!)
    }

    deinit { close() }

    /// Detaches; stops an embedded runtime. Tasks still parked resume with
    /// `ChimaeraError.stopped`. Idempotent.
    public func close() {
        guard let h = handle else { return }
        parker.stop()
        handle = nil
        _ = chi_client_finalize(h)
    }

    /// The live handle, or the error a closed client gives.
    @inline(__always)
    func live() throws(ChimaeraError) -> OpaquePointer {
        guard let h = handle else { throw ChimaeraError(code: -EINVAL, message: "the client is closed") }
        return h
    }

    /// The name of the runtime's shared-memory segment.
    public var segment: String {
        var buf = [CChar](repeating: 0, count: 256)
        guard let h = handle, chi_client_segment(h, &buf, buf.count) >= 0 else { return "" }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Loads module `name` (lib<name>.so) in the runtime.
    public func registerModule(_ name: String) throws(ChimaeraError) {
        try check(chi_module_register(try live(), name))
    }

    /// Hot upgrade of module `name` to the build at `path` (nil: lib<name>.so found again on
    /// the search path), in every container of its pools on every node, while tasks keep
    /// coming (chi_module_upgrade). Returns the runtime's JSON report.
    @discardableResult
    public func upgradeModule(_ name: String, path: String? = nil, force: Bool = false,
                              recreate: Bool = false) throws(ChimaeraError) -> String {
        let flags = (force ? UInt32(CHI_UPGRADE_FORCE) : 0) | (recreate ? UInt32(CHI_UPGRADE_RECREATE) : 0)
        let h = try live()
        var buf = [CChar](repeating: 0, count: 1 << 16)
        try check(chi_module_upgrade_report(h, name, path, flags, &buf, buf.count))
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Creates (or finds, by name) a pool of `module`; `params` are the module's create
    /// parameters (copied); `replicas` copies of each container on distinct nodes (ABI 1.8).
    public func createPool(module: String, name: String, containersPerNode: UInt32 = 1,
                           params: [UInt8] = [], replicas: UInt32 = 1) throws(ChimaeraError) -> Pool
    {
        let h = try live()
        var o = chi_pool_create_opts_t()
        o.size = UInt32(MemoryLayout<chi_pool_create_opts_t>.size)
        o.containers_per_node = containersPerNode
        o.replicas = replicas
        let m = strdup(module), n = strdup(name)
        defer { free(m); free(n) }
        o.module = UnsafePointer(m)
        o.name = UnsafePointer(n)
        var id: UInt64 = 0
        let rc = params.withUnsafeBytes { b in
            o.params = b.isEmpty ? nil : b.baseAddress
            o.params_size = UInt32(b.count)
            return chi_pool_create(h, &o, &id)
        }
        try check(rc)
        return Pool(client: self, id: id, name: name, module: module)
    }

    /// The pool named `name`.
    public func pool(named name: String, module: String) throws(ChimaeraError) -> Pool {
        var id: UInt64 = 0
        try check(chi_pool_get_id(try live(), name, &id))
        return Pool(client: self, id: id, name: name, module: module)
    }

    /// Waits until every task queued before this call has run.
    public func flush() throws(ChimaeraError) { try check(chi_runtime_flush(try live())) }

    /// Asks the runtime to stop.
    public func stopRuntime() throws(ChimaeraError) { try check(chi_runtime_stop(try live())) }

    /// The runtime's statistics as JSON text.
    public func statsJSON() throws(ChimaeraError) -> String {
        let h = try live()
        var cap = 1 << 16
        while true {
            var buf = [CChar](repeating: 0, count: cap)
            let rc = chi_runtime_stats(h, &buf, cap)
            if rc == -ERANGE && cap < 1 << 26 {
                cap *= 4
                continue
            }
            try check(rc)
            return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// A buffer of `size` bytes in shared memory, for bulk parameters.
    public func buffer(size: Int) throws(ChimaeraError) -> SharedBuffer {
        var p: UnsafeMutableRawPointer?
        try check(chi_buffer_alloc(try live(), size, &p))
        return SharedBuffer(client: self, base: p!, count: size)
    }

    /// A new task of layout `Layout` (a C task struct starting with `chi_task_t`).
    public func newTask<Layout>(_ layout: Layout.Type, pool: Pool, method: UInt32,
                                _ query: DomainQuery) throws(ChimaeraError) -> TaskHandle<Layout>
    {
        precondition(MemoryLayout<Layout>.size >= MemoryLayout<chi_task_t>.size,
                     "a task layout starts with chi_task_t")
        var q = query.raw
        var t: UnsafeMutablePointer<chi_task_t>?
        try check(chi_task_new(try live(), pool.id, method, MemoryLayout<Layout>.size, &q, &t))
        return TaskHandle(client: self, task: t!)
    }
}

/// A pool of containers of one module.
public struct Pool: Sendable {
    public let client: Client
    public let id: UInt64
    public let name: String
    public let module: String

    /// Destroys the pool in the runtime.
    public func destroy() throws(ChimaeraError) {
        try check(chi_pool_destroy(try client.live(), id))
    }
}

/// Shared memory visible to the runtime; `bytes` is the memory itself (no copy).
public final class SharedBuffer: @unchecked Sendable {
    public let client: Client
    public let bytes: UnsafeMutableRawBufferPointer

    init(client: Client, base: UnsafeMutableRawPointer, count: Int) {
        self.client = client
        bytes = UnsafeMutableRawBufferPointer(start: base, count: count)
    }

    deinit {
        if let h = client.handle { _ = chi_buffer_free(h, bytes.baseAddress) }
    }

    /// The process-independent pointer to put in a task's bulk field.
    public var shm: chi_shm_ptr_t {
        var p = chi_shm_ptr_t()
        if let h = client.handle { _ = chi_ptr_to_shm(h, bytes.baseAddress, &p) }
        return p
    }
}
