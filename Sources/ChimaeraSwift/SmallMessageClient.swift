import CChimaeraABI

/// The small_message module, typed: `Md(depth)` returns 1 (or the number of containers after
/// a broadcast); `Io` moves a shared buffer in either direction.
public struct SmallMessageClient: Sendable {
    public let pool: Pool

    public init(_ pool: Pool) { self.pool = pool }

    /// Creates (or finds) a small_message pool.
    public static func create(_ client: Client, name: String, containersPerNode: UInt32 = 1)
        throws(ChimaeraError) -> SmallMessageClient
    {
        SmallMessageClient(try client.createPool(module: CHI_SM_MODULE_NAME, name: name,
                                                 containersPerNode: containersPerNode))
    }

    private func mdTask(_ depth: UInt32, _ q: DomainQuery) throws(ChimaeraError) -> TaskHandle<chi_sm_md_task_t> {
        let t = try pool.client.newTask(chi_sm_md_task_t.self, pool: pool, method: UInt32(CHI_SM_MD), q)
        t.params.pointee.depth = depth
        return t
    }

    /// Runs Md and blocks until it returns.
    public func md(depth: UInt32 = 0, _ q: DomainQuery = .directId(0), timeoutNs: Int64 = -1)
        throws(ChimaeraError) -> Int32
    {
        let t = try mdTask(depth, q)
        try t.submit()
        try t.wait(timeoutNs: timeoutNs)
        return t.params.pointee.ret
    }

    /// Runs Md, suspending the calling Swift task (not a thread) until it returns. Runs on the
    /// caller's executor (no hop to the global pool and back), as `TaskHandle.completion` does.
    nonisolated(nonsending)
    public func mdAsync(depth: UInt32 = 0, _ q: DomainQuery = .directId(0)) async throws(ChimaeraError) -> Int32 {
        let t = try mdTask(depth, q)
        try t.submit()
        try await t.completion()
        return t.params.pointee.ret
    }

    /// Starts Md and returns its handle.
    public func startMd(depth: UInt32 = 0, _ q: DomainQuery = .directId(0)) throws(ChimaeraError)
        -> TaskHandle<chi_sm_md_task_t>
    {
        let t = try mdTask(depth, q)
        try t.submit()
        return t
    }

    /// Sends `buffer` to the runtime, which checks every byte equals `pattern`; returns the
    /// bytes checked.
    public func write(_ buffer: SharedBuffer, pattern: UInt8, _ q: DomainQuery = .directId(0)) throws(ChimaeraError) -> UInt64 {
        try io(buffer, flags: UInt32(CHI_SM_IO_WRITE), pattern: pattern, q)
    }

    /// Has the runtime fill `buffer` with `pattern`; returns the bytes filled.
    public func read(into buffer: SharedBuffer, pattern: UInt8, _ q: DomainQuery = .directId(0)) throws(ChimaeraError) -> UInt64 {
        try io(buffer, flags: UInt32(CHI_SM_IO_READ), pattern: pattern, q)
    }

    private func io(_ b: SharedBuffer, flags: UInt32, pattern: UInt8, _ q: DomainQuery) throws(ChimaeraError) -> UInt64 {
        let t = try pool.client.newTask(chi_sm_io_task_t.self, pool: pool, method: UInt32(CHI_SM_IO), q)
        t.params.pointee.data = b.shm
        t.params.pointee.size = UInt64(b.bytes.count)
        t.params.pointee.io_flags = flags
        t.params.pointee.pattern = UInt32(pattern)
        try t.submit()
        try t.wait()
        return t.params.pointee.ret
    }
}
