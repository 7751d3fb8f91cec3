import CChimaera
import Glibc

/// Routing, execution and completion of tasks on a worker.
///
/// The task path does no reference counting: objects arrive as parameters (borrowed from the
/// caller) or are borrowed from `Ref`s with `with`. Reading a class-typed field into a local,
/// even an `unowned(unsafe)` one, costs an atomic retain/release pair (see `Ref`).
extension Worker {
    /// Takes a task offset from an ingress ring. The header is untrusted: its bounds, pool,
    /// method and size are checked before anything else reads it.
    func accept(_ off: UInt64) {
        let t: UnsafeMutablePointer<chi_task_t>? = rt.with { runtime in
            let seg = runtime.segment
            let hdrSize = UInt64(MemoryLayout<chi_task_t>.size)
            guard let p = seg.pointer(off, hdrSize) else {
                runtime.badTasks &+= 1
                return nil
            }
            // The task's lines are the worker's serial misses: the header's first line
            // (read here), its second (lane_hash in dispatch, then rc and done) and the first
            // parameters (read and written by the method). Ask for all three at once; the
            // second stays shared because the client polls its completion word there.
            chi_prefetch(p + 64)
            chi_prefetch_w(p + 128)
            let t = p.assumingMemoryBound(to: chi_task_t.self)
            let size = UInt64(t.pointee.size)
            guard size >= hdrSize, seg.pointer(off, size) != nil else {
                t.pointee.rc = -CInt(CHI_EBADTASK)
                runtime.finishTask(t, off: off, isInternal: false)
                return nil
            }
            return t
        }
        guard let t else { return }
        allocRecord(t, off: off).with { route($0) }
    }

    /// Submits a task from module code running on this worker (a subtask).
    func submitInternal(_ t: UnsafeMutablePointer<chi_task_t>, off: UInt64) {
        allocRecord(t, off: off).with { r in
            r.isInternal = true
            route(r)
        }
    }

    /// Resolves a task's pool, method and domain query, then queues it on a lane (or fans it
    /// out to replicas).
    func route(_ r: TaskRecord) {
        let poolId = r.task.pointee.pool_id
        guard let pool = rt.with({ $0.poolRef(poolId) }) else {
            fail(r, CInt(CHI_ENOPOOL))
            return
        }
        pool.with { route(r, in: $0) }
    }

    private func route(_ r: TaskRecord, in pool: RuntimePool) {
        let t = r.task
        guard let m = pool.module.method(t.pointee.method) else {
            fail(r, CInt(CHI_ENOMETHOD))
            return
        }
        guard t.pointee.size >= m.pointee.task_size else {
            fail(r, CInt(CHI_EBADTASK))
            return
        }
        r.poolRef = Ref(pool)
        r.method = m
        pool.inflightAdd(id, 1)
        var q = t.pointee.dom_query
        if q.flags & UInt32(CHI_DQ_DYNAMIC) != 0 {
            schedule(r, pool)
            q = t.pointee.dom_query
        }
        switch DomainResolver.resolve(q, in: pool, node: rt.with { $0.nodeId }) {
        case .one(let c):
            c.with { dispatch(r, to: $0) }
        case .many(let cs, let iter):
            fanOut(r, cs, iter)
        case .failure(let code):
            complete(r, rc: -code)
        }
    }

    /// Dynamic scheduling: the module's kSchedule hook rewrites the query. Without a hook,
    /// or if it leaves the query dynamic, the task goes to a container chosen by its id.
    private func schedule(_ r: TaskRecord, _ pool: RuntimePool) {
        let t = r.task
        if let mon = pool.module.vtable.monitor, let c = pool.local.first {
            r.container = c
            _ = mon(c.state, UInt32(CHI_MONITOR_SCHEDULE), t, r.rctx)
            r.container = nil
        }
        if t.pointee.dom_query.flags & UInt32(CHI_DQ_DYNAMIC) != 0 {
            t.pointee.dom_query = chi_dq_direct_hash(UInt32(CHI_SUBDOMAIN_GLOBAL_CONTAINERS),
                                                     t.pointee.task_id)
        }
    }

    private func fanOut(_ r: TaskRecord, _ cs: [Container], _ iter: UInt32) {
        let pool = r.pool!
        if iter & UInt32(CHI_DQ_CHOOSE_ONE) != 0 {
            let i = Int(chi_add64(pool.cursor, 1) % UInt64(cs.count))
            dispatch(r, to: cs[i])
            return
        }
        let size = Int(r.task.pointee.size)
        let repeatUntilSuccess = iter & UInt32(CHI_DQ_REP_UNTIL_SUCCESS) != 0
        let n = repeatUntilSuccess ? 1 : cs.count
        if repeatUntilSuccess { r.targets = cs }
        r.pending.pointee = UInt32(n)
        var replicas: [TaskRecord] = []
        replicas.reserveCapacity(n)
        for i in 0..<n {
            guard let off = runtime.allocator.allocate(UInt64(size)),
                  let p = runtime.segment.pointer(off, UInt64(size))
            else {
                for rep in replicas { runtime.allocator.free(rep.taskOff); freeRecord(rep) }
                r.replicas.removeAll()
                complete(r, rc: -ENOMEM)
                return
            }
            p.copyMemory(from: r.task, byteCount: size)
            let t = p.assumingMemoryBound(to: chi_task_t.self)
            t.pointee.done = 0
            t.pointee.flags &= ~UInt32(CHI_TASK_PERIODIC | CHI_TASK_FIRE_AND_FORGET)
            t.pointee.dom_query = chi_dq_direct_id(UInt32(CHI_SUBDOMAIN_GLOBAL_CONTAINERS),
                                                   UInt64(cs[i].id))
            let rep = allocRecord(t, off: off).o
            rep.parent = r
            rep.pool = pool
            rep.method = r.method
            pool.inflightAdd(id, 1)
            r.replicas.append(t)
            replicas.append(rep)
        }
        for (i, rep) in replicas.enumerated() { dispatch(rep, to: cs[i]) }
    }

    /// Maps the task to a lane of container `c` and queues it there (or on the lane's worker).
    func dispatch(_ r: TaskRecord, to c: Container) {
        if c.node != rt.with({ $0.nodeId }) {
            rt.with { $0.remote!.forward(r, to: c, from: self) }
            return
        }
        r.containerRef = Ref(c)
        let t = r.task
        var idx: Int
        if let map = c.poolRef.with({ $0.module.vtable.map_task_to_lane }) {
            idx = Int(map(c.state, c.handle, t))
        } else {
            idx = c.lanes.isEmpty ? -1 : Int(UInt64(t.pointee.lane_hash) % UInt64(c.lanes.count))
        }
        if idx < 0 || idx >= c.lanes.count {
            if c.lanes.isEmpty {
                complete(r, rc: -CInt(CHI_ENOCONTAINER))
                return
            }
            idx = 0
        }
        let lane = c.laneRef(idx)
        r.laneRef = lane
        let owner = lane.with { $0.workerRef }
        if owner.is(self) {
            enqueueLocal(r)
        } else {
            owner.with { $0.post(.enqueue, r) }
        }
    }

    /// Runs a task's method on the current fiber.
    func execute(_ r: TaskRecord) {
        guard let c = r.containerRef else { return }
        c.with { c in c.poolRef.with { execute(r, in: c, of: $0) } }
    }

    private func execute(_ r: TaskRecord, in c: Container, of pool: RuntimePool) {
        let t = r.task
        let stopping = rt.with { $0.isStopping }
        if pool.isDestroyed || stopping {
            complete(r, rc: -CInt(CHI_ESTOPPED))
            return
        }
        // Busy time is sampled: two clock reads per task would add ~20 ns to every round
        // trip. A lane times one task in busySampleEvery (its first included) and counts it
        // that many times.
        let sampled = r.laneRef?.with { $0.tasksRun & (Self.busySampleEvery - 1) == 0 } ?? true
        let start = sampled ? chi_ticks() : 0
        r.fiberRef = currentFiberRef
        var rc: CInt
        if let fm = pool.module.handler(t.pointee.method) {
            rc = 0
            let (base, size) = rt.with { ($0.segment.base, UInt64($0.segment.size)) }
            let e = chi_ffi_call(fm, t, UnsafeMutableRawPointer(r.rctx), base, size, &rc)
            if e < 0 { rc = e }
        } else {
            rc = pool.module.vtable.run?(c.state, t, r.rctx) ?? -CInt(CHI_ENOMETHOD)
        }
        r.fiberRef = nil
        tasksRun &+= 1
        if sampled {
            let busy = (chi_ticks() &- start) &* Self.busySampleEvery
            busyTicks &+= busy
            r.laneRef?.with { $0.busyTicks &+= busy }
        }
        t.pointee.runs &+= 1
        if r.isPeriodic && r.parentRef == nil {
            if pool.isDestroyed || rt.with({ $0.isStopping }) {
                complete(r, rc: -CInt(CHI_ESTOPPED))
            } else {
                t.pointee.rc = rc
                r.deadline = chi_now_ns() &+ max(t.pointee.period_ns, 1000)
                timers.insert(r)
            }
            return
        }
        complete(r, rc: rc)
    }

    /// Fails a task before it reached a pool.
    private func fail(_ r: TaskRecord, _ code: CInt) {
        r.task.pointee.rc = -code
        if let p = r.parentRef {
            p.with { replicaDone(r, parent: $0) }
            return
        }
        if let inc = r.remote {
            rt.with { $0.remote!.reply(r, inc) }
            freeRecord(r)
            return
        }
        rt.with { $0.finishTask(r.task, off: r.taskOff, isInternal: r.isInternal) }
        freeRecord(r)
    }

    /// Finishes a task with status `rc`: signals its waiter, or folds it into its parent.
    func complete(_ r: TaskRecord, rc: CInt) {
        r.task.pointee.rc = rc
        complete(r)
    }

    func complete(_ r: TaskRecord) {
        r.poolRef?.with { $0.inflightAdd(id, -1) }
        if let p = r.parentRef {
            // The first failing replica's reason becomes the original task's.
            if r.task.pointee.rc < 0, let msg = r.errorMessage {
                p.with { if $0.errorMessage == nil { $0.errorMessage = msg } }
            }
            p.with { replicaDone(r, parent: $0) }
            return
        }
        if r.remote != nil {
            rt.with { $0.remote!.reply(r, r.remote!) }
            freeRecord(r)
            return
        }
        if r.task.pointee.rc < 0, let msg = r.errorMessage { runtime.attachMessage(msg, to: r.task) }
        rt.with { $0.finishTask(r.task, off: r.taskOff, isInternal: r.isInternal) }
        freeRecord(r)
    }

    /// One replica finished. Repeat-until-success moves on to the next container on failure;
    /// a broadcast aggregates through the module's kReplicaAgg hook once all are done.
    private func replicaDone(_ rep: TaskRecord, parent p: TaskRecord) {
        let rt = runtime
        if !p.targets.isEmpty {
            let failed = rep.task.pointee.rc < 0
            if failed && p.targetIndex + 1 < p.targets.count {
                p.targetIndex += 1
                let next = p.targets[p.targetIndex]
                rep.task.pointee.done = 0
                rep.task.pointee.dom_query = chi_dq_direct_id(
                    UInt32(CHI_SUBDOMAIN_GLOBAL_CONTAINERS), UInt64(next.id))
                p.pool!.inflightAdd(id, 1)
                rep.lane = nil
                dispatch(rep, to: next)
                return
            }
            copyOutputs(from: rep.task, to: p.task)
            p.task.pointee.rc = rep.task.pointee.rc
            rt.allocator.free(rep.taskOff)
            p.replicas.removeAll()
            freeRecord(rep)
            complete(p)
            return
        }
        freeRecord(rep)
        guard chi_sub32(p.pending, 1) == 1 else { return }
        aggregate(p)
        for t in p.replicas {
            if let off = rt.segment.offset(of: t) { rt.allocator.free(off) }
        }
        p.replicas.removeAll()
        complete(p)
    }

    /// Folds replicas into the original task: the module's hook if it has one, else the
    /// first failure's status or the first replica's outputs.
    private func aggregate(_ p: TaskRecord) {
        let pool = p.pool!
        if let mon = pool.module.vtable.monitor, let c = pool.local.first {
            p.container = c
            p.task.pointee.rc = 0
            let rc = mon(c.state, UInt32(CHI_MONITOR_REPLICA_AGG), p.task, p.rctx)
            if rc < 0 { p.task.pointee.rc = rc }
            return
        }
        var rc: CInt = 0
        for t in p.replicas where t.pointee.rc < 0 {
            rc = t.pointee.rc
            break
        }
        if let first = p.replicas.first { copyOutputs(from: first, to: p.task) }
        p.task.pointee.rc = rc
    }

    private func copyOutputs(from src: UnsafeMutablePointer<chi_task_t>,
                             to dst: UnsafeMutablePointer<chi_task_t>)
    {
        let hdr = MemoryLayout<chi_task_t>.size
        let n = Int(min(src.pointee.size, dst.pointee.size)) - hdr
        if n > 0 {
            (UnsafeMutableRawPointer(dst) + hdr).copyMemory(from: UnsafeRawPointer(src) + hdr, byteCount: n)
        }
    }
}
