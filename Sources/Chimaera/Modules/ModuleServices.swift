import CChimaera
import Glibc

/// What the module API's C exports call: containers, lanes, run contexts and the runtime
/// services of the admin module. Handles are unretained object pointers made by the runtime.
package enum ModuleServices {
    @inline(__always)
    static func container(_ c: OpaquePointer) -> Container { Container.from(c) }

    package static func addLanes(_ c: OpaquePointer, group: UInt32, count: Int, prio: UInt32) throws(ChiError) {
        guard prio == UInt32(CHI_PRIO_LOW_LATENCY) || prio == UInt32(CHI_PRIO_HIGH_LATENCY) else {
            throw ChiError(EINVAL, "lane priority \(prio) is neither CHI_PRIO_LOW_LATENCY nor CHI_PRIO_HIGH_LATENCY")
        }
        try container(c).addLanes(group: group, count: count, prio: prio)
    }

    package static func containerId(_ c: OpaquePointer) -> UInt32 { container(c).id }
    package static func containerCount(_ c: OpaquePointer) -> UInt32 { UInt32(container(c).pool.containers.count) }
    package static func poolId(_ c: OpaquePointer) -> UInt64 { container(c).pool.id }

    /// Called by map_task_to_lane hooks on every task: borrows the container (no retain).
    package static func laneByHash(_ c: OpaquePointer, group: UInt32, hash: UInt64) -> CInt {
        guard let i = Container.ref(c).with({ $0.lane(group: group, hash: hash) }) else { return -EINVAL }
        return CInt(i)
    }

    package static func leastLoaded(_ c: OpaquePointer, group: UInt32) -> CInt {
        guard let i = container(c).leastLoaded(group: group) else { return -EINVAL }
        return CInt(i)
    }

    package static func workerCount(_ c: OpaquePointer) -> UInt32 {
        UInt32(container(c).runtime.workers.count)
    }

    package static func addPoller(_ c: OpaquePointer,
                                  _ fn: @escaping @convention(c) (UnsafeMutableRawPointer?, UInt32) -> CInt,
                                  _ arg: UnsafeMutableRawPointer?, wait: Poller.WaitFn? = nil) {
        let con = container(c)
        let p = Poller(fn: fn, arg: arg, pool: con.pool, wait: wait)
        // An upgrade or migrate_in hook's pollers wait for the commit (the old ones still
        // serve meanwhile).
        if con.collectingPollers { con.pendingPollers.append(p) } else { con.pollers.append(p) }
    }

    package static func state(of r: OpaquePointer) -> UnsafeMutableRawPointer? {
        TaskRecord.from(r).container?.state
    }

    package static func worker(of r: OpaquePointer) -> UInt32 {
        UInt32(Worker.current?.id ?? -1)
    }

    /// Suspends the task's fiber until `resume`; false if not on the task's own fiber.
    package static func suspend(_ r: OpaquePointer) -> Bool {
        let rec = TaskRecord.from(r)
        guard let f = rec.fiber, f === Worker.current?.currentFiber else { return false }
        let state = rec.resumeState
        if chi_cas32(state, 2, 0) { return true }
        if chi_cas32(state, 0, 1) {
            f.suspend()
        }
        chi_store32(state, 0)
        return true
    }

    /// Resumes a suspended task (or leaves a resume pending for its next suspend).
    package static func resume(_ r: OpaquePointer) -> Bool {
        let rec = TaskRecord.from(r)
        let state = rec.resumeState
        while true {
            switch chi_load32(state) {
            case 1:
                guard chi_cas32(state, 1, 0), let f = rec.fiber else { continue }
                if f.worker === Worker.current {
                    f.worker.ready.append(Ref(f))
                } else {
                    f.worker.post(.resume, f)
                }
                return true
            case 0:
                if chi_cas32(state, 0, 2) { return true }
            default:
                return true
            }
        }
    }

    /// The vtable of module `name`, loaded into this process without running any hook.
    nonisolated(unsafe) private static var describeLoader = ModuleLoader(configPaths: [])
    package static func describe(_ name: String) throws(ChiError) -> UnsafePointer<chi_module_vtable_t> {
        UnsafePointer(try describeLoader.loadCurrent(name).vtablePtr)
    }

    package static func container(of r: OpaquePointer) -> OpaquePointer? {
        TaskRecord.from(r).container?.handle
    }

    package static func runtime(of r: OpaquePointer) -> Runtime? {
        TaskRecord.from(r).pool?.containers.first?.runtime
    }

    package static func replicaCount(_ r: OpaquePointer) -> UInt32 {
        UInt32(TaskRecord.from(r).replicas.count)
    }

    package static func replica(_ r: OpaquePointer, _ i: Int) -> UnsafeMutablePointer<chi_task_t>? {
        let rec = TaskRecord.from(r)
        return i >= 0 && i < rec.replicas.count ? rec.replicas[i] : nil
    }

    /// A bulk pointer of the task behind `r`, if `[p, p + size)` lies inside one buffer its
    /// submitter holds (any live buffer for a subtask made by module code).
    package static func shmPointer(_ r: OpaquePointer, _ p: chi_shm_ptr_t, _ size: UInt64) -> UnsafeMutableRawPointer? {
        let rec = TaskRecord.from(r)
        guard let rt = rec.poolRef?.with({ $0.containers.first?.runtime }) else { return nil }
        return rt.resolveBulk(p, size, owner: rec.bulkOwner)
    }

    /// Runs a runtime service for the task behind `r`; a failure's message travels back to
    /// the client with the task's status.
    package static func service(_ r: OpaquePointer?, _ body: (Runtime) throws(ChiError) -> CInt) -> CInt {
        recordService(r) { (rt, _) throws(ChiError) -> CInt in try body(rt) }
    }

    /// Creates a pool on every node (see Runtime+Cluster). `id` is in/out: a requested id
    /// (honoured only from another node), then the pool's id.
    package static func createPool(_ r: OpaquePointer?, module: String, name: String, perNode: Int,
                                   params: UnsafeRawBufferPointer?, id: inout UInt64) -> CInt {
        let requested = id
        var made: UInt64 = 0
        let rc = recordService(r) { (rt, rec) throws(ChiError) -> CInt in
            made = try rt.createPoolService(module: module, name: name, perNode: perNode, params: params,
                                            requestedId: requested, record: rec)
            return 0
        }
        if rc == 0 { id = made }
        return rc
    }

    package static func destroyPool(_ r: OpaquePointer?, _ id: UInt64) -> CInt {
        recordService(r) { (rt, rec) throws(ChiError) -> CInt in
            try rt.destroyPoolService(id, record: rec)
            return 0
        }
    }

    package static func upgradeModule(_ r: OpaquePointer?, _ t: UnsafeMutablePointer<chi_admin_upgrade_module_task_t>) -> CInt {
        recordService(r) { (rt, rec) throws(ChiError) -> CInt in
            try rt.upgradeService(t, record: rec)
            return 0
        }
    }

    package static func migrateContainer(_ r: OpaquePointer?, _ t: UnsafeMutablePointer<chi_admin_migrate_container_task_t>) -> CInt {
        recordService(r) { (rt, rec) throws(ChiError) -> CInt in
            try rt.migrateService(t, record: rec)
            return 0
        }
    }

    package static func migrateWrite(_ s: OpaquePointer, _ p: UnsafeRawPointer, _ n: Int) -> CInt {
        MigrateStream.from(s).write(p, n)
    }

    package static func migrateRead(_ s: OpaquePointer, _ p: UnsafeMutableRawPointer, _ n: Int) -> Int {
        let st = MigrateStream.from(s)
        let got = st.read(p, n, at: st.readPos)
        if got > 0 { st.readPos += UInt64(got) }
        return got
    }

    package static func migrateRemaining(_ s: OpaquePointer) -> UInt64 { MigrateStream.from(s).remaining }

    package static func registerModule(_ r: OpaquePointer?, _ name: String) -> CInt {
        recordService(r) { (rt, rec) throws(ChiError) -> CInt in
            try rt.registerModuleService(name, record: rec)
            return 0
        }
    }

    private static func recordService(_ r: OpaquePointer?, _ body: (Runtime, TaskRecord) throws(ChiError) -> CInt) -> CInt {
        guard let r else {
            setLastError("run context is NULL")
            return -EINVAL
        }
        let rec = TaskRecord.from(r)
        guard let rt = rec.pool?.containers.first?.runtime else {
            setLastError("run context has no runtime")
            return -EINVAL
        }
        do {
            return try body(rt, rec)
        } catch {
            setLastError(error.message)
            rec.errorMessage = error.message
            return error.negated
        }
    }
}

extension Runtime {
    /// Loads a module (RegisterModule).
    package func registerModule(_ name: String) throws(ChiError) {
        _ = try loader.load(name)
    }

    /// The id of a pool by name.
    package func poolId(named name: String) -> UInt64? { findPool(name) }
}
