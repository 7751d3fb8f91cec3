import CChimaera
import Glibc

/// Calls on the admin pool: modules, pools, flush, stop and statistics.
extension RuntimeClient {
    /// How long admin calls wait before giving up.
    static let adminTimeoutNs: Int64 = 60_000_000_000

    private func adminCall<T>(_ method: UInt32, _ type: T.Type, node: UInt32? = nil,
                              _ fill: (UnsafeMutablePointer<T>) throws(ChiError) -> Void,
                              _ read: (UnsafeMutablePointer<T>) -> Void = { _ in })
        throws(ChiError)
    {
        // This node's admin container: in a cluster, admin container i is on node i + 1.
        let q = node.map { chi_dq_direct_id(UInt32(CHI_SUBDOMAIN_GLOBAL_CONTAINERS), UInt64($0 - 1)) }
            ?? chi_dq_local_id(UInt32(CHI_SUBDOMAIN_LOCAL_CONTAINERS), 0)
        let t = try newTask(pool: UInt64(CHI_ADMIN_POOL_ID), method: method,
                            size: MemoryLayout<T>.size, query: q)
        let typed = UnsafeMutableRawPointer(t).assumingMemoryBound(to: T.self)
        do throws(ChiError) {
            try fill(typed)
            let rc = try call(t, timeoutNs: Self.adminTimeoutNs)
            if rc < 0 {
                let why = takeErrorMessage(t) ?? ChiError.describe(rc)
                throw ChiError(-rc, "admin \(Self.adminMethodName(method)) failed: \(why)")
            }
            read(typed)
            try? deleteTask(t)
        } catch {
            try? deleteTask(t)
            throw error
        }
    }

    static func adminMethodName(_ m: UInt32) -> String {
        switch m {
        case UInt32(CHI_ADMIN_REGISTER_MODULE): return "RegisterModule"
        case UInt32(CHI_ADMIN_CREATE_POOL): return "CreatePool"
        case UInt32(CHI_ADMIN_GET_POOL_ID): return "GetPoolId"
        case UInt32(CHI_ADMIN_DESTROY_POOL): return "DestroyPool"
        case UInt32(CHI_ADMIN_FLUSH): return "Flush"
        case UInt32(CHI_ADMIN_STOP_RUNTIME): return "StopRuntime"
        case UInt32(CHI_ADMIN_POLL_STATS): return "PollStats"
        case UInt32(CHI_ADMIN_SET_WORCH): return "SetWorkOrchestrator"
        case UInt32(CHI_ADMIN_GET_POOL_INFO): return "GetPoolInfo"
        case UInt32(CHI_ADMIN_UPGRADE_MODULE): return "UpgradeModule"
        case UInt32(CHI_ADMIN_MIGRATE_CONTAINER): return "MigrateContainer"
        default: return "#\(m)"
        }
    }

    /// Copies a name into a fixed char array, failing if it does not fit.
    static func copyName<T>(_ s: String, into field: inout T, what: String) throws(ChiError) {
        let bytes = Array(s.utf8)
        guard !bytes.isEmpty, bytes.count < Int(CHI_NAME_MAX) else {
            throw ChiError(EINVAL, "\(what) \"\(s)\" must be 1 to \(CHI_NAME_MAX - 1) bytes")
        }
        withUnsafeMutableBytes(of: &field) { buf in
            buf.copyBytes(from: bytes)
            buf[bytes.count] = 0
        }
    }

    package func registerModule(_ name: String) throws(ChiError) {
        try adminCall(UInt32(CHI_ADMIN_REGISTER_MODULE), chi_admin_register_module_task_t.self) {
            (t) throws(ChiError) in try Self.copyName(name, into: &t.pointee.name, what: "module name")
        }
    }

    /// MigrateContainer (see chi_container_migrate): returns the pause and the state's size.
    package func migrateContainer(pool: UInt64, container: UInt32, to: UInt32) throws(ChiError)
        -> (pauseNs: UInt64, stateBytes: UInt64)
    {
        var out: (UInt64, UInt64) = (0, 0)
        try adminCall(UInt32(CHI_ADMIN_MIGRATE_CONTAINER), chi_admin_migrate_container_task_t.self) { (t) throws(ChiError) in
            t.pointee.pool_id = pool
            t.pointee.container = container
            t.pointee.to_node = to
            t.pointee.phase = 0
        } _: { t in out = (t.pointee.pause_ns, t.pointee.state_bytes) }
        return out
    }

    /// UpgradeModule (see chi_module_upgrade): returns the runtime's JSON report.
    package func upgradeModule(_ name: String, path: String?, flags: UInt32) throws(ChiError) -> String {
        var report = ""
        let p = Array((path ?? "").utf8)
        guard p.count < Int(CHI_PATH_MAX) else {
            throw ChiError(ENAMETOOLONG, "module path \"\(path ?? "")\" is longer than \(CHI_PATH_MAX - 1) bytes")
        }
        try adminCall(UInt32(CHI_ADMIN_UPGRADE_MODULE), chi_admin_upgrade_module_task_t.self) { (t) throws(ChiError) in
            try Self.copyName(name, into: &t.pointee.name, what: "module name")
            withUnsafeMutableBytes(of: &t.pointee.path) { buf in
                buf.copyBytes(from: p)
                buf[p.count] = 0
            }
            t.pointee.flags = flags
            t.pointee.phase = 0
        } _: { t in
            report = withUnsafeBytes(of: &t.pointee.report) { b in
                String(decoding: b.prefix { $0 != 0 }, as: UTF8.self)
            }
        }
        return report
    }

    /// `replicas` travels in the high 16 bits of the task's containers_per_node (the runtime
    /// splits them; 0 or 1: unreplicated).
    package func createPool(module: String, name: String, containersPerNode: UInt32,
                            params: UnsafeRawBufferPointer?, replicas: UInt32 = 1) throws(ChiError) -> UInt64
    {
        guard containersPerNode <= 0xFFFF, replicas <= 0xFFFF else {
            throw ChiError(EINVAL, "containers per node (\(containersPerNode)) and replicas (\(replicas)) must each be below 65536")
        }
        var paramsBuf: UnsafeMutableRawPointer?
        defer { if let p = paramsBuf { try? freeBuffer(p) } }
        var poolId: UInt64 = 0
        try adminCall(UInt32(CHI_ADMIN_CREATE_POOL), chi_admin_create_pool_task_t.self, { (t) throws(ChiError) in
            try Self.copyName(module, into: &t.pointee.module, what: "module name")
            try Self.copyName(name, into: &t.pointee.name, what: "pool name")
            t.pointee.containers_per_node = containersPerNode | (max(1, replicas) << 16)
            if let params, params.count > 0 {
                let p = try allocBuffer(params.count)
                p.copyMemory(from: params.baseAddress!, byteCount: params.count)
                paramsBuf = p
                t.pointee.params_size = UInt32(params.count)
                t.pointee.params = chi_shm_ptr_t(segment: 0, reserved: 0, offset: segment.offset(of: p)!)
            }
        }, { t in poolId = t.pointee.pool_id })
        return poolId
    }

    package func poolId(named name: String) throws(ChiError) -> UInt64 {
        var id: UInt64 = 0
        try adminCall(UInt32(CHI_ADMIN_GET_POOL_ID), chi_admin_get_pool_id_task_t.self, { (t) throws(ChiError) in
            try Self.copyName(name, into: &t.pointee.name, what: "pool name")
        }, { t in id = t.pointee.pool_id })
        return id
    }

    /// Switches the work-orchestration policy.
    package func setWorkOrchestrator(_ name: String) throws(ChiError) {
        try adminCall(UInt32(CHI_ADMIN_SET_WORCH), chi_admin_set_worch_task_t.self) { (t) throws(ChiError) in
            try Self.copyName(name, into: &t.pointee.name, what: "policy module name")
        }
    }

    /// A pool's info by id, or when it is 0 by name.
    package func poolInfo(id: UInt64, name: String?) throws(ChiError) -> chi_pool_info_t {
        var info = chi_pool_info_t()
        info.size = UInt32(MemoryLayout<chi_pool_info_t>.size)
        try adminCall(UInt32(CHI_ADMIN_GET_POOL_INFO), chi_admin_get_pool_info_task_t.self, { (t) throws(ChiError) in
            t.pointee.pool_id = id
            if id == 0 { try Self.copyName(name ?? "", into: &t.pointee.name, what: "pool name") }
        }, { t in
            info.id = t.pointee.pool_id
            info.containers = t.pointee.containers
            info.containers_per_node = t.pointee.containers_per_node
            info.nodes = t.pointee.nodes
            withUnsafeMutableBytes(of: &info.name) { d in withUnsafeBytes(of: t.pointee.name) { d.copyMemory(from: $0) } }
            withUnsafeMutableBytes(of: &info.module) { d in withUnsafeBytes(of: t.pointee.module) { d.copyMemory(from: $0) } }
        })
        return info
    }

    package func destroyPool(_ id: UInt64) throws(ChiError) {
        try adminCall(UInt32(CHI_ADMIN_DESTROY_POOL), chi_admin_destroy_pool_task_t.self) { t in
            t.pointee.pool_id = id
        }
    }

    package func flush() throws(ChiError) {
        try adminCall(UInt32(CHI_ADMIN_FLUSH), chi_admin_flush_task_t.self) { _ in }
    }

    package func stopRuntime() throws(ChiError) {
        try adminCall(UInt32(CHI_ADMIN_STOP_RUNTIME), chi_admin_stop_runtime_task_t.self) { _ in }
    }

    /// Stops the runtime of another node of the cluster (through this node's runtime).
    package func stopRuntime(node: UInt32) throws(ChiError) {
        try adminCall(UInt32(CHI_ADMIN_STOP_RUNTIME), chi_admin_stop_runtime_task_t.self, node: node) { _ in }
    }

    /// The runtime's statistics as JSON.
    package func statsJSON(capacity: Int = 1 << 20) throws(ChiError) -> String {
        let buf = try allocBuffer(capacity)
        defer { try? freeBuffer(buf) }
        var len: UInt64 = 0
        try adminCall(UInt32(CHI_ADMIN_POLL_STATS), chi_admin_poll_stats_task_t.self, { t in
            t.pointee.buf = chi_shm_ptr_t(segment: 0, reserved: 0, offset: segment.offset(of: buf)!)
            t.pointee.cap = UInt64(capacity)
        }, { t in len = t.pointee.len })
        let n = Int(min(len, UInt64(capacity)))
        return String(decoding: UnsafeRawBufferPointer(start: buf, count: n), as: UTF8.self)
    }
}
