import CChimaera
import Glibc

/// Routing, execution and completion of tasks on a worker.
///
/// The task path does no reference counting: objects arrive as parameters (borrowed from the
/// caller) or are borrowed from `Ref`s with `with`. Reading a class-typed field into a local,
/// even an `unowned(unsafe)` one, costs an atomic retain/release pair (see `Ref`).
extension Worker {
    static let headerSize = MemoryLayout<chi_task_t>.size

    /// Takes an entry from a client's ring. The client's task is untrusted: its offset must
    /// start a task block that client holds, its size is read once and checked against the
    /// block and the limit, and then the whole task is copied into the record; nothing is
    /// read from shared memory again until the results are copied back. An entry that is not
    /// a task of that client is counted and dropped: nothing is written there.
    @inline(__always)
    func accept(_ v: UInt64, _ e: ClientRing) {
        if v & CHI_RING_TAG_MASK != 0 {
            tagged(v, e)
            return
        }
        guard let limit = spans.taskLimit(v, owner: e.owner) else {
            refuse(v, e)
            return
        }
        // drainIngress prefetched the task's three lines (the parameters' line for writing:
        // the method's outputs are copied back there; the second stays shared, the client
        // polls its completion word there).
        let p = segBase + Int(v)
        let size = UInt64(p.load(as: UInt32.self))
        chi_store64(e.accepted, chi_load64_relaxed(e.accepted) &+ 1)
        allocRecord(p.assumingMemoryBound(to: chi_task_t.self), off: v).with { r in
            r.slotRef = e.slot
            r.shm = p.assumingMemoryBound(to: chi_task_t.self)
            r.shmOff = v
            r.bulkOwner = e.owner
            if let why = TaskCheck.size(size, limit: limit, maxTaskSize: limits.maxTaskSize) {
                r.inline.copyMemory(from: p, byteCount: Self.headerSize)
                r.task = r.inline.assumingMemoryBound(to: chi_task_t.self)
                r.copyBack = false
                r.errorMessage = why
                fail(r, CInt(CHI_EBADTASK))
                return
            }
            let dst: UnsafeMutableRawPointer
            if size <= UInt64(TaskRecord.inlineBytes) {
                dst = r.inline
            } else {
                let pt = privateTasks.take(Int(size))!
                r.blockRef = Ref(pt)
                r.ownsBlock = true
                dst = UnsafeMutableRawPointer(pt.task)
            }
            dst.copyMemory(from: p, byteCount: Int(size))
            let t = dst.assumingMemoryBound(to: chi_task_t.self)
            TaskCheck.seal(t, size: size)
            r.task = t
            route(r)
        }
    }

    /// A ring entry with a tag: a request about a task rather than a task.
    private func tagged(_ v: UInt64, _ e: ClientRing) {
        let off = v & ~CHI_RING_TAG_MASK
        guard v & CHI_RING_TAG_MASK == CHI_RING_CANCEL, spans.taskLimit(off, owner: e.owner) != nil else {
            refuse(v, e)
            return
        }
        for w in runtime.workers { w.post(.cancel, CancelRequest(owner: e.owner, off: off)) }
    }

    private func refuse(_ v: UInt64, _ e: ClientRing) {
        badTasks &+= 1
        if badTasks <= 8 || badTasks & (badTasks - 1) == 0 {
            let pid = e.slot.with { $0.pid }
            Log.warn("worker \(id): client pid \(pid) queued offset \(v), which is not one of its tasks (\(spans.describe(v & ~CHI_RING_TAG_MASK))); dropped (\(badTasks) so far)")
        }
    }

    /// Submits a task from module code (a subtask, in private memory).
    func submitInternal(_ pt: PrivateTask, depth: UInt32) {
        allocRecord(pt.task, off: 0).with { r in
            r.blockRef = Ref(pt)
            r.ownsBlock = false
            r.depth = depth
            r.task.pointee.flags &= UInt32(CHI_TASK_USER_FLAGS)
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
        if mustHold(r, pool) {
            hold(r)
            return
        }
        let t = r.task
        guard let m = pool.withModule({ $0.method(t.pointee.method) }) else {
            fail(r, CInt(CHI_ENOMETHOD))
            return
        }
        if let why = TaskCheck.method(t, m, module: pool.withModule { $0.name }, limits: limits) {
            r.errorMessage = why
            fail(r, CInt(CHI_EBADTASK))
            return
        }
        r.poolRef = Ref(pool)
        r.method = m
        pool.inflightAdd(id, 1)
        if t.pointee.flags & UInt32(CHI_TASK_REPLICA) != 0 {
            routeToBackup(r, pool)
            return
        }
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

    /// A primary's copy of a changing task (only peers set CHI_TASK_REPLICA: accept clears
    /// the library's bits): it runs on this node's backup of the container its query names,
    /// when every change numbered before it is done (BackupOrder).
    private func routeToBackup(_ r: TaskRecord, _ pool: RuntimePool) {
        let q = r.task.pointee.dom_query
        guard q.sel < UInt64(pool.containers.count), let b = pool.containers[Int(q.sel)].shadow else {
            r.errorMessage = "\(rt.with { $0.cluster.describe($0.nodeId) }) holds no backup of container \(q.sel) of pool \(pool.name)"
            complete(r, rc: -CInt(CHI_ENOCONTAINER))
            return
        }
        let seq = r.remote?.seq ?? 0
        r.replicaSeq = seq
        guard seq != 0, let order = b.order else {
            dispatch(r, to: b)
            return
        }
        let now = chi_now_ns()
        var skipped: (from: UInt64, to: UInt64)?
        let (next, duplicate) = order.lock.withLock { () -> (TaskRecord?, Bool) in
            // Done already (a duplicate): nothing runs twice.
            if seq <= order.done || order.parked[seq] != nil { return (nil, true) }
            if order.parked.isEmpty { order.parkedSince = now }
            order.parked[seq] = r
            if !order.running, order.parked[order.done + 1] == nil, now &- order.parkedSince >= BackupOrder.gapNs,
               let first = order.parked.keys.min()
            {
                skipped = (order.done + 1, first - 1)
                order.done = first - 1
            }
            guard !order.running, let n = order.parked.removeValue(forKey: order.done + 1) else { return (nil, false) }
            order.running = true
            order.parkedSince = now
            return (n, false)
        }
        if let s = skipped {
            Log.warn("pool \(pool.name): the backup of container \(b.id) skipped changes \(s.from)...\(s.to), which never arrived from its primary")
        }
        if duplicate {
            r.errorMessage = "change \(seq) of container \(b.id) of pool \(pool.name) reached its backup twice"
            r.replicaSeq = 0
            complete(r, rc: -EALREADY)
            return
        }
        if let n = next { dispatch(n, to: b) }
    }

    /// A backup's change is done: the next in sequence may run.
    private func backupDone(_ r: TaskRecord, _ b: Container) {
        guard r.replicaSeq != 0, let order = b.order else { return }
        let next = order.lock.withLock { () -> TaskRecord? in
            if r.replicaSeq > order.done { order.done = r.replicaSeq }
            order.running = false
            guard let n = order.parked.removeValue(forKey: order.done + 1) else { return nil }
            order.running = true
            return n
        }
        if let n = next { dispatch(n, to: b) }
    }

    /// Replication of a changing task, before it completes: true when the task went on to a
    /// backup (its reply comes back here, through complete). The primary's outputs and
    /// status are what the task ends with; a backup's failure fails it, except a backup on a
    /// node declared dead (the pool runs with fewer copies until recovery rebuilds them).
    private func replicate(_ r: TaskRecord) -> Bool {
        let t = r.task
        if r.backupInFlight {
            r.backupInFlight = false
            let brc = t.pointee.rc
            t.pointee.rc = r.primaryRc
            if brc < 0 {
                if brc == -CInt(CHI_ENODE) {
                    Log.warn("pool \(r.pool?.name ?? "?"): a backup is unreachable, the change is on fewer copies: \(r.errorMessage ?? "")")
                    r.errorMessage = nil
                } else {
                    t.pointee.rc = brc
                    return false
                }
            }
        } else {
            if t.pointee.flags & UInt32(CHI_TASK_REPLICA) != 0, let cr = r.containerRef {
                // This is the backup: count what it applied, and let the next change run.
                cr.with { b in
                    if t.pointee.rc >= 0 { _ = b.nextSeq() }
                    backupDone(r, b)
                }
                return false
            }
            guard r.backupNext == 0, t.pointee.rc >= 0, let m = r.method,
                  m.pointee.flags & UInt32(CHI_MF_WRITE) != 0, let cr = r.containerRef
            else { return false }
            let go = cr.with { c -> Bool in
                guard c.poolRef.with({ $0.replicas > 1 }), c.node == rt.with({ $0.nodeId }), !r.isPeriodic else {
                    return false
                }
                r.replicaSeq = c.nextSeq()
                return true
            }
            guard go else { return false }
            r.primaryRc = t.pointee.rc
        }
        guard let cr = r.containerRef else { return false }
        let (backups, cid) = cr.with { c in (c.backups, c.id) }
        guard r.backupNext < backups.count else { return false }
        let node = backups[r.backupNext]
        r.backupNext += 1
        r.backupInFlight = true
        rt.with { $0.remote!.forwardBackup(r, container: cid, node: node, from: self) }
        return true
    }

    /// Dynamic scheduling: the module's kSchedule hook rewrites the query. Without a hook,
    /// or if it leaves the query dynamic, the task goes to a container chosen by its id.
    private func schedule(_ r: TaskRecord, _ pool: RuntimePool) {
        let t = r.task
        if let mon = pool.withModule({ $0.vtable.monitor }), let c = pool.local.first {
            r.container = c
            _ = mon(c.state, UInt32(CHI_MONITOR_SCHEDULE), t, r.rctx)
            r.container = nil
        }
        if t.pointee.dom_query.flags & UInt32(CHI_DQ_DYNAMIC) != 0 {
            t.pointee.dom_query = chi_dq_direct_hash(UInt32(CHI_SUBDOMAIN_GLOBAL_CONTAINERS),
                                                     t.pointee.task_id)
        }
    }

    private func fanOut(_ r: TaskRecord, _ cs: ContainerRange, _ iter: UInt32) {
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
        // Replicas are the runtime's own copies (private memory), folded into the original
        // when all are done; each is dispatched once all exist, so none completes early.
        var first: Ref<TaskRecord>?
        var last: Ref<TaskRecord>?
        for i in 0..<n {
            let pt = privateTasks.take(size)!
            let p = UnsafeMutableRawPointer(pt.task)
            p.copyMemory(from: r.task, byteCount: size)
            let t = pt.task
            t.pointee.done = 0
            t.pointee.flags &= ~UInt32(CHI_TASK_PERIODIC | CHI_TASK_FIRE_AND_FORGET)
            t.pointee.dom_query = chi_dq_direct_id(UInt32(CHI_SUBDOMAIN_GLOBAL_CONTAINERS),
                                                   UInt64(cs[i].id))
            r.replicas.append(t)
            r.replicaBlocks.append(Ref(pt))
            let rep = allocRecord(t, off: 0)
            rep.with { rep in
                rep.parentRef = Ref(r)
                rep.poolRef = r.poolRef
                rep.method = r.method
                rep.bulkOwner = r.bulkOwner
                rep.depth = r.depth
                rep.targetIndex = i
                rep.nextRef = nil
            }
            pool.inflightAdd(id, 1)
            if let l = last { l.with { $0.nextRef = rep } } else { first = rep }
            last = rep
        }
        var cur = first
        while let rep = cur {
            cur = rep.with { rep in
                let next = rep.nextRef
                rep.nextRef = nil
                cs.ref(rep.targetIndex).with { dispatch(rep, to: $0) }
                return next
            }
        }
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
        if let map = c.poolRef.with({ $0.withModule { $0.vtable.map_task_to_lane } }) {
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
        let owner = lane.with { $0.ownerId }
        if owner == id {
            enqueue(r)
        } else {
            rt.with { $0.workerRef(owner) }.with { $0.post(.enqueue, r) }
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
        // Every run is timed for the latency histograms (recordRun, Worker+Records.swift).
        let start = chi_ticks()
        r.fiberRef = currentFiberRef
        let top = r.depth == 0
        noteStart(r.depth)
        if top { topRunning += 1 }
        defer { if top { topRunning -= 1 } }
        var rc: CInt
        let mod = pool.moduleRef
        if let fm = mod.with({ $0.handler(t.pointee.method) }) {
            rc = 0
            let e = chi_ffi_call(fm, t, UnsafeMutableRawPointer(r.rctx), resolveBulkForFFI, &rc)
            if e < 0 { rc = e }
        } else {
            rc = mod.with { $0.vtable.run }?(c.state, t, r.rctx) ?? -CInt(CHI_ENOMETHOD)
        }
        r.fiberRef = nil
        recordRun(r, pool, rc: rc, ticks: chi_ticks() &- start)
        t.pointee.runs &+= 1
        if r.isPeriodic && r.parentRef == nil {
            // A client that went while this run was under way cancelled nothing it could see:
            // its periodic tasks end here instead of running for ever.
            if pool.isDestroyed || rt.with({ $0.isStopping }) || !(r.slotRef?.with { $0.isLive } ?? true) {
                complete(r, rc: -CInt(CHI_ESTOPPED))
            } else if takeCancel(r) {
                complete(r, rc: -ECANCELED)
            } else {
                t.pointee.rc = rc
                runtime.publishRun(r)
                // The period was checked on accept; the sum saturates all the same.
                let (due, over) = chi_now_ns().addingReportingOverflow(t.pointee.period_ns)
                r.deadline = over ? UInt64.max : due
                timers.insert(r)
            }
            return
        }
        complete(r, rc: rc)
    }

    /// Fails a task before it reached a pool.
    func fail(_ r: TaskRecord, _ code: CInt) {
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
        rt.with { $0.finish(r, thread: id) }
        freeRecord(r)
    }

    /// Finishes a task with status `rc`: signals its waiter, or folds it into its parent.
    func complete(_ r: TaskRecord, rc: CInt) {
        r.task.pointee.rc = rc
        complete(r)
    }

    func complete(_ r: TaskRecord) {
        if r.method != nil && replicate(r) { return }
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
        rt.with { $0.finish(r, thread: id) }
        freeRecord(r)
    }

    /// One replica finished. Repeat-until-success moves on to the next container on failure;
    /// a broadcast aggregates through the module's kReplicaAgg hook once all are done.
    private func replicaDone(_ rep: TaskRecord, parent p: TaskRecord) {
        if let targets = p.targets {
            let failed = rep.task.pointee.rc < 0
            if failed && p.targetIndex + 1 < targets.count {
                p.targetIndex += 1
                let next = targets[p.targetIndex]
                rep.task.pointee.done = 0
                rep.task.pointee.dom_query = chi_dq_direct_id(
                    UInt32(CHI_SUBDOMAIN_GLOBAL_CONTAINERS), UInt64(next.id))
                p.pool!.inflightAdd(id, 1)
                rep.lane = nil
                if chi_load32(p.pool!.gate) == RuntimePool.Gate.closed {
                    heldSteps.append(.redispatch(Ref(rep), Ref(next)))
                    return
                }
                dispatch(rep, to: next)
                return
            }
            copyOutputs(from: rep.task, to: p.task)
            p.task.pointee.rc = rep.task.pointee.rc
            freeRecord(rep)
            p.dropReplicas()
            complete(p)
            return
        }
        freeRecord(rep)
        guard chi_sub32(p.pending, 1) == 1 else { return }
        if chi_load32(p.pool!.gate) == RuntimePool.Gate.closed {
            heldSteps.append(.aggregate(Ref(p)))
            return
        }
        finishReplicas(p)
    }

    /// The last replica is in: fold them into the original task and complete it.
    func finishReplicas(_ p: TaskRecord) {
        aggregate(p)
        p.dropReplicas()
        complete(p)
    }

    /// Folds replicas into the original task: the module's hook if it has one, else the
    /// first failure's status or the first replica's outputs.
    private func aggregate(_ p: TaskRecord) {
        let pool = p.pool!
        if let mon = pool.withModule({ $0.vtable.monitor }), let c = pool.local.first {
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
