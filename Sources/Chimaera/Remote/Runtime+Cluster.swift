import CChimaera
import Glibc

/// The admin services when the runtime is one node of several: pool creation, destruction
/// and module registration reach every node, whichever node a client asked.
///
/// Pool ids come from one authority. Embedded (the default): the leader, the lowest-numbered
/// node the membership view does not hold dead; another node forwards a CreatePool to it and
/// waits (asking the next leader if it is down), and the leader creates the pool on every
/// live node with that id before answering. With etcd (`metadata`): the store's
/// create-if-absent gives the id, then the creator makes the pool on every live node. A node
/// that is down meanwhile gets its pools from a peer's catalog (or the store) when it comes
/// back; destroyed pools are tombstones there, never recreated. Requests that came from
/// another node, and the copies of a broadcast, act on this node only: they are already one
/// of the N.
extension Runtime {
    /// Whether the task behind `r` is already one node's share of a cluster-wide request.
    func actsLocally(_ r: TaskRecord) -> Bool { r.remote != nil || r.parent != nil }

    /// CreatePool. `requestedId` is honoured only from another node (clients cannot pick ids).
    func createPoolService(module: String, name: String, perNode: Int, params: UnsafeRawBufferPointer?,
                           requestedId: UInt64, record r: TaskRecord) throws(ChiError) -> UInt64
    {
        guard cluster.isMultiNode else {
            return try createPool(module: module, name: name, containersPerNode: perNode, params: params)
        }
        if r.remote != nil && requestedId != 0 {
            if let existing = findPool(name) {
                guard existing == requestedId else {
                    throw ChiError(EEXIST, "\(cluster.describe(nodeId)) has pool \"\(name)\" as id \(existing), not \(requestedId)")
                }
                return existing
            }
            return try createPool(module: module, name: name, containersPerNode: perNode, params: params, id: requestedId)
        }
        if let md = metadata {
            let spec = PoolSpec(name: name, module: module, containersPerNode: perNode,
                                params: params.map { Array($0) } ?? [])
            let rec = try storeCreatePool(md, spec)
            guard rec.spec.module == module else {
                throw ChiError(EEXIST, "pool \"\(name)\" exists with module \(rec.spec.module), not \(module)")
            }
            // The first creator's shape and parameters, whoever asked.
            let got = rec.spec.params.withUnsafeBytes { p -> Result<UInt64, ChiError> in
                do throws(ChiError) {
                    return .success(try replicateCreate(module: module, name: name, perNode: rec.spec.containersPerNode,
                                                        params: rec.spec.params.isEmpty ? nil : p, id: rec.id))
                } catch {
                    return .failure(error)
                }
            }
            return try got.get()
        }
        // A leader that is down (or dying) fails the forward with CHI_ENODE: ask again once
        // the view has moved on to the next one.
        let deadline = chi_now_ns() + 30_000_000_000
        while true {
            let leader = remote?.metadataLeader() ?? ClusterMap.leader
            if leader == nodeId {
                return try replicateCreate(module: module, name: name, perNode: perNode, params: params, id: nil)
            }
            var id: UInt64 = 0
            let results = adminOnNodes([leader], method: UInt32(CHI_ADMIN_CREATE_POOL),
                                       type: chi_admin_create_pool_task_t.self, bulk: params) { t, bulk in
                Self.fillCreate(t, module: module, name: name, perNode: perNode, bulk: bulk, id: 0)
            } read: { t in id = t.pointee.pool_id }
            if let x = results.first, x.rc == -CInt(CHI_ENODE) || x.rc == -ETIMEDOUT, chi_now_ns() < deadline {
                Log.info("CreatePool \"\(name)\": leader \(cluster.describe(leader)) did not answer (\(x.message ?? "")); asking again")
                let until = chi_now_ns() + 100_000_000
                while chi_now_ns() < until { yieldCurrent() }
                continue
            }
            try Self.check(results, what: "CreatePool \"\(name)\"", tolerate: [])
            return id
        }
    }

    /// Creates the pool here (with `id`, or the next id when nil: the leader's log), then on
    /// every other node, before answering. A node that is down gets it from the catalog when
    /// it returns.
    private func replicateCreate(module: String, name: String, perNode: Int, params: UnsafeRawBufferPointer?,
                                 id fixed: UInt64?) throws(ChiError) -> UInt64
    {
        let id = try createPool(module: module, name: name, containersPerNode: perNode, params: params, id: fixed)
        if let fixed, id != fixed {
            throw ChiError(EEXIST, "\(cluster.describe(nodeId)) has pool \"\(name)\" as id \(id), not \(fixed)")
        }
        let results = adminOnNodes(cluster.others, method: UInt32(CHI_ADMIN_CREATE_POOL),
                                   type: chi_admin_create_pool_task_t.self, bulk: params) { t, bulk in
            Self.fillCreate(t, module: module, name: name, perNode: perNode, bulk: bulk, id: id)
        }
        try Self.check(results, what: "CreatePool \"\(name)\"", tolerate: [CInt(CHI_ENODE)])
        return id
    }

    private static func fillCreate(_ t: UnsafeMutablePointer<chi_admin_create_pool_task_t>, module: String,
                                   name: String, perNode: Int, bulk: chi_shm_ptr_t?, id: UInt64) {
        withUnsafeMutableBytes(of: &t.pointee.module) { $0.copyBytes(from: module.utf8.prefix(Int(CHI_NAME_MAX) - 1)) }
        withUnsafeMutableBytes(of: &t.pointee.name) { $0.copyBytes(from: name.utf8.prefix(Int(CHI_NAME_MAX) - 1)) }
        t.pointee.containers_per_node = UInt32(perNode)
        if let bulk {
            t.pointee.params = bulk
        }
        t.pointee.pool_id = id
    }

    /// DestroyPool: the tombstone in the store first (etcd), then here, then on every other
    /// node (a node without it is fine; one that is down learns the tombstone when it returns).
    func destroyPoolService(_ id: UInt64, record r: TaskRecord) throws(ChiError) {
        if let md = metadata, cluster.isMultiNode, !actsLocally(r) {
            let name = try storeDestroyPool(md, id)
            guard name != nil || pool(id) != nil else {
                throw ChiError(CInt(CHI_ENOPOOL), "no pool with id \(id) (the metadata store has no live pool of that id)")
            }
            // The store's watch may have destroyed it here already; the others still hear.
            do throws(ChiError) {
                try destroyPool(id)
            } catch {
                if error.code != CInt(CHI_ENOPOOL) { throw error }
                _ = noteTombstone(id, name: name ?? "")
            }
        } else {
            try destroyPool(id)
        }
        try onOtherNodes(r, UInt32(CHI_ADMIN_DESTROY_POOL), chi_admin_destroy_pool_task_t.self,
                         what: "DestroyPool \(id)", tolerate: [CInt(CHI_ENODE), CInt(CHI_ENOPOOL)]) { t in
            t.pointee.pool_id = id
        }
    }

    /// RegisterModule: here, then on every other node that is up.
    func registerModuleService(_ name: String, record r: TaskRecord) throws(ChiError) {
        try registerModule(name)
        try onOtherNodes(r, UInt32(CHI_ADMIN_REGISTER_MODULE), chi_admin_register_module_task_t.self,
                         what: "RegisterModule \(name)", tolerate: [CInt(CHI_ENODE)]) { t in
            withUnsafeMutableBytes(of: &t.pointee.name) { $0.copyBytes(from: name.utf8.prefix(Int(CHI_NAME_MAX) - 1)) }
        }
    }

    /// The second half of a cluster-wide admin call done here: the same method on every other
    /// node, unless `r` is already one node's share. Fails with the first result not tolerated.
    private func onOtherNodes<T>(_ r: TaskRecord, _ method: UInt32, _ type: T.Type, what: String,
                                 tolerate: [CInt], fill: (UnsafeMutablePointer<T>) -> Void) throws(ChiError) {
        guard cluster.isMultiNode, !actsLocally(r) else { return }
        let results = adminOnNodes(cluster.others, method: method, type: type, bulk: nil) { t, _ in fill(t) }
        try Self.check(results, what: what, tolerate: tolerate)
    }

    /// Fails with the first result whose code is not tolerated, naming its node.
    private static func check(_ results: [(node: UInt32, rc: CInt, message: String?)], what: String,
                              tolerate: [CInt]) throws(ChiError) {
        for x in results where x.rc < 0 && !tolerate.contains(-x.rc) {
            throw ChiError(-x.rc, "\(what) on node \(x.node): \(x.message ?? ChiError.describe(x.rc))")
        }
    }

    /// Runs one admin method on the admin container of each node in `nodes`, all at once,
    /// from a runtime fiber (which waits; its worker goes on). `bulk`, when given, is copied
    /// into a shared buffer that `fill` receives.
    func adminOnNodes<T>(_ nodes: [UInt32], method: UInt32, type: T.Type, bulk: UnsafeRawBufferPointer?,
                                 fill: (UnsafeMutablePointer<T>, chi_shm_ptr_t?) -> Void,
                                 read: (UnsafeMutablePointer<T>) -> Void = { _ in })
        -> [(node: UInt32, rc: CInt, message: String?)]
    {
        guard let client = internalClient else {
            return nodes.map { ($0, -CInt(CHI_ENORUNTIME), "the runtime has no internal client") }
        }
        var out: [(node: UInt32, rc: CInt, message: String?)] = []
        var buf: UnsafeMutableRawPointer?
        var ptr: chi_shm_ptr_t?
        if let bulk, bulk.count > 0 {
            guard let b = try? client.allocBuffer(bulk.count) else {
                return nodes.map { ($0, -ENOMEM, "no room in the segment for the parameters") }
            }
            b.copyMemory(from: bulk.baseAddress!, byteCount: bulk.count)
            buf = b
            ptr = chi_shm_ptr_t(segment: 0, reserved: 0, offset: segment.offset(of: b)!)
        }
        defer { if let buf { try? client.freeBuffer(buf) } }
        var tasks: [(UInt32, UnsafeMutablePointer<chi_task_t>)] = []
        for n in nodes {
            let q = chi_dq_direct_id(UInt32(CHI_SUBDOMAIN_GLOBAL_CONTAINERS), UInt64(n - 1))
            do throws(ChiError) {
                let t = try client.newTask(pool: Self.adminPoolId, method: method, size: MemoryLayout<T>.size, query: q)
                let typed = UnsafeMutableRawPointer(t).assumingMemoryBound(to: T.self)
                fill(typed, ptr)
                if method == UInt32(CHI_ADMIN_CREATE_POOL), let bulk {
                    typed.withMemoryRebound(to: chi_admin_create_pool_task_t.self, capacity: 1) {
                        $0.pointee.params_size = UInt32(bulk.count)
                    }
                }
                try client.submit(t)
                tasks.append((n, t))
            } catch {
                out.append((n, -error.code, error.message))
            }
        }
        for (n, t) in tasks {
            do throws(ChiError) {
                try client.wait(t, timeoutNs: -1)
                let rc = t.pointee.rc
                if rc >= 0 { read(UnsafeMutableRawPointer(t).assumingMemoryBound(to: T.self)) }
                out.append((n, rc, rc < 0 ? client.takeErrorMessage(t) : nil))
                try? client.deleteTask(t)
            } catch {
                out.append((n, -error.code, error.message))
            }
        }
        return out
    }
}
