import CChimaera
import Chimaera

// The module API: containers, lanes, run contexts and runtime services (module.h). These
// run on worker threads inside module hooks; a NULL handle is an error, never a trap.

@c(chi_container_add_lanes)
public func chiContainerAddLanes(_ c: OpaquePointer?, _ group: UInt32, _ count: UInt32, _ prio: UInt32) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        guard let c else { throw ChiError(EINVAL, "container is NULL") }
        try ModuleServices.addLanes(c, group: group, count: Int(count), prio: prio)
        return 0
    }
}

@c(chi_container_id)
public func chiContainerId(_ c: OpaquePointer?) -> UInt32 {
    guard let c else { return UInt32.max }
    return ModuleServices.containerId(c)
}

@c(chi_container_count)
public func chiContainerCount(_ c: OpaquePointer?) -> UInt32 {
    guard let c else { return 0 }
    return ModuleServices.containerCount(c)
}

@c(chi_container_pool_id)
public func chiContainerPoolId(_ c: OpaquePointer?) -> UInt64 {
    guard let c else { return 0 }
    return ModuleServices.poolId(c)
}

@c(chi_lane_by_hash)
public func chiLaneByHash(_ c: OpaquePointer?, _ group: UInt32, _ hash: UInt64) -> CInt {
    guard let c else { return -EINVAL }
    return ModuleServices.laneByHash(c, group: group, hash: hash)
}

@c(chi_lane_least_loaded)
public func chiLaneLeastLoaded(_ c: OpaquePointer?, _ group: UInt32) -> CInt {
    guard let c else { return -EINVAL }
    return ModuleServices.leastLoaded(c, group: group)
}

@c(chi_rctx_container)
public func chiRctxContainer(_ r: OpaquePointer?) -> OpaquePointer? {
    guard let r else { return nil }
    return ModuleServices.container(of: r)
}

@c(chi_rctx_client)
public func chiRctxClient(_ r: OpaquePointer?) -> OpaquePointer? {
    guard let r, let rt = ModuleServices.runtime(of: r) else { return nil }
    return Handles.internalHandle(for: rt)
}

@c(chi_rctx_replica_count)
public func chiRctxReplicaCount(_ r: OpaquePointer?) -> UInt32 {
    guard let r else { return 0 }
    return ModuleServices.replicaCount(r)
}

@c(chi_rctx_replica)
public func chiRctxReplica(_ r: OpaquePointer?, _ i: UInt32) -> UnsafeMutablePointer<chi_task_t>? {
    guard let r else { return nil }
    return ModuleServices.replica(r, Int(i))
}

@c(chi_rctx_shm_ptr)
public func chiRctxShmPtr(_ r: OpaquePointer?, _ p: chi_shm_ptr_t, _ size: UInt64) -> UnsafeMutableRawPointer? {
    guard let r else { return nil }
    return ModuleServices.shmPointer(r, p, size)
}

@c(chi_rt_module_register)
public func chiRtModuleRegister(_ r: OpaquePointer?, _ name: UnsafePointer<CChar>?) -> CInt {
    let n: String
    do { n = try cString(name, "module name") } catch {
        setLastError(error.message)
        return error.negated
    }
    return ModuleServices.registerModule(r, n)
}

@c(chi_rt_pool_create)
public func chiRtPoolCreate(_ r: OpaquePointer?, _ module: UnsafePointer<CChar>?, _ name: UnsafePointer<CChar>?,
                            _ cpn: UInt32, _ params: UnsafeRawPointer?, _ size: UInt32,
                            _ out: UnsafeMutablePointer<UInt64>?) -> CInt {
    // The parameters may sit in client-writable memory: copy them first.
    var copy = [UInt8]()
    let mod: String, poolName: String
    do throws(ChiError) {
        guard let out else { throw ChiError(EINVAL, "pool_id is NULL") }
        _ = out
        if size > 0 {
            guard let params else { throw ChiError(EINVAL, "params is NULL") }
            copy = Array(UnsafeRawBufferPointer(start: params, count: Int(size)))
        }
        mod = try cString(module, "module name")
        poolName = try cString(name, "pool name")
    } catch {
        setLastError(error.message)
        return error.negated
    }
    var id = out!.pointee
    let rc = copy.withUnsafeBytes { b in
        ModuleServices.createPool(r, module: mod, name: poolName, perNode: Int(cpn), params: size > 0 ? b : nil, id: &id)
    }
    if rc == 0 { out!.pointee = id }
    return rc
}

@c(chi_rt_pool_find)
public func chiRtPoolFind(_ r: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<UInt64>?) -> CInt {
    ModuleServices.service(r) { (rt) throws(ChiError) -> CInt in
        guard let out else { throw ChiError(EINVAL, "pool_id is NULL") }
        let n = try cString(name, "pool name")
        guard let id = rt.poolId(named: n) else { throw ChiError(CInt(CHI_ENOPOOL), "no pool named \"\(n)\"") }
        out.pointee = id
        return 0
    }
}

@c(chi_rt_pool_destroy)
public func chiRtPoolDestroy(_ r: OpaquePointer?, _ id: UInt64) -> CInt {
    ModuleServices.destroyPool(r, id)
}

@c(chi_rt_flush)
public func chiRtFlush(_ r: OpaquePointer?) -> CInt {
    ModuleServices.service(r) { (rt) throws(ChiError) -> CInt in
        rt.flush()
        return 0
    }
}

@c(chi_rt_request_stop)
public func chiRtRequestStop(_ r: OpaquePointer?) -> CInt {
    ModuleServices.service(r) { (rt) throws(ChiError) -> CInt in
        rt.requestStop()
        return 0
    }
}

@c(chi_rt_stats_json)
public func chiRtStatsJson(_ r: OpaquePointer?, _ buf: UnsafeMutablePointer<CChar>?, _ cap: Int) -> CInt {
    ModuleServices.service(r) { (rt) throws(ChiError) -> CInt in
        try copyOut(rt.statsJSON(), to: buf, cap: cap, what: "the statistics")
    }
}

@c(chi_rt_set_worch)
public func chiRtSetWorch(_ r: OpaquePointer?, _ name: UnsafePointer<CChar>?) -> CInt {
    ModuleServices.service(r) { (rt) throws(ChiError) -> CInt in
        try rt.setWorkOrchestrator(try cString(name, "policy module name"))
        return 0
    }
}

@c(chi_rt_pool_info)
public func chiRtPoolInfo(_ r: OpaquePointer?, _ id: UInt64, _ name: UnsafePointer<CChar>?,
                          _ info: UnsafeMutablePointer<chi_pool_info_t>?) -> CInt {
    ModuleServices.service(r) { (rt) throws(ChiError) -> CInt in
        guard let info else { throw ChiError(EINVAL, "info is NULL") }
        try rt.poolInfo(id: id, name: name.map { String(cString: $0) }, into: info)
        return 0
    }
}

@c(chi_container_worker_count)
public func chiContainerWorkerCount(_ c: OpaquePointer?) -> UInt32 {
    guard let c else { return 0 }
    return ModuleServices.workerCount(c)
}

@c(chi_container_add_poller)
public func chiContainerAddPoller(_ c: OpaquePointer?,
                                  _ fn: (@convention(c) (UnsafeMutableRawPointer?, UInt32) -> CInt)?,
                                  _ arg: UnsafeMutableRawPointer?) -> CInt {
    guard let c, let fn else {
        setLastError("container or poll function is NULL")
        return -EINVAL
    }
    ModuleServices.addPoller(c, fn, arg)
    return 0
}

@c(chi_container_add_waiting_poller)
public func chiContainerAddWaitingPoller(_ c: OpaquePointer?,
                                         _ fn: (@convention(c) (UnsafeMutableRawPointer?, UInt32) -> CInt)?,
                                         _ wait: (@convention(c) (UnsafeMutableRawPointer?, UInt32, UnsafeMutablePointer<UInt32>?, UInt32, UInt64) -> CInt)?,
                                         _ arg: UnsafeMutableRawPointer?) -> CInt {
    guard let c, let fn, let wait else {
        setLastError("container, poll or wait function is NULL")
        return -EINVAL
    }
    ModuleServices.addPoller(c, fn, arg, wait: wait)
    return 0
}

@c(chi_rctx_worker)
public func chiRctxWorker(_ r: OpaquePointer?) -> UInt32 {
    guard let r else { return UInt32.max }
    return ModuleServices.worker(of: r)
}

@c(chi_rctx_state)
public func chiRctxState(_ r: OpaquePointer?) -> UnsafeMutableRawPointer? {
    guard let r else { return nil }
    return ModuleServices.state(of: r)
}

@c(chi_rctx_suspend)
public func chiRctxSuspend(_ r: OpaquePointer?) -> CInt {
    guard let r, ModuleServices.suspend(r) else {
        setLastError("chi_rctx_suspend: not called from the task's own fiber")
        return -EINVAL
    }
    return 0
}

@c(chi_rctx_resume)
public func chiRctxResume(_ r: OpaquePointer?) -> CInt {
    guard let r, ModuleServices.resume(r) else { return -EINVAL }
    return 0
}

@c(chi_module_describe)
public func chiModuleDescribe(_ name: UnsafePointer<CChar>?,
                              _ out: UnsafeMutablePointer<UnsafePointer<chi_module_vtable_t>?>?) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        guard let out else { throw ChiError(EINVAL, "out is NULL") }
        out.pointee = try ModuleServices.describe(try cString(name, "module name"))
        return 0
    }
}

@c(chi_rt_module_upgrade)
public func chiRtModuleUpgrade(_ r: OpaquePointer?, _ t: UnsafeMutablePointer<chi_admin_upgrade_module_task_t>?) -> CInt {
    guard let t else {
        setLastError("task is NULL")
        return -EINVAL
    }
    return ModuleServices.upgradeModule(r, t)
}

@c(chi_rt_container_migrate)
public func chiRtContainerMigrate(_ r: OpaquePointer?, _ t: UnsafeMutablePointer<chi_admin_migrate_container_task_t>?) -> CInt {
    guard let t else {
        setLastError("task is NULL")
        return -EINVAL
    }
    return ModuleServices.migrateContainer(r, t)
}

@c(chi_migrate_write)
public func chiMigrateWrite(_ s: OpaquePointer?, _ buf: UnsafeRawPointer?, _ len: Int) -> CInt {
    guard let s else { return -EINVAL }
    if len == 0 { return 0 }
    guard let buf else { return -EINVAL }
    return ModuleServices.migrateWrite(s, buf, len)
}

@c(chi_migrate_read)
public func chiMigrateRead(_ s: OpaquePointer?, _ buf: UnsafeMutableRawPointer?, _ len: Int) -> Int {
    guard let s else { return -Int(EINVAL) }
    if len == 0 { return 0 }
    guard let buf else { return -Int(EINVAL) }
    return ModuleServices.migrateRead(s, buf, len)
}

@c(chi_migrate_remaining)
public func chiMigrateRemaining(_ s: OpaquePointer?) -> UInt64 {
    guard let s else { return 0 }
    return ModuleServices.migrateRemaining(s)
}
