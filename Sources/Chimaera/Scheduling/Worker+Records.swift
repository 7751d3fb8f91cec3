import CChimaera

/// A worker's task records: made on its own thread, recycled through its free list, sent back
/// to their maker when another worker frees them; and what it makes before the first task.
extension Worker {

    /// Records, private tasks and fibers made before the first task: a task lent to another
    /// worker comes back by message, so the steady state needs some slack beyond what one
    /// task in flight uses, and the task path should not be what makes it.
    static let prewarmRecords = 64, prewarmPrivateTasks = 16, prewarmFibers = 2
    nonisolated(unsafe) private static let placeholderTask: UnsafeMutablePointer<chi_task_t> = {
        let t = UnsafeMutablePointer<chi_task_t>.allocate(capacity: 1)
        t.initialize(to: chi_task_t())
        return t
    }()

    func prewarm() {
        for _ in 0..<Self.prewarmRecords {
            let r = TaskRecord(task: Self.placeholderTask)
            r.owner = id
            r.index = allRecords.count
            allRecords.append(r)
            freeRecords.append(Ref(r))
        }
        for size in [PrivateTaskPool.size(ofClass: 0), PrivateTaskPool.size(ofClass: 1)] {
            privateTasks.prewarm(Self.prewarmPrivateTasks, size: size)
        }
        for _ in 0..<min(Self.prewarmFibers, limits.fiberCache, limits.maxFibers) {
            guard let f = try? Fiber(worker: self) else { break }
            f.index = allFibers.count
            allFibers.append(f)
            idleFibers.append(Ref(f))
        }
    }

    /// A record for task `t`, unretained: the worker's `allRecords` owns it.
    @inline(__always)
    func allocRecord(_ t: UnsafeMutablePointer<chi_task_t>, off: UInt64) -> Ref<TaskRecord> {
        if let free = freeRecords.popLast() {
            free.with { r in
                r.task = t
                r.taskOff = off
            }
            return free
        }
        let r = TaskRecord(task: t)
        r.owner = id
        r.index = allRecords.count
        allRecords.append(r)
        r.taskOff = off
        return Ref(r)
    }

    /// Recycles a record; one made by another worker goes back to it (without waking it).
    @inline(__always)
    func freeRecord(_ r: TaskRecord) {
        if r.owner != id {
            runtime.workers[r.owner].post(.recycle, r)
            return
        }
        r.reset()
        if freeRecords.count < Self.recordCache {
            freeRecords.append(Ref(r))
            return
        }
        // Beyond the cache records are freed: a burst's memory goes back.
        let last = allRecords.removeLast()
        if last !== r {
            last.index = r.index
            allRecords[r.index] = last
        }
    }

    /// Counts one run of a method that took `ticks`: the worker's and lane's task count and
    /// busy time, and the pool's per-method counters and histogram (PoolMetrics). Exact, on
    /// every run: the clock is read once before and once after anyway for the histogram.
    @inline(__always)
    func recordRun(_ r: TaskRecord, _ pool: RuntimePool, rc: CInt, ticks: UInt64) {
        tasksRun &+= 1
        busyTicks &+= ticks
        r.laneRef?.with { $0.busyTicks &+= ticks }
        pool.metrics.record(worker: id, method: r.task.pointee.method, rc: rc, ticks: ticks)
    }
}
