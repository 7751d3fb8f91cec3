import CChimaera

/// The runtime's private state of one task in flight. `task` always points at memory only
/// the runtime writes: a client's task is copied (header and parameters) into the record's
/// own buffer when it is accepted, checked there, run there, and its results copied back when
/// it completes; nothing the runtime decides on is read from shared memory again. Records
/// are owned by workers and recycled through per-worker free lists, so the hot path
/// allocates none.
final class TaskRecord {
    /// The task the runtime works on (private: the record's inline copy, or a private task).
    var task: UnsafeMutablePointer<chi_task_t>
    /// The client that submitted it (its slot), for a task from shared memory.
    var slotRef: Ref<ClientSlot>?
    /// The client's task in shared memory (client tasks only), and its offset.
    var shm: UnsafeMutablePointer<chi_task_t>?
    var shmOff: UInt64 = 0
    /// Whether the parameters go back to the client on completion (false for a task
    /// refused before its size was known to be sound).
    var copyBack = true
    /// The record's own buffer for a client task of up to `inlineBytes`.
    let inline: UnsafeMutableRawPointer
    static let inlineBytes = 256
    /// A private task: an internal task (module code made it; its waiter state is there), or
    /// the record's copy of a large client task, a replica, a request from another node.
    var blockRef: Ref<PrivateTask>?
    /// Whether the record owns `blockRef` (gives it back when recycled).
    var ownsBlock = false
    /// Whose buffers the task's bulk pointers may name: a client's owner id, the runtime's,
    /// or 0 for code inside the runtime (any live buffer).
    var bulkOwner: UInt16 = 0
    /// How deep in a chain of subtasks this task is (0 for a client's task).
    var depth: UInt32 = 0
    var taskOff: UInt64 = 0
    /// The worker that made it (and owns it: records go back there) and its index in that
    /// worker's `allRecords`.
    var owner = 0
    var index = 0
    // Pools, containers and lanes outlive every record (see RuntimePool.swift), and records
    // are owned by the worker that made them (Worker.allRecords): the links below are `Ref`s,
    // which the task path borrows with `with` at no reference-counting cost. The class-typed
    // accessors further down are for cold paths (each read retains).
    var poolRef: Ref<RuntimePool>?
    var containerRef: Ref<Container>?
    var laneRef: Ref<Lane>?
    /// Intrusive link for lane queues.
    var nextRef: Ref<TaskRecord>?
    /// The record of the task this one is a replica of (broadcast and iteration).
    var parentRef: Ref<TaskRecord>?
    /// Replicas of a multi-container task (private tasks this record owns); `pending` counts
    /// those not yet done.
    var replicas: [UnsafeMutablePointer<chi_task_t>] = []
    var replicaBlocks: [Ref<PrivateTask>] = []
    let pending = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    /// For repeat-until-success / iteration: the containers to try, and the current one.
    var targets: ContainerRange?
    /// A changing task of a replicated pool (Worker+Dispatch.swift): the next backup to send
    /// it to, whether a backup has it now, and the primary's status, which its reply keeps.
    var backupNext = 0
    var backupInFlight = false
    var primaryRc: CInt = 0
    /// Its number in its container's sequence of changes (0: none).
    var replicaSeq: UInt64 = 0
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
        inline = UnsafeMutableRawPointer.allocate(byteCount: Self.inlineBytes, alignment: 64)
        pending.initialize(to: 0)
        resumeState.initialize(to: 0)
        replicas.reserveCapacity(4)
        replicaBlocks.reserveCapacity(4)
    }

    deinit {
        inline.deallocate()
        pending.deallocate()
        resumeState.deallocate()
    }

    /// Submitted by module code inside the runtime (a subtask).
    var isInternal: Bool { blockRef != nil && !ownsBlock }

    /// The private task behind an internal task.
    var internalTask: PrivateTask? { isInternal ? blockRef?.o : nil }

    /// The record behind a chi_rctx_t handle.
    @inline(__always)
    static func from(_ rctx: OpaquePointer) -> TaskRecord {
        Unmanaged<TaskRecord>.fromOpaque(UnsafeRawPointer(rctx)).takeUnretainedValue()
    }

    /// Gives back the replicas once they are folded into this task.
    func dropReplicas() {
        for b in replicaBlocks { PrivateTaskPool.give(b.o) }
        replicaBlocks.removeAll(keepingCapacity: true)
        replicas.removeAll(keepingCapacity: true)
    }

    /// Forgets everything so the record can be reused.
    @inline(__always)
    func reset() {
        poolRef = nil
        containerRef = nil
        laneRef = nil
        nextRef = nil
        parentRef = nil
        if ownsBlock, let b = blockRef { PrivateTaskPool.give(b.o) }
        blockRef = nil
        ownsBlock = false
        slotRef = nil
        shm = nil
        shmOff = 0
        copyBack = true
        bulkOwner = 0
        depth = 0
        backupNext = 0
        backupInFlight = false
        primaryRc = 0
        replicaSeq = 0
        if !replicaBlocks.isEmpty {
            for b in replicaBlocks { PrivateTaskPool.give(b.o) }
            replicaBlocks.removeAll(keepingCapacity: true)
        }
        if !replicas.isEmpty { replicas.removeAll(keepingCapacity: true) }
        if targets != nil { targets = nil }
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
