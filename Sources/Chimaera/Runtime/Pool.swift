import CChimaera

// Back references (container -> pool, lane -> worker, ...) are unretained `Ref`s: the
// referent always outlives the referrer (the runtime keeps destroyed pools in its retired
// list, and workers live until the runtime ends). Safe `unowned` costs an atomic
// retain/release pair on every access, and so does reading an `unowned(unsafe)` field into a
// local; the task path borrows a `Ref` with `with` instead.

/// A named set of containers of one module.
final class RuntimePool: @unchecked Sendable {
    let id: UInt64
    let name: String
    /// The module's code, as an unretained object pointer read atomically: a hot upgrade
    /// swaps it while other threads read it (the loader keeps every module it loaded alive,
    /// so a reader that saw the old one may still use it).
    private let moduleWord = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    /// The module, retained by the caller.
    var module: Module { moduleRef.o }
    @inline(__always)
    var moduleRef: Ref<Module> {
        Ref(Unmanaged<Module>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(chi_load64(moduleWord)))!))
    }
    /// Runs `body` on the module, borrowed (the task path: no reference counting).
    @inline(__always)
    func withModule<R>(_ body: (Module) throws -> R) rethrows -> R { try moduleRef.with(body) }
    /// Swaps the module's code (an upgrade's commit, while every container is plugged).
    func setModule(_ m: Module) {
        chi_store64(moduleWord, UInt64(UInt(bitPattern: Unmanaged.passUnretained(m).toOpaque())))
    }
    /// Containers each node holds, and the parameters the pool was created with (a node that
    /// joins later creates its share from these).
    var containersPerNode = 1
    var createParams: [UInt8] = []
    /// Copies of each container (1: unreplicated): the primary on `Container.node`, backups
    /// on the next `replicas - 1` nodes of the cluster (wrapping).
    var replicas = 1
    /// Nodes in the cluster when the pool was made (backup places wrap around it).
    var clusterNodes = 1

    /// The backups' nodes of a container whose primary is on `primary`, in forwarding order.
    func backupNodes(of primary: UInt32) -> [UInt32] {
        guard replicas > 1, clusterNodes > 1 else { return [] }
        return (1..<replicas).map { k in UInt32((Int(primary) - 1 + k) % clusterNodes) + 1 }
    }
    /// Every container, by id (on every node: those elsewhere have no state and no lanes).
    var containers: [Container] = []
    /// The containers on this node, in id order.
    var local: [Container] = []
    /// Set once destruction begins; tasks arriving after it fail with CHI_ENOPOOL.
    let destroyed = UnsafeMutablePointer<UInt32>.allocate(capacity: 2)
    /// The plug of a hot upgrade (Runtime+Upgrade.swift), in the word after `destroyed`.
    /// Open: tasks flow. Nested: new client tasks wait (in the worker that routed them) and
    /// lanes run only subtasks, so what is running can finish. Closed: nothing of the pool
    /// starts or is routed; its code and state are being swapped.
    var gate: UnsafeMutablePointer<UInt32> { destroyed + 1 }
    enum Gate {
        static let open: UInt32 = 0, nested: UInt32 = 1, closed: UInt32 = 2
    }
    /// Round-robin cursor for choose-one iteration.
    let cursor = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    /// Tasks of this pool in flight, counted per worker without atomics (a task may start on
    /// one worker and end on another, so one slot can go negative; the sum is what counts).
    /// One cache line per worker: a locked counter shared by workers cost a full barrier per
    /// task on the hot path.
    private let inflightSlots: UnsafeMutablePointer<Int64>
    private static let slotStride = 8

    @inline(__always)
    func inflightAdd(_ worker: Int, _ d: Int64) {
        let p = inflightSlots + worker * Self.slotStride
        chi_store64_relaxed(UnsafeMutableRawPointer(p).assumingMemoryBound(to: UInt64.self),
                            UInt64(bitPattern: p.pointee &+ d))
    }

    /// Tasks in flight (a racy sum, exact once the workers have gone quiet).
    var inflight: Int64 {
        var n: Int64 = 0
        for w in 0..<workerCount {
            n &+= Int64(bitPattern: chi_load64_relaxed(UnsafeMutableRawPointer(inflightSlots + w * Self.slotStride)
                .assumingMemoryBound(to: UInt64.self)))
        }
        return n
    }
    private let workerCount: Int
    /// The in-flight slot of the network thread, which finishes remote replies itself.
    var networkSlot: Int { workerCount - 1 }
    /// Acknowledgements of destruction: one per worker when its timers are purged, one more
    /// when its pollers are dropped (after the in-flight tasks drained).
    let purgeAcks = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    /// Tasks, errors and run times per method and worker (Metrics/PoolMetrics.swift).
    let metrics: PoolMetrics

    init(id: UInt64, name: String, module: Module, workers: Int) {
        self.id = id
        self.name = name
        metrics = PoolMetrics(methodIds: module.methodIdLimit, workers: workers)
        // One slot per worker, and one for the network thread (RemoteQueue.networkSlot).
        workerCount = max(1, workers) + 1
        inflightSlots = .allocate(capacity: workerCount * Self.slotStride)
        inflightSlots.initialize(repeating: 0, count: workerCount * Self.slotStride)
        moduleWord.initialize(to: UInt64(UInt(bitPattern: Unmanaged.passUnretained(module).toOpaque())))
        destroyed.initialize(repeating: 0, count: 2)
        cursor.initialize(to: 0)
        purgeAcks.initialize(to: 0)
    }

    var isDestroyed: Bool { chi_load32(destroyed) != 0 }
}

/// One shard of a pool: the module's state plus the lanes its tasks run on.
final class Container: @unchecked Sendable {
    let poolRef: Ref<RuntimePool>
    var pool: RuntimePool { poolRef.o }
    let id: UInt32
    /// The node that holds it: changed by a migration (Runtime+Migrate.swift) while other
    /// threads route by it, so a word read atomically.
    private let nodeWord = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    @inline(__always)
    var node: UInt32 { chi_load32(nodeWord) }
    func setNode(_ n: UInt32) { chi_store32(nodeWord, n) }
    /// How many times it moved: a placement is applied only over an older one.
    var placementVersion: UInt32 = 0
    var state: UnsafeMutableRawPointer?
    /// The nodes of its backups in a replicated pool, in forwarding order: fixed when the
    /// pool is made (a migration moves the primary only).
    var backups: [UInt32] = []
    /// This node's backup copy of the container, when it is one of its backups: its own
    /// state and lanes, fed only with CHI_TASK_REPLICA copies from the primary.
    var shadow: Container?
    /// Changing tasks applied: on a primary, its sequence (the last number handed out; the
    /// backups apply in this order); on a backup, how many it applied without error. Atomic:
    /// the lanes of one container may run on several workers.
    private let seqWord = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    var replicaSeq: UInt64 { chi_load64(seqWord) }
    /// The next sequence number (the first is 1).
    func nextSeq() -> UInt64 { chi_add64(seqWord, 1) &+ 1 }
    /// The order a backup applies its primary's changes in (set on backups only).
    var order: BackupOrder?
    /// Pollers the module registered in create; handed to the lanes' workers once the pool
    /// is published.
    var pollers: [Poller] = []
    /// Set while an upgrade hook builds the container's new state: the lanes it asks for
    /// exist already (they carry over).
    var rebuilding = false
    /// Set while an upgrade or migrate_in hook builds a state: the pollers it registers wait
    /// in `pendingPollers` until the commit hands them to the workers.
    var collectingPollers = false
    var pendingPollers: [Poller] = []
    /// Lanes of every group, concatenated; `groups` maps a group id to its range (a short
    /// list searched linearly: a container has a handful of groups).
    var lanes: [Lane] = []
    var groups: [(id: UInt32, range: Range<Int>)] = []
    let runtimeRef: Ref<Runtime>
    var runtime: Runtime { runtimeRef.o }

    init(pool: RuntimePool, id: UInt32, node: UInt32, runtime: Runtime) {
        poolRef = Ref(pool)
        self.id = id
        nodeWord.initialize(to: node)
        seqWord.initialize(to: 0)
        runtimeRef = Ref(runtime)
    }

    /// The container's C handle.
    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    static func from(_ h: OpaquePointer) -> Container {
        Unmanaged<Container>.fromOpaque(UnsafeRawPointer(h)).takeUnretainedValue()
    }

    /// The container behind a C handle, unretained (see `Ref`).
    @inline(__always)
    static func ref(_ h: OpaquePointer) -> Ref<Container> {
        Ref(Unmanaged<Container>.fromOpaque(UnsafeRawPointer(h)))
    }

    /// Adds a lane group; lanes are spread over the workers of the matching latency class.
    func addLanes(group: UInt32, count: Int, prio: UInt32) throws(ChiError) {
        if rebuilding {
            // An upgrade keeps the lanes (tasks wait in them); it cannot reshape them.
            if let r = range(of: group), r.count == count { return }
            throw ChiError(EINVAL, "an upgrade hook asked for lane group \(group) with \(count) lanes; container \(id) of pool \(pool.name) keeps the lanes it has")
        }
        guard range(of: group) == nil else {
            throw ChiError(EINVAL, "lane group \(group) already exists in container \(id) of pool \(pool.name)")
        }
        guard count > 0 && count <= 1024 else {
            throw ChiError(EINVAL, "lane group \(group): count \(count) is not in 1...1024")
        }
        let start = lanes.count
        for i in 0..<count {
            let w = runtime.workerFor(prio: prio)
            lanes.append(Lane(container: self, group: group, index: start + i, prio: prio, worker: w))
        }
        groups.append((group, start..<(start + count)))
    }

    /// Lane `i`, unretained (an array element read into a local would be retained).
    @inline(__always)
    func laneRef(_ i: Int) -> Ref<Lane> {
        lanes.withUnsafeBufferPointer { Ref(Unmanaged.passUnretained($0[i])) }
    }

    @inline(__always)
    func range(of group: UInt32) -> Range<Int>? {
        for g in groups where g.id == group { return g.range }
        return nil
    }

    /// The lane of `group` for `hash`.
    @inline(__always)
    func lane(group: UInt32, hash: UInt64) -> Int? {
        guard let r = range(of: group) else { return nil }
        return r.lowerBound + Int(hash % UInt64(r.count))
    }

    /// The lane of `group` with the fewest queued tasks.
    func leastLoaded(group: UInt32) -> Int? {
        guard let r = range(of: group) else { return nil }
        var best = r.lowerBound
        var bestLoad = Int.max
        for i in r {
            let l = lanes[i].load
            if l < bestLoad { best = i; bestLoad = l }
        }
        return best
    }
}

/// A FIFO of tasks inside a container, owned by exactly one worker at a time (only it touches
/// the queue; others read the load counter). Subtasks (depth > 0) queue apart from clients'
/// tasks and run first: finishing work already started frees fibers before new work takes
/// them. Each of the two queues is strictly FIFO.
///
/// A lane moves between workers by messages (Worker+Lanes.swift), never by a lock:
/// `ownerId` is where tasks are dispatched, `queueOwnerId` the worker allowed to touch the
/// queue. They differ only during a move, while the old owner still holds the queue and the
/// new one collects what arrives in `inbound`, to be appended after the queue it is handed.
final class Lane: @unchecked Sendable {
    let containerRef: Ref<Container>
    var container: Container { containerRef.o }
    let group: UInt32
    let index: Int
    let prio: UInt32
    /// The worker tasks are dispatched to.
    let ownerWord = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    /// The worker that holds the queue.
    let queueOwnerWord = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    /// The pool's gate (RuntimePool.Gate), read by the lane's worker before it runs a task.
    let gate: UnsafeMutablePointer<UInt32>
    private let runtimeRef: Ref<Runtime>
    private var top = RecordQueue()
    private var nested = RecordQueue()
    /// Tasks that reached the new owner during a move, before it got the queue.
    var inbound = RecordQueue()
    var inboundCount = 0
    /// Whether its queue owner is handing it to another worker (it does not run it then).
    var moving = false
    /// Queued tasks, read racily by other workers for least-loaded mapping.
    let queued = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    var tasksRun: UInt64 = 0
    var busyTicks: UInt64 = 0
    var isActive = false
    /// Moves so far, and when the last one ended (statistics; written by the new owner).
    var moves: UInt64 = 0
    var lastMoveNs: UInt64 = 0

    init(container: Container, group: UInt32, index: Int, prio: UInt32, worker: Worker) {
        containerRef = Ref(container)
        gate = container.pool.gate
        self.group = group
        self.index = index
        self.prio = prio
        runtimeRef = Ref(worker.runtime)
        ownerWord.initialize(to: UInt32(worker.id))
        queueOwnerWord.initialize(to: UInt32(worker.id))
        queued.initialize(to: 0)
    }

    /// The worker tasks go to now.
    @inline(__always)
    var ownerId: Int { Int(chi_load32(ownerWord)) }
    @inline(__always)
    var queueOwnerId: Int { Int(chi_load32(queueOwnerWord)) }
    /// The owner, unretained.
    var workerRef: Ref<Worker> { runtimeRef.with { $0.workerRef(ownerId) } }
    var worker: Worker { workerRef.o }

    var load: Int { Int(chi_load64_relaxed(queued)) }

    @inline(__always)
    private func count(_ d: UInt64) { chi_store64_relaxed(queued, chi_load64_relaxed(queued) &+ d) }

    /// Queues a task (queue owner only).
    @inline(__always)
    func push(_ r: TaskRecord) {
        if r.depth == 0 { top.push(r) } else { nested.push(r) }
        count(1)
    }

    /// Appends what arrived during the move, after the queue handed over (the new owner,
    /// once it holds the queue).
    func takeInbound() {
        while let r = inbound.pop() {
            r.with { if $0.depth == 0 { top.push($0) } else { nested.push($0) } }
        }
        count(UInt64(inboundCount))
        inboundCount = 0
    }

    /// Puts back a task that could not start, ahead of the others of its queue.
    func pushFront(_ r: Ref<TaskRecord>) {
        if r.with({ $0.depth }) == 0 { top.pushFront(r) } else { nested.pushFront(r) }
        count(1)
    }

    /// The next task to run, unretained (its worker owns it): subtasks first.
    @inline(__always)
    func pop() -> Ref<TaskRecord>? {
        guard let r = nested.pop() ?? top.pop() else { return nil }
        count(0 &- 1)
        return r
    }

    /// The oldest queued subtask, if any.
    func popNested() -> Ref<TaskRecord>? {
        guard let r = nested.pop() else { return nil }
        count(0 &- 1)
        return r
    }

    /// Takes every queued task (shutdown).
    func popAll() -> [Ref<TaskRecord>] {
        var out: [Ref<TaskRecord>] = []
        while let r = pop() { out.append(r) }
        while let r = inbound.pop() { out.append(r) }
        inboundCount = 0
        return out
    }
}

/// An intrusive FIFO of records (through `nextRef`).
struct RecordQueue {
    private var head: Ref<TaskRecord>?
    private var tail: Ref<TaskRecord>?

    @inline(__always)
    mutating func push(_ r: TaskRecord) {
        r.nextRef = nil
        let ref = Ref(r)
        if let t = tail { t.with { $0.nextRef = ref } } else { head = ref }
        tail = ref
    }

    mutating func pushFront(_ r: Ref<TaskRecord>) {
        r.with { $0.nextRef = head }
        head = r
        if tail == nil { tail = r }
    }

    @inline(__always)
    mutating func pop() -> Ref<TaskRecord>? {
        guard let h = head else { return nil }
        let next = h.with { r in
            let n = r.nextRef
            r.nextRef = nil
            return n
        }
        head = next
        if next == nil { tail = nil }
        return h
    }
}

/// A module's poller, run by each worker that owns a lane of its container.
package final class Poller: @unchecked Sendable {
    /// wait(arg, worker, doorbell, seq, timeout_ns): see chi_container_add_waiting_poller.
    package typealias WaitFn = @convention(c) (UnsafeMutableRawPointer?, UInt32, UnsafeMutablePointer<UInt32>?, UInt32, UInt64) -> CInt
    let fn: @convention(c) (UnsafeMutableRawPointer?, UInt32) -> CInt
    let arg: UnsafeMutableRawPointer?
    /// Lets the worker sleep while only this poller's operations are in flight.
    let wait: WaitFn?
    unowned(unsafe) let pool: RuntimePool

    init(fn: @escaping @convention(c) (UnsafeMutableRawPointer?, UInt32) -> CInt,
         arg: UnsafeMutableRawPointer?, pool: RuntimePool, wait: WaitFn? = nil) {
        self.fn = fn
        self.arg = arg
        self.pool = pool
        self.wait = wait
    }
}

/// A backup's queue of its primary's changes: they run one at a time, strictly in the
/// primary's sequence; one that arrives early waits for those before it. A number that never
/// comes (its request was lost with a connection) is skipped once a later one has waited
/// `gapNs`, so a backup is never stuck for good (the primary's task failed or timed out then).
final class BackupOrder: @unchecked Sendable {
    let lock = Mutex()
    /// The last sequence number done (applied or failed).
    var done: UInt64 = 0
    var running = false
    var parked: [UInt64: TaskRecord] = [:]
    /// When the oldest parked change arrived.
    var parkedSince: UInt64 = 0
    static let gapNs: UInt64 = 3_000_000_000
}
