import CChimaera

/// The runtime's private state of one task in flight (the task itself lives in shared memory
/// and is untrusted). Records are owned by workers and recycled through per-worker free
/// lists, so the hot path allocates none.
final class TaskRecord {
    /// The task, inside the segment.
    var task: UnsafeMutablePointer<chi_task_t>
    var taskOff: UInt64 = 0
    // Pools, containers and lanes outlive every record (see RuntimePool.swift), and records
    // are owned by the worker that made them (Worker.allRecords): the links below are `Ref`s,
    // which the task path borrows with `with` at no reference-counting cost. The class-typed
    // accessors further down are for cold paths (each read retains).
    var poolRef: Ref<RuntimePool>?
    var containerRef: Ref<Container>?
    var laneRef: Ref<Lane>?
    /// Intrusive link for lane queues.
    var nextRef: Ref<TaskRecord>?
    /// Submitted by module code inside the runtime (a subtask).
    var isInternal = false
    /// The record of the task this one is a replica of (broadcast and iteration).
    var parentRef: Ref<TaskRecord>?
    /// Replicas of a multi-container task; `pending` counts those not yet done.
    var replicas: [UnsafeMutablePointer<chi_task_t>] = []
    let pending = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    /// For repeat-until-success / iteration: the containers to try, and the current one.
    var targets: [Container] = []
    var targetIndex = 0
    /// Next due time of a periodic task.
    var deadline: UInt64 = 0
    /// The module's method descriptor, resolved at routing.
    var method: UnsafePointer<chi_method_desc_t>?
    /// Why a runtime service failed for this task; handed to the client with the status.
    var errorMessage: String?
    /// Set for a request from another node: where the reply goes.
    var remote: RemoteIncoming?
    /// The fiber running the task (set while it executes).
    var fiberRef: Ref<Fiber>?
    /// chi_rctx_suspend/resume hand-off: 0 running, 1 suspended, 2 resume pending.
    let resumeState = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    /// The task's chi_rctx_t handle: this record, unretained.
    var rctx: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    init(task: UnsafeMutablePointer<chi_task_t>) {
        self.task = task
        pending.initialize(to: 0)
        resumeState.initialize(to: 0)
    }

    deinit {
        pending.deallocate()
        resumeState.deallocate()
    }

    /// The record behind a chi_rctx_t handle.
    @inline(__always)
    static func from(_ rctx: OpaquePointer) -> TaskRecord {
        Unmanaged<TaskRecord>.fromOpaque(UnsafeRawPointer(rctx)).takeUnretainedValue()
    }

    /// Forgets everything so the record can be reused.
    @inline(__always)
    func reset() {
        poolRef = nil
        containerRef = nil
        laneRef = nil
        nextRef = nil
        isInternal = false
        parentRef = nil
        if !replicas.isEmpty { replicas.removeAll(keepingCapacity: true) }
        if !targets.isEmpty { targets.removeAll(keepingCapacity: true) }
        targetIndex = 0
        deadline = 0
        method = nil
        // Storing nil over nil still calls the string's release: test first.
        if errorMessage != nil { errorMessage = nil }
        if remote != nil { remote = nil }
        fiberRef = nil
        pending.pointee = 0
        resumeState.pointee = 0
    }

    var isPeriodic: Bool { task.pointee.flags & UInt32(CHI_TASK_PERIODIC) != 0 }

    // Class-typed views of the links, for cold paths.
    var pool: RuntimePool? {
        get { poolRef?.o }
        set { poolRef = newValue.map { Ref($0) } }
    }
    var container: Container? {
        get { containerRef?.o }
        set { containerRef = newValue.map { Ref($0) } }
    }
    var lane: Lane? {
        get { laneRef?.o }
        set { laneRef = newValue.map { Ref($0) } }
    }
    var parent: TaskRecord? {
        get { parentRef?.o }
        set { parentRef = newValue.map { Ref($0) } }
    }
    var fiber: Fiber? {
        get { fiberRef?.o }
        set { fiberRef = newValue.map { Ref($0) } }
    }
}

/// A binary min-heap of periodic tasks by deadline.
struct TimerHeap {
    private var items: [TaskRecord] = []

    var isEmpty: Bool { items.isEmpty }
    var count: Int { items.count }
    var earliest: UInt64? { items.first?.deadline }

    mutating func insert(_ r: TaskRecord) {
        items.append(r)
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if items[p].deadline <= items[i].deadline { break }
            items.swapAt(p, i)
            i = p
        }
    }

    /// Removes and returns the earliest record if it is due at `now`.
    mutating func popDue(_ now: UInt64) -> TaskRecord? {
        guard let first = items.first, first.deadline <= now else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && items[l].deadline < items[m].deadline { m = l }
                if r < items.count && items[r].deadline < items[m].deadline { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return first
    }

    /// Removes every record matching `pred` and returns them.
    mutating func removeAll(where pred: (TaskRecord) -> Bool) -> [TaskRecord] {
        let gone = items.filter(pred)
        if gone.isEmpty { return [] }
        let keep = items.filter { !pred($0) }
        items = []
        for r in keep { insert(r) }
        return gone
    }
}
