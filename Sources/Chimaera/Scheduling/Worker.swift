import CChimaera
import CNuma
import Glibc

/// A runtime thread. It owns its lanes, fibers, timers and task records (shared nothing);
/// other threads reach it only through its ingress rings (clients) and its inbox (workers),
/// and wake it through its doorbell. It spins for `spinNs` when idle, then sleeps on a futex,
/// so an idle runtime burns no CPU.
final class Worker: @unchecked Sendable {
    enum Kind: String { case lowLatency = "low_latency", highLatency = "high_latency" }

    let id: Int
    let kind: Kind
    /// The runtime, unretained (see `Ref`): the task path borrows it with `rt.with`.
    let rt: Ref<Runtime>
    var runtime: Runtime { rt.o }
    let doorbell: UnsafeMutablePointer<chi_doorbell_t>
    let doorbellSeq: UnsafeMutablePointer<UInt32>
    let doorbellSleeping: UnsafeMutablePointer<UInt32>
    /// The submission rings of attached clients this worker drains (changed only by attach
    /// and detach messages; a raw buffer so the poll loop does not retain an array).
    var clientRings: [ClientRing] = [] {
        didSet {
            ringBuf.deallocate()
            ringBuf = .allocate(capacity: clientRings.count)
            _ = ringBuf.initialize(from: clientRings)
        }
    }
    private(set) var ringBuf = UnsafeMutableBufferPointer<ClientRing>.allocate(capacity: 0)
    /// Messages from other workers: an object pointer with a kind in its low bits.
    let inbox: ShmRing
    private let inboxMemory: UnsafeMutableRawPointer
    /// The worker's own context while a fiber runs.
    let schedCtx = UnsafeMutablePointer<chi_fiber_ctx_t>.allocate(capacity: 1)
    var currentFiberRef: Ref<Fiber>?
    var currentFiber: Fiber? { currentFiberRef?.o }
    var cpu: Int32 = -1
    let spinNs: UInt64

    /// Private tasks (subtasks, replicas, large copies) made and reused on this worker.
    private(set) var privateTasks: PrivateTaskPool!
    let limits: RuntimeLimits
    let heapOff: UInt64
    let spans: SpanMap
    let segBase: UnsafeMutableRawPointer

    var activeLanes: [Ref<Lane>] = []
    /// Lanes this worker is handing to another (see Worker+Lanes), and lanes it took.
    var movingLanes: [LaneMove] = []
    var lanesAdopted: UInt64 = 0
    var ready: [Ref<Fiber>] = []
    private var readyNext: [Ref<Fiber>] = []
    var timers = TimerHeap()
    /// Every record and fiber this worker made (they are reused, never freed); the queues
    /// below refer to them unowned.
    /// Every record and fiber the worker made (Worker+Records).
    var allRecords: [TaskRecord] = []
    var allFibers: [Fiber] = []
    var freeRecords: [Ref<TaskRecord>] = []
    var idleFibers: [Ref<Fiber>] = []
    /// Fibers without a stack (given back beyond the cache), reused before new ones.
    var parkedFibers: [Ref<Fiber>] = []
    /// Fibers with a stack.
    var fiberCount: Int { allFibers.count - parkedFibers.count }
    /// Clients' tasks (depth 0) running on this worker's fibers, and how deep the subtasks
    /// seen lately went: a client task starts only while every chain running could still
    /// grow that deep with the fibers left (see `admitsTopLevel`).
    var topRunning = 0
    var depthEstimate: UInt32 = 8
    var depthWindowMax: UInt32 = 0
    var depthWindowStarts = 0
    /// Free records kept beyond what is in flight; more are freed (their memory returns).
    static let recordCache = 4096
    /// Since when a task has waited for a fiber (0: none waits), and the fiber switches seen
    /// then: if none happen for `starvedNs`, every fiber waits on work that needs a fiber.
    var starvedSince: UInt64 = 0
    var switchesAtStarve: UInt64 = 0
    var switches: UInt64 = 0
    static let starvedNs: UInt64 = 100_000_000
    /// Ring entries taken (and their tasks prefetched) before the first is accepted.
    static let acceptBatch = 8
    /// Adaptive spinning (see noteLook): the last look at the clock while polling, until when
    /// the CPU counts as contended, and how often the worker found itself preempted.
    var lastLook: UInt64 = 0
    var contendedUntil: UInt64 = 0
    var preemptions: UInt64 = 0
    static let preemptedNs: UInt64 = 200_000
    static let contendedForNs: UInt64 = 100_000_000
    static let contendedSpinNs: UInt64 = 5_000
    /// Idle fibers a sleeping worker keeps mapped.
    static let idleFibersAsleep = 1
    /// Cancel requests for periodic tasks not found among the timers (they were running or
    /// queued); matched when the task is rearmed. Bounded: the oldest go first.
    var pendingCancels: [(owner: UInt16, off: UInt64)] = []
    /// Entries refused from client rings: not a task of that client.
    var badTasks: UInt64 = 0
    let exiting = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    private let passWord: UnsafeMutablePointer<UInt64> = {
        let p = UnsafeMutablePointer<UInt64>.allocate(capacity: 8) // a line of its own
        p.initialize(repeating: 0, count: 8)
        return p
    }()
    var thread = pthread_t()

    // Statistics, written by this worker only.
    var tasksRun: UInt64 = 0
    /// Tasks a lane may run per pass on a worker without pollers (see runLanes).
    static let laneBatch = 16
    var busyTicks: UInt64 = 0
    var sleeps: UInt64 = 0

    /// The last pass did nothing but find operations in flight on pollers.
    var ioOnly = false
    /// The one busy poller of the last pass, when it can sleep (chi_container_add_waiting_poller).
    var ioWaiter: Poller?
    /// Frames for other nodes were batched this pass (RemoteQueue.flush sends them).
    var remoteDirty = false
    /// Until then the worker spins `remoteSpinNs` before sleeping: it has been sending or
    /// serving tasks of other nodes, whose next one comes a network round trip later, longer
    /// than the usual spin (an adaptive window: it widens only while remote traffic flows).
    var remoteSpinUntil: UInt64 = 0
    static let remoteSpinNs: UInt64 = 200_000
    /// How long a worker polls I/O in flight before sleeping in the poller's wait: a device
    /// that completes within this keeps its worker polling (waking from a sleep costs tens of
    /// microseconds per completion here, measured as 25% less sequential bandwidth), a slower
    /// one (a flush, a disk) lets it sleep instead of burning the CPU.
    static let ioSpinNs: UInt64 = 1_000_000

    /// Pollers of containers with lanes here (I/O modules reap completions through them).
    var pollers: [Poller] = []
    /// Client tasks of plugged pools, waiting for the pool to open (Worker+Plug.swift).
    var held = RecordQueue()
    var heldCount = 0
    var heldPools: [UInt64] = []
    /// Replica steps that would run a module hook of a pool whose gate is closed (its code or
    /// states are being swapped or moved): a broadcast's aggregation, a repeat-until-success
    /// retry on the next container. Run by `releaseHeld` once the pool opens.
    var heldSteps: [HeldStep] = []

    static let inboxCapacity = 1 << 16
    /// How long an idle worker spins before it starts yielding its CPU now and then.
    static let yieldAfterNs: UInt64 = 2_000
    /// A message is an object pointer (16-byte aligned) with its kind in the low four bits.
    static let messageMask: UInt64 = 15
    enum Message: UInt64 {
        case enqueue = 0, resume = 1, purge = 2, addPoller = 3
        /// Runs a closure on the worker's thread (WorkerCall, Worker+Plug.swift).
        case call = 4
        /// A record back from another node, outputs written: finish it.
        case remoteDone = 5
        /// A request from another node (a retained RemoteIncoming): route it.
        case remoteSubmit = 6
        /// A record the network thread finished: back to the free list (sent without waking
        /// the worker; it is picked up on the next pass).
        case recycle = 7
        /// A client attached (its ClientSlot): drain the rings it gave this worker.
        case attachClient = 8
        /// A client went: stop draining its rings, cancel its timers, acknowledge.
        case detachClient = 9
        /// Cancel a client's periodic task (a retained CancelRequest).
        case cancel = 10
        /// A subtask from a thread that is not a worker (a PrivateTask): route it.
        case internalSubmit = 11
        /// Move a lane to another worker (a retained LaneMove; see Worker+Lanes).
        case moveLane = 12
        /// A lane changes owner: answer its old owner (retained LaneMove).
        case laneBarrier = 13
        /// A worker answered the barrier of a lane this worker is handing off.
        case laneBarrierAck = 14
        /// Take the queue of a lane that moved here.
        case adoptLane = 15
    }

    init(id: Int, kind: Kind, runtime: Runtime, doorbell: UnsafeMutablePointer<chi_doorbell_t>,
         spinNs: UInt64, spans: SpanMap)
    {
        self.id = id
        self.kind = kind
        rt = Ref(runtime)
        limits = runtime.config.limits
        heapOff = runtime.segment.heapOff
        segBase = runtime.segment.base
        self.spans = spans
        self.doorbell = doorbell
        let raw = UnsafeMutableRawPointer(doorbell)
        doorbellSeq = (raw + MemoryLayout<chi_doorbell_t>.offset(of: \.seq)!)
            .assumingMemoryBound(to: UInt32.self)
        doorbellSleeping = (raw + MemoryLayout<chi_doorbell_t>.offset(of: \.sleeping)!)
            .assumingMemoryBound(to: UInt32.self)
        self.spinNs = spinNs
        inboxMemory = UnsafeMutableRawPointer.allocate(
            byteCount: ShmRing.bytes(capacity: Self.inboxCapacity), alignment: 64)
        ShmRing.format(at: inboxMemory, capacity: Self.inboxCapacity, owner: UInt32(id))
        inbox = ShmRing(at: inboxMemory)
        exiting.initialize(to: 0)
        readyNext.reserveCapacity(64)
        ready.reserveCapacity(64)
        activeLanes.reserveCapacity(64)
        freeRecords.reserveCapacity(1024)
        idleFibers.reserveCapacity(limits.fiberCache + 1)
        privateTasks = PrivateTaskPool(maxTaskSize: limits.maxTaskSize + PrivateTask.prefix,
                                       owner: Unmanaged.passUnretained(self).toOpaque())
    }

    /// The worker running on this thread, if any.
    static var current: Worker? {
        guard let p = chi_tls_worker() else { return nil }
        return Unmanaged<Worker>.fromOpaque(p).takeUnretainedValue()
    }

    // MARK: Thread

    func start() throws(ChiError) {
        let arg = Unmanaged.passUnretained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            Unmanaged<Worker>.fromOpaque(arg!).takeUnretainedValue().run()
            return nil
        }, arg)
        guard rc == 0 else { throw ChiError(rc, "cannot start worker \(id): \(Sys.errnoText(rc))") }
        threadStarted = true
    }

    func join() { if threadStarted { pthread_join(thread, nil) } }
    private var threadStarted = false

    /// Pins the thread to `cpu` through libnuma, which also tells which memory node it is on.
    func pin(to cpu: Int32) {
        guard numa_available() >= 0, let mask = numa_allocate_cpumask() else {
            if chi_pin_thread(cpu) == 0 { self.cpu = cpu }
            return
        }
        defer { numa_free_cpumask(mask) }
        numa_bitmask_setbit(mask, UInt32(cpu))
        if numa_sched_setaffinity(0, mask) == 0 { self.cpu = cpu }
    }

    private func run() {
        chi_tls_set_worker(Unmanaged.passUnretained(self).toOpaque())
        chi_thread_name("chi-worker-\(id)")
        if cpu >= 0 { pin(to: cpu) }
        prewarm()
        var idleSince: UInt64 = 0
        var ioSince: UInt64 = 0
        var spins: UInt32 = 0
        while chi_load32_relaxed(exiting) == 0 {
            if pollOnce() {
                idleSince = 0
                spins = 0
                // Only I/O in flight: spin as when idle, then sleep in the poller's wait
                // (woken by a completion or by the doorbell) instead of burning the CPU.
                if ioOnly, let p = ioWaiter {
                    let now = chi_now_ns()
                    let contended = noteLook(now)
                    if ioSince == 0 {
                        ioSince = now
                    } else if now &- ioSince >= (contended ? Self.contendedSpinNs : max(spinNs, Self.ioSpinNs)) {
                        sleep(now: now, in: p)
                        ioSince = 0
                    }
                } else {
                    ioSince = 0
                    lastLook = 0
                }
                continue
            }
            // Reading the clock costs more than a pass over empty queues: look every 16th,
            // so the short gaps between a synchronous client's tasks never read it.
            spins &+= 1
            if spins & 15 != 0 {
                chi_cpu_relax()
                continue
            }
            let now = chi_now_ns()
            let window = noteLook(now) ? Self.contendedSpinNs : (now < remoteSpinUntil ? Self.remoteSpinNs : spinNs)
            if idleSince == 0 {
                idleSince = now
            } else if now &- idleSince >= window {
                sleep(now: now)
                idleSince = 0
            } else if spins & 63 == 0 && now &- idleSince >= Self.yieldAfterNs {
                // A client may be waiting for this CPU (it is not pinned away from ours):
                // yield now and then so an idle spin never starves it. Not in the first
                // microseconds: a task arriving during the system call waits for it.
                sched_yield()
            } else {
                chi_cpu_relax()
            }
        }
        chi_tls_set_worker(nil)
    }

    /// Notes a look at the clock while the worker only polls (no task ran since the last
    /// one). A gap far longer than a pass means the CPU was taken away meanwhile: other work
    /// wants it, so for a while this worker spins only briefly before sleeping (in a poller's
    /// wait when I/O is in flight, where a completion wakes it at once). Returns whether the
    /// CPU counts as contended now.
    @inline(__always)
    private func noteLook(_ now: UInt64) -> Bool {
        if lastLook != 0 && now &- lastLook > Self.preemptedNs {
            contendedUntil = now &+ Self.contendedForNs
            preemptions &+= 1
        }
        lastLook = now
        return now < contendedUntil
    }

    /// Passes of the loop so far (read by other threads: a worker that passed holds nothing
    /// it read before, see Runtime.reclaimRetired).
    var passes: UInt64 { chi_load64_relaxed(passWord) }

    /// One pass over every source of work. Returns whether anything was done.
    @inline(__always)
    func pollOnce() -> Bool {
        chi_store64_relaxed(passWord, chi_load64_relaxed(passWord) &+ 1)
        var did = false
        if drainInbox() { did = true }
        if drainIngress() { did = true }
        if runReady() { did = true }
        if runLanes() { did = true }
        if !timers.isEmpty && fireTimers(chi_now_ns()) { did = true }
        ioOnly = false
        if !pollers.isEmpty && runPollers() {
            ioOnly = !did
            did = true
        }
        if remoteDirty {
            remoteSpinUntil = chi_now_ns() &+ 10_000_000
            runtime.remote!.flush(self)
        }
        return did
    }

    private var hasWork: Bool {
        if !inbox.isEmpty || !ready.isEmpty || !activeLanes.isEmpty { return true }
        for r in ringBuf where !r.ring.isEmpty { return true }
        return false
    }

    /// Sleeps until the doorbell rings or the next timer is due: on the doorbell's futex, or,
    /// when poller `p` has operations in flight, in its wait hook, which also returns when one
    /// completes (then at most 10 ms, so a lost wake-up costs little). The doorbell protocol:
    /// announce the sleep, look for work once more, then block on the value seen before.
    private func sleep(now: UInt64, in p: Poller? = nil) {
        let seq = chi_load32(doorbellSeq)
        chi_store32(doorbellSleeping, 1)
        chi_fence()
        if hasWork || chi_load32_relaxed(exiting) != 0 {
            chi_store32(doorbellSleeping, 0)
            return
        }
        // Going idle: the stacks cached for bursts go back (a few stay for the next task), so
        // an idle runtime's memory and mappings are what they were before the burst.
        while idleFibers.count > Self.idleFibersAsleep, let f = idleFibers.popLast() {
            f.with { $0.park() }
            parkedFibers.append(f)
        }
        var timeout: UInt64? = p == nil ? nil : 10_000_000
        if let due = timers.earliest { timeout = min(timeout ?? .max, due > now ? due - now : 0) }
        if timeout != 0 {
            sleeps &+= 1
            if let wait = p?.wait {
                _ = wait(p!.arg, UInt32(id), doorbellSeq, seq, timeout!)
            } else {
                _ = chi_futex_wait(doorbellSeq, seq, timeout.map { Int64($0) } ?? -1)
            }
        }
        chi_store32(doorbellSleeping, 0)
        lastLook = 0 // the time asleep is no preemption
        runtime.orchestrator.workerWoke()
    }

    /// Wakes the worker if it sleeps. Callable from any thread or process.
    @inline(__always)
    static func ring(seq: UnsafeMutablePointer<UInt32>, sleeping: UnsafeMutablePointer<UInt32>) {
        chi_fence()
        if chi_load32_relaxed(sleeping) != 0 {
            _ = chi_add32(seq, 1)
            _ = chi_futex_wake(seq, 1)
        }
    }

    func wake() { Self.ring(seq: doorbellSeq, sleeping: doorbellSleeping) }

    /// Asks the worker to leave its loop.
    func stop() {
        chi_store32(exiting, 1)
        _ = chi_add32(doorbellSeq, 1)
        _ = chi_futex_wake(doorbellSeq, 1)
    }

    // MARK: Lanes, fibers, timers

    private func runLanes() -> Bool {
        if activeLanes.isEmpty { return false }
        // Tasks per lane per pass. With pollers, one, so that their completions are reaped
        // between tasks; without, a batch saves a whole pass per task.
        let batch = pollers.isEmpty ? Self.laneBatch : 1
        var i = 0
        var starved = false
        while i < activeLanes.count && !starved {
            let ran = activeLanes[i].with { lane in
                var n = 0
                var held = false
                // A plugged pool (a hot upgrade): only subtasks run, or nothing; the lane stays
                // active with what it holds and runs it once unplugged.
                let gate = chi_load32(lane.gate)
                if gate != RuntimePool.Gate.open {
                    if gate == RuntimePool.Gate.nested, let r = lane.popNested() {
                        if r.with({ runOnFiber($0) }) {
                            lane.tasksRun &+= 1
                            return true
                        }
                        lane.pushFront(r)
                        starved = true
                        return true
                    }
                    if lane.load > 0 { return true }
                    lane.isActive = false
                    return false
                }
                while n < batch, let r = lane.pop() {
                    let depth = r.with { $0.depth }
                    if depth == 0 && !admitsTopLevel() {
                        // Chains already running may need every fiber left: new client
                        // tasks wait (in their lane) until some finish.
                        lane.pushFront(r)
                        held = true
                        break
                    }
                    if !r.with({ runOnFiber($0) }) {
                        // No fiber to be had: the task waits at the head of its lane.
                        lane.pushFront(r)
                        starved = true
                        break
                    }
                    lane.tasksRun &+= 1
                    n += 1
                }
                if n == 0 && !starved && !held { lane.isActive = false }
                return n > 0 || starved || held
            }
            if ran {
                i += 1
            } else {
                activeLanes.swapAt(i, activeLanes.count - 1)
                activeLanes.removeLast()
            }
        }
        if starved {
            let now = chi_now_ns()
            if starvedSince == 0 || switches != switchesAtStarve {
                starvedSince = now
                switchesAtStarve = switches
            } else if now &- starvedSince >= Self.starvedNs && ready.isEmpty {
                breakStarvation()
                starvedSince = 0
            }
        } else {
            starvedSince = 0
        }
        return true
    }

    /// Every fiber waits and nothing has moved for a while: the work they wait for needs a
    /// fiber too (chains of subtasks wider or deeper than the fibers). Fail the subtasks that
    /// wait for a fiber; their parents resume with the error and the chains unwind.
    private func breakStarvation() {
        var failed = 0
        for l in activeLanes {
            while let r = l.with({ $0.popNested() }) {
                r.with { r in
                    r.errorMessage = "no fiber for a subtask: all \(allFibers.count) fibers of worker \(id) (runtime.max_fibers) wait on work that needs one"
                    complete(r, rc: -CInt(CHI_ELIMIT))
                }
                failed += 1
            }
        }
        Log.warn("worker \(id): every fiber waited on subtasks that had none; \(failed) subtasks failed with CHI_ELIMIT (raise runtime.max_fibers, or nest less)")
    }

    private func runReady() -> Bool {
        if ready.isEmpty { return false }
        swap(&ready, &readyNext)
        for f in readyNext { f.with { resume($0) } }
        readyNext.removeAll(keepingCapacity: true)
        return true
    }

    /// Runs a task on an idle fiber or a new one. False, starting nothing, when the worker
    /// already has `max_fibers` and none is idle.
    private func runOnFiber(_ r: TaskRecord) -> Bool {
        if let idle = idleFibers.popLast() {
            idle.with { f in
                f.record = Ref(r)
                resume(f)
            }
            return true
        }
        let f: Fiber
        do throws(ChiError) {
            if let parked = parkedFibers.last {
                f = parked.o
                try f.unpark()
                parkedFibers.removeLast()
            } else {
                if allFibers.count >= limits.maxFibers { return false }
                f = try Fiber(worker: self)
                f.index = allFibers.count
                allFibers.append(f)
            }
        } catch {
            r.errorMessage = error.message
            complete(r, rc: -error.code)
            return true
        }
        f.record = Ref(r)
        resume(f)
        return true
    }

    /// Whether a client's task may start now: with `topRunning + 1` chains each as deep as
    /// the deepest subtasks seen lately, every chain could still get its fibers. Subtasks
    /// always may (they finish work already started).
    @inline(__always)
    func admitsTopLevel() -> Bool {
        (topRunning + 1) * (Int(depthEstimate) + 1) <= limits.maxFibers
    }

    /// Notes the depth of a task that starts; the estimate follows the deepest of the last
    /// 1024 client tasks' worth of starts.
    @inline(__always)
    func noteStart(_ depth: UInt32) {
        if depth > depthEstimate { depthEstimate = depth }
        if depth > depthWindowMax { depthWindowMax = depth }
        if depth == 0 {
            depthWindowStarts &+= 1
            if depthWindowStarts >= 1024 {
                depthEstimate = depthWindowMax
                depthWindowMax = 0
                depthWindowStarts = 0
            }
        }
    }

    @inline(__always)
    private func resume(_ f: Fiber) {
        currentFiberRef = Ref(f)
        f.finished = false
        switches &+= 1
        chi_fiber_switch(schedCtx, f.ctx)
        currentFiberRef = nil
        if f.finished {
            if idleFibers.count < limits.fiberCache {
                idleFibers.append(Ref(f))
            } else {
                // Beyond the cache a fiber's stack is unmapped: after a burst, memory and
                // mappings go back to their idle level.
                f.park()
                parkedFibers.append(Ref(f))
            }
        }
    }

    private func fireTimers(_ now: UInt64) -> Bool {
        var did = false
        while let r = timers.popDue(now) {
            did = true
            enqueue(r)
        }
        return did
    }

    /// Runs the pollers; true while any has operations in flight.
    private func runPollers() -> Bool {
        var busy = 0
        var waiter: Poller?
        pollers.withUnsafeBufferPointer { ps in
            for i in ps.indices {
                // Borrowed: iterating the array directly retains it and each poller.
                Ref(Unmanaged.passUnretained(ps[i])).with { p in
                    if p.fn(p.arg, UInt32(id)) > 0 {
                        busy += 1
                        if p.wait != nil { waiter = p }
                    }
                }
            }
        }
        // Sleeping in a poller's wait is only sound when it is the one with work in flight.
        ioWaiter = busy == 1 ? waiter : nil
        return busy > 0
    }

    /// Completes the periodic tasks of a destroyed pool.
    func purge(_ pool: RuntimePool) {
        for r in timers.removeAll(where: { $0.pool === pool }) {
            r.task.pointee.rc = -CInt(CHI_ESTOPPED)
            complete(r)
        }
        _ = chi_add32(pool.purgeAcks, 1)
    }

    /// Completes everything still queued here with CHI_ESTOPPED. Runs after the thread ended.
    func abandonAll() {
        // Messages that arrived after the loop ended: finish or refuse them.
        while let bits = inbox.popSingle() {
            let p = UnsafeRawPointer(bitPattern: UInt(bits & ~Self.messageMask))!
            switch Message(rawValue: bits & Self.messageMask)! {
            case .enqueue, .remoteDone:
                let r = Unmanaged<TaskRecord>.fromOpaque(p).takeUnretainedValue()
                if r.task.pointee.rc >= 0 || bits & Self.messageMask == Message.enqueue.rawValue {
                    r.task.pointee.rc = -CInt(CHI_ESTOPPED)
                }
                complete(r)
            case .remoteSubmit:
                let inc = Unmanaged<RemoteIncoming>.fromOpaque(p).takeRetainedValue()
                allocRecord(inc.task, off: 0).with { r in
                    r.remote = inc
                    complete(r, rc: -CInt(CHI_ESTOPPED))
                }
            case .purge:
                let pool = Unmanaged<RuntimePool>.fromOpaque(p).takeRetainedValue()
                _ = chi_add32(pool.purgeAcks, 1)
            case .call:
                Unmanaged<WorkerCall>.fromOpaque(p).takeRetainedValue().body(self)
            case .addPoller:
                _ = Unmanaged<Poller>.fromOpaque(p).takeRetainedValue()
            case .resume:
                break
            case .recycle:
                freeRecord(Unmanaged<TaskRecord>.fromOpaque(p).takeUnretainedValue())
            case .attachClient:
                attach(Unmanaged<ClientSlot>.fromOpaque(p).takeUnretainedValue())
            case .detachClient:
                detach(Unmanaged<ClientSlot>.fromOpaque(p).takeUnretainedValue())
            case .cancel:
                _ = Unmanaged<CancelRequest>.fromOpaque(p).takeRetainedValue()
            case .internalSubmit:
                let pt = Unmanaged<PrivateTask>.fromOpaque(p).takeUnretainedValue()
                pt.task.pointee.rc = -CInt(CHI_ESTOPPED)
                Runtime.finishPrivate(pt, message: nil)
            case .moveLane, .laneBarrier, .laneBarrierAck, .adoptLane:
                _ = Unmanaged<LaneMove>.fromOpaque(p).takeRetainedValue()
            }
        }
        while let r = timers.popDue(UInt64.max) {
            r.task.pointee.rc = -CInt(CHI_ESTOPPED)
            complete(r)
        }
        failHeld()
        for lane in activeLanes {
            while let r = lane.o.pop() {
                r.with { r in
                    r.task.pointee.rc = -CInt(CHI_ESTOPPED)
                    complete(r)
                }
            }
        }
        activeLanes.removeAll()
        // Lanes caught in a move: what waits in their queue (held here) or arrived for them.
        for p in runtime.livePools() {
            for c in p.local {
                for l in c.lanes where l.queueOwnerId == id || l.ownerId == id {
                    for r in l.popAll() { r.with { complete($0, rc: -CInt(CHI_ESTOPPED)) } }
                }
            }
        }
        movingLanes.removeAll()
        for e in clientRings {
            while let v = e.ring.pop() {
                guard v & CHI_RING_TAG_MASK == 0, spans.taskLimit(v, owner: e.owner) != nil else { continue }
                let t = (segBase + Int(v)).assumingMemoryBound(to: chi_task_t.self)
                guard t.pointee.flags & UInt32(CHI_TASK_FIRE_AND_FORGET) == 0 else { continue }
                t.pointee.rc = -CInt(CHI_ESTOPPED)
                if chi_xchg32(t.donePtr, DoneWord.done) == DoneWord.sleeper { _ = chi_futex_wake(t.donePtr, Int32.max) }
            }
        }
    }
}

/// One client submission ring a worker drains.
struct ClientRing {
    let ring: ShmRing
    let slot: Ref<ClientSlot>
    let owner: UInt16
    /// The slot's accepted-task counter for this ring (this worker writes it).
    let accepted: UnsafeMutablePointer<UInt64>
    /// The client's rings per ring of this worker (its share of the in-flight limit).
    let shares: UInt64
    /// Tasks this ring may still take before the client's in-flight count is summed again.
    var budget: UInt64
}

/// A request to cancel a client's periodic task, sent to every worker.
final class CancelRequest {
    let owner: UInt16
    let off: UInt64

    init(owner: UInt16, off: UInt64) {
        self.owner = owner
        self.off = off
    }
}
