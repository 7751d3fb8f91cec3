import CChimaera
import Glibc

/// A connection to a Chimaera runtime, from Swift.
///
/// ```swift
/// let client = try Client(segment: "demo")
/// let pool = try client.createPool(module: "small_message", name: "ipc_test")
/// let md = SmallMessageClient(pool)
/// let one = try md.md(depth: 0, .directHash(7))          // blocks this thread
/// let two = try await md.mdAsync(depth: 0, .directHash(8)) // suspends this task instead
/// ```
/// A client is thread-safe. `close()` (or deinit) detaches; an embedded runtime stops with it.
public final class Client: @unchecked Sendable {
    public enum Mode: UInt32, Sendable {
        /// `CHIMAERA_EMBEDDED=1` or the config's `client.mode`, else attach.
        case auto = 0
        /// Attach to a running daemon.
        case attach = 1
        /// Run the runtime inside this process.
        case embedded = 2
    }

    let core: RuntimeClient
    let watcher = CompletionWatcher()
    private var closed = false

    /// Attaches to (or embeds) a runtime. With no runtime serving the segment this throws
    /// `ChimaeraError.noRuntime` within the connect timeout (default 500 ms).
    public init(segment: String? = nil, config: String? = nil, mode: Mode = .auto,
                connectTimeoutMs: UInt32 = 0) throws(ChimaeraError)
    {
        core = try api { () throws(ChiError) in
            try RuntimeClient.connect(segment: segment, configPath: config, mode: mode.rawValue,
                                      timeoutMs: connectTimeoutMs)
        }
    }

    deinit { close() }

    /// Detaches; stops an embedded runtime. Idempotent.
    public func close() {
        if closed { return }
        closed = true
        watcher.stop()
        core.close()
    }

    /// The name of the runtime's shared-memory segment.
    public var segment: String { core.segment.name }

    /// Loads module `name` (lib<name>.so) in the runtime.
    public func registerModule(_ name: String) throws(ChimaeraError) {
        try api { () throws(ChiError) in try core.registerModule(name) }
    }

    /// Creates (or finds, by name) a pool of `module`.
    /// Hot upgrade of module `name` to the build at `path` (nil: lib<name>.so found again on
    /// the search path), in every container of its pools on every node, while tasks keep
    /// coming (chi_module_upgrade). Returns the runtime's JSON report.
    @discardableResult
    public func upgradeModule(_ name: String, path: String? = nil, force: Bool = false,
                              recreate: Bool = false) throws(ChimaeraError) -> String {
        let flags = (force ? UInt32(CHI_UPGRADE_FORCE) : 0) | (recreate ? UInt32(CHI_UPGRADE_RECREATE) : 0)
        return try api { () throws(ChiError) in try core.upgradeModule(name, path: path, flags: flags) }
    }

    public func createPool(module: String, name: String, containersPerNode: UInt32 = 1,
                           params: [UInt8] = [], replicas: UInt32 = 1) throws(ChimaeraError) -> Pool
    {
        let id = try api { () throws(ChiError) -> UInt64 in
            let r: Result<UInt64, ChiError> = params.withUnsafeBytes { b in
                Result { () throws(ChiError) -> UInt64 in
                    try core.createPool(module: module, name: name, containersPerNode: containersPerNode,
                                        params: params.isEmpty ? nil : b, replicas: replicas)
                }
            }
            return try r.get()
        }
        return Pool(client: self, id: id, name: name, module: module)
    }

    /// The pool named `name`.
    public func pool(named name: String, module: String) throws(ChimaeraError) -> Pool {
        let id = try api { () throws(ChiError) in try core.poolId(named: name) }
        return Pool(client: self, id: id, name: name, module: module)
    }

    /// Waits until every task queued before this call has run.
    public func flush() throws(ChimaeraError) { try api { () throws(ChiError) in try core.flush() } }

    /// Asks the runtime to stop.
    public func stopRuntime() throws(ChimaeraError) { try api { () throws(ChiError) in try core.stopRuntime() } }

    /// The runtime's statistics as JSON text.
    public func statsJSON() throws(ChimaeraError) -> String {
        try api { () throws(ChiError) in try core.statsJSON() }
    }

    /// A buffer of `size` bytes in shared memory, for bulk parameters.
    public func buffer(size: Int) throws(ChimaeraError) -> SharedBuffer {
        let p = try api { () throws(ChiError) in try core.allocBuffer(size) }
        return SharedBuffer(client: self, base: p, count: size)
    }

    /// A new task of layout `Layout` (a C task struct starting with `chi_task_t`).
    public func newTask<Layout>(_ layout: Layout.Type, pool: Pool, method: UInt32,
                                _ query: DomainQuery) throws(ChimaeraError) -> TaskHandle<Layout>
    {
        precondition(MemoryLayout<Layout>.size >= MemoryLayout<chi_task_t>.size,
                     "a task layout starts with chi_task_t")
        let t = try api { () throws(ChiError) in
            try core.newTask(pool: pool.id, method: method, size: MemoryLayout<Layout>.size, query: query.raw)
        }
        return TaskHandle(client: self, task: t)
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
        try api { () throws(ChiError) in try client.core.destroyPool(id) }
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

    deinit { try? client.core.freeBuffer(bytes.baseAddress!) }

    /// The process-independent pointer to put in a task's bulk field.
    public var shm: chi_shm_ptr_t {
        chi_shm_ptr_t(segment: 0, reserved: 0, offset: client.core.segment.offset(of: bytes.baseAddress!)!)
    }
}
