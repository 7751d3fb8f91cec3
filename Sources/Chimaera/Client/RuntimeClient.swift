import CChimaera
import Glibc

/// A connection to a runtime through its segment: allocates tasks and buffers from the
/// client's own spans, pushes tasks on the client's own submission ring and waits on their
/// completion words.
///
/// Three flavours share this type: attached to a daemon (registered over its socket),
/// embedded (owning an in-process runtime, registered by a call), and internal (handed to
/// module code: tasks live in the runtime's private memory and waits suspend the fiber).
package final class RuntimeClient: @unchecked Sendable {
    package let segment: SharedSegment
    /// The runtime this client owns (embedded mode) or lives in (internal client).
    package let runtime: Runtime?
    package let ownsRuntime: Bool
    /// Module code inside the runtime: private tasks, fiber waits.
    let isInternal: Bool
    let daemonPid: pid_t
    let clientId: UInt64
    let spinNs: UInt64
    let submitTimeoutNs: UInt64
    /// Where this client's memory comes from; nil for the internal client.
    private let channel: RegistrationChannel?
    /// Tasks and buffers (the internal client: the runtime's own buffers).
    let slab: SlabAllocator
    private let rings: [ShmRing]
    private let ringSeq: [UnsafeMutablePointer<UInt32>]
    private let ringSleeping: [UnsafeMutablePointer<UInt32>]
    /// Fire-and-forget tasks the runtime handed back, to be freed here.
    private let returned: ShmRing?
    private let msgs: UnsafeMutablePointer<chi_msg_slot_t>?
    private let counter = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    private var closed = false

    /// A client attached through `channel`, whose welcome was `reply`.
    private init(segment: SharedSegment, runtime: Runtime?, ownsRuntime: Bool, spinNs: UInt64,
                 submitTimeoutNs: UInt64, channel: RegistrationChannel, reply: chi_reg_reply_t) {
        self.segment = segment
        self.runtime = runtime
        self.ownsRuntime = ownsRuntime
        self.spinNs = spinNs
        self.submitTimeoutNs = submitTimeoutNs
        self.channel = channel
        isInternal = false
        daemonPid = segment.header.pointee.daemon_pid
        clientId = reply.client_id
        slab = SlabAllocator(source: ChannelSpans(channel), heapOff: segment.heapOff)
        let a = (segment.base + Int(reply.area_off)).assumingMemoryBound(to: chi_client_area_t.self).pointee
        var rs: [ShmRing] = [], seqs: [UnsafeMutablePointer<UInt32>] = [], sl: [UnsafeMutablePointer<UInt32>] = []
        let workers = withUnsafeBytes(of: a.ring_worker) { b in
            (0..<Int(a.nrings)).map { Int(b.load(fromByteOffset: $0 * 4, as: UInt32.self)) }
        }
        for q in 0..<Int(a.nrings) {
            rs.append(segment.ring(at: a.rings_off + UInt64(q) * a.ring_stride))
            let db = UnsafeMutableRawPointer(segment.doorbell(min(workers[q], Int(segment.header.pointee.nworkers) - 1)))
            seqs.append((db + MemoryLayout<chi_doorbell_t>.offset(of: \.seq)!).assumingMemoryBound(to: UInt32.self))
            sl.append((db + MemoryLayout<chi_doorbell_t>.offset(of: \.sleeping)!).assumingMemoryBound(to: UInt32.self))
        }
        rings = rs
        ringSeq = seqs
        ringSleeping = sl
        returned = segment.ring(at: a.returned_off)
        msgs = (segment.base + Int(a.msgs_off)).assumingMemoryBound(to: chi_msg_slot_t.self)
        counter.initialize(to: 0)
    }

    /// The internal client of `runtime`, for module code.
    package init(internalFor runtime: Runtime, spinNs: UInt64) {
        segment = runtime.segment
        self.runtime = runtime
        ownsRuntime = false
        isInternal = true
        self.spinNs = spinNs
        submitTimeoutNs = 0
        channel = nil
        daemonPid = getpid()
        clientId = 0
        slab = runtime.slab
        rings = []
        ringSeq = []
        ringSleeping = []
        returned = nil
        msgs = nil
        counter.initialize(to: 0)
    }

    deinit {
        close()
        counter.deallocate()
    }

    /// Attaches to a daemon, or starts an embedded runtime, as the options and environment say.
    package static func connect(segment: String?, configPath: String?, mode: UInt32,
                                timeoutMs: UInt32) throws(ChiError) -> RuntimeClient
    {
        let config = try RuntimeConfig.loadOrThrowChi(path: configPath)
        let segName = config.segmentName(explicit: segment)
        var embedded = config.clientMode == .embedded
        if let env = getenv("CHIMAERA_EMBEDDED") { embedded = String(cString: env) == "1" }
        if mode == UInt32(CHI_MODE_EMBEDDED) { embedded = true }
        if mode == UInt32(CHI_MODE_ATTACH) { embedded = false }
        let spin = UInt64(config.clientSpinUs) * 1000
        let submitNs = UInt64(config.submitTimeoutMs) * 1_000_000
        if embedded {
            let rt = try Runtime(config: config, segmentName: segName, anonymous: true)
            do {
                try rt.start()
                rt.internalClient = RuntimeClient(internalFor: rt, spinNs: spin)
                let ch = try InProcessChannel(registry: rt.registry)
                return RuntimeClient(segment: rt.segment, runtime: rt, ownsRuntime: true, spinNs: spin,
                                     submitTimeoutNs: submitNs, channel: ch, reply: ch.welcome)
            } catch {
                rt.shutdown()
                throw error
            }
        }
        let timeout = UInt64(timeoutMs == 0 ? 500 : timeoutMs) * 1_000_000
        let seg = try SharedSegment.attach(name: segName, timeoutNs: timeout)
        let path = seg.socketPath
        guard !path.isEmpty else {
            throw ChiError(CInt(CHI_ENORUNTIME), "the runtime of segment \"\(segName)\" takes no clients from other processes")
        }
        let (ch, reply) = try SocketChannel.register(path: path, segment: segName)
        return RuntimeClient(segment: seg, runtime: nil, ownsRuntime: false, spinNs: spin,
                             submitTimeoutNs: submitNs, channel: ch, reply: reply)
    }

    /// Detaches (the runtime reclaims this client's memory once its tasks end) and stops an
    /// owned (embedded) runtime. Idempotent.
    package func close() {
        if closed { return }
        closed = true
        channel?.close()
        if ownsRuntime, let rt = runtime { rt.shutdown() }
    }

    // MARK: Tasks

    /// The offset of a task pointer that must lie inside this client's segment.
    @inline(__always)
    package func offset(ofTask t: UnsafeMutablePointer<chi_task_t>) throws(ChiError) -> UInt64 {
        guard let off = segment.offset(of: t), off & 63 == 0,
              segment.pointer(off, UInt64(MemoryLayout<chi_task_t>.size)) != nil
        else { throw ChiError(EINVAL, "task pointer \(t) is not a task in segment \(segment.name)") }
        return off
    }

    /// Checks that `t` is a live task of this client (not deleted, not another's).
    @inline(__always)
    private func liveTask(_ t: UnsafeMutablePointer<chi_task_t>) throws(ChiError) -> UInt64 {
        if isInternal {
            guard PrivateTask.from(t) != nil else { throw ChiError(EINVAL, "task \(t) is not a task made by this runtime's internal client") }
            return 0
        }
        let off = try offset(ofTask: t)
        let live = t.pointee.reserved.0
        guard live & SlabAllocator.liveMask == SlabAllocator.liveMagic else {
            throw ChiError(EINVAL, "task \(t) is not a live task (deleted already?)")
        }
        guard (live >> 8) & 0xFF_FFFF == liveTag else {
            throw ChiError(EINVAL, "task \(t) belongs to another client")
        }
        return off
    }

    /// This client's mark in its tasks' live word (beside the size class).
    private var liveTag: UInt64 { clientId & 0xFF_FFFF }

    /// Allocates and zeroes a task, filling its header.
    @inline(__always)
    package func newTask(pool: UInt64, method: UInt32, size: Int, query: chi_domain_query_t?)
        throws(ChiError) -> UnsafeMutablePointer<chi_task_t>
    {
        guard size >= MemoryLayout<chi_task_t>.size, size <= Int(UInt32.max) else {
            throw ChiError(EINVAL, "task size \(size) is smaller than the task header (\(MemoryLayout<chi_task_t>.size) bytes) or too large")
        }
        let t: UnsafeMutablePointer<chi_task_t>
        var cls: UInt64 = 0
        if isInternal {
            guard let rt = runtime else { throw ChiError(EINVAL, "internal client without a runtime") }
            let tasks: PrivateTaskPool = Worker.current?.privateTasks ?? rt.sharedTasks
            guard let pt = tasks.take(size) else {
                throw ChiError(CInt(CHI_ELIMIT), "task size \(size) exceeds runtime.max_task_size (\(rt.config.limits.maxTaskSize))")
            }
            pt.isInternal = true
            t = pt.task
        } else {
            let off = try allocateTaskBlock(UInt64(size))
            cls = UInt64(SlabAllocator.sizeClass(UInt64(size)))
            t = (segment.base + Int(off)).assumingMemoryBound(to: chi_task_t.self)
        }
        UnsafeMutableRawPointer(t).initializeMemory(as: UInt8.self, repeating: 0, count: size)
        t.pointee.size = UInt32(size)
        t.pointee.method = method
        t.pointee.pool_id = pool
        t.pointee.task_id = clientId << 40 | (chi_add64_relaxed(counter, 1) & ((1 << 40) - 1))
        t.pointee.dom_query = query ?? chi_dq_local_hash(0)
        t.pointee.lane_hash = Self.threadHash
        t.pointee.reserved.0 = SlabAllocator.liveMagic | liveTag << 8 | cls
        return t
    }

    @inline(__always)
    private func allocateTaskBlock(_ size: UInt64) throws(ChiError) -> UInt64 {
        let c = SlabAllocator.sizeClass(size)
        if c < Int(CHI_TASK_CACHE_CLASSES) {
            let off = chi_tls_cache_take(slab.cacheOwner, UInt32(c))
            if off != 0 { return off }
        }
        drainReturned()
        do {
            return try slab.allocate(size, kind: UInt32(CHI_MEM_TASK))
        } catch {
            throw ChiError(error.code, "cannot allocate a task of \(size) bytes: \(error.message)")
        }
    }

    /// Frees the fire-and-forget tasks the runtime handed back.
    private func drainReturned() {
        guard let returned else { return }
        while let off = returned.pop() {
            guard let p = segment.pointer(off, UInt64(MemoryLayout<chi_task_t>.size)) else { continue }
            let t = p.assumingMemoryBound(to: chi_task_t.self)
            let live = t.pointee.reserved.0
            // A second hand-back of the same block is dropped, not freed twice.
            guard live & SlabAllocator.liveMask == SlabAllocator.liveMagic else { continue }
            t.pointee.reserved.0 = 0
            try? slab.freeTask(off, cls: Int(live & 0xFF))
        }
    }

    /// A per-thread value that keeps one thread's tasks on one lane and one ring.
    @inline(__always)
    static var threadHash: UInt32 {
        let x = UInt64(pthread_self()) >> 12
        return UInt32(truncatingIfNeeded: x ^ (x >> 17))
    }

    /// The calling thread's submission ring.
    @inline(__always)
    private var ringIndex: Int { rings.count == 1 ? 0 : Int(Self.threadHash % UInt32(rings.count)) }

    /// Hands a task to the runtime.
    @inline(__always)
    package func submit(_ t: UnsafeMutablePointer<chi_task_t>) throws(ChiError) {
        let off = try liveTask(t)
        let flags = t.pointee.flags
        if flags & submittedFlag != 0 {
            if flags & fafFlag != 0 {
                throw ChiError(EBUSY, "task \(t.pointee.task_id) was submitted fire-and-forget: it belongs to the runtime")
            }
            if chi_load32(t.donePtr) != DoneWord.done {
                throw ChiError(EBUSY, "task \(t.pointee.task_id) is already in flight")
            }
        }
        t.pointee.rc = 0
        let faf = flags & UInt32(CHI_TASK_FIRE_AND_FORGET) != 0 ? fafFlag : 0
        t.pointee.flags = (flags & UInt32(CHI_TASK_USER_FLAGS)) | submittedFlag | faf
        t.pointee.reserved.2 = 0
        chi_store32(t.donePtr, DoneWord.pending)
        if isInternal {
            try submitInternal(t)
            return
        }
        let q = ringIndex
        let ring = rings[q]
        if !ring.push(off) { try pushSlow(ring, off) }
        Worker.ring(seq: ringSeq[q], sleeping: ringSleeping[q])
    }

    /// A subtask from module code: routed on this worker, one level deeper than the task
    /// that makes it; from another thread, through a worker's inbox.
    private func submitInternal(_ t: UnsafeMutablePointer<chi_task_t>) throws(ChiError) {
        guard let rt = runtime, let pt = PrivateTask.from(t) else { throw ChiError(EINVAL, "not an internal task") }
        chi_store32(pt.state, DoneWord.pending)
        pt.waiter = nil
        if let w = Worker.current, w.runtime === rt {
            let depth = (w.currentFiber?.running.map { $0.with { $0.depth } } ?? 0) + 1
            let limit = UInt32(rt.config.limits.maxTaskDepth)
            guard depth <= limit else {
                t.pointee.flags &= ~(submittedFlag | fafFlag)
                let msg = "subtasks nest deeper than runtime.max_task_depth (\(limit))"
                w.currentFiber?.running?.with { if $0.errorMessage == nil { $0.errorMessage = msg } }
                throw ChiError(CInt(CHI_ELIMIT), msg)
            }
            w.submitInternal(pt, depth: depth)
        } else {
            pt.depth = 1
            rt.workers[0].post(.internalSubmit, pt)
        }
    }

    /// Cancels a periodic task (it completes with -ECANCELED).
    package func cancel(_ t: UnsafeMutablePointer<chi_task_t>) throws(ChiError) {
        let off = try liveTask(t)
        guard !isInternal else { throw ChiError(EINVAL, "chi_task_cancel is for clients' periodic tasks") }
        let flags = t.pointee.flags
        guard flags & submittedFlag != 0, flags & UInt32(CHI_TASK_PERIODIC) != 0, chi_load32(t.donePtr) != DoneWord.done else {
            throw ChiError(EINVAL, "task \(t.pointee.task_id) is not a periodic task in flight")
        }
        let q = ringIndex
        if !rings[q].push(off | CHI_RING_CANCEL) { try pushSlow(rings[q], off | CHI_RING_CANCEL) }
        Worker.ring(seq: ringSeq[q], sleeping: ringSleeping[q])
    }

    private func pushSlow(_ ring: ShmRing, _ off: UInt64) throws(ChiError) {
        let deadline = chi_now_ns() &+ submitTimeoutNs
        var spins = 0
        while !ring.push(off) {
            spins += 1
            if spins & 1023 == 0 {
                if !runtimeAlive {
                    throw ChiError(CInt(CHI_ENORUNTIME), "the runtime of segment \(segment.name) (pid \(daemonPid)) is gone")
                }
                if chi_now_ns() > deadline {
                    throw ChiError(EAGAIN, "the runtime held this client back for \(submitTimeoutNs / 1_000_000) ms (client.submit_timeout_ms): it has runtime.max_inflight_per_client tasks in flight or its queue is full")
                }
                if spins > 16 << 10 { usleep(50) } else { sched_yield() }
            } else {
                chi_cpu_relax()
            }
        }
    }

    var runtimeAlive: Bool {
        if runtime != nil { return true }
        return Sys.processAlive(daemonPid)
            && chi_load32(&segment.header.pointee.state) == CHI_SEG_READY
    }

    static let preemptedNs: UInt64 = 200_000

    /// Waits for a task: spin, then sleep on its completion word in slices that check the
    /// runtime is alive. On a runtime fiber, suspends the fiber instead (timeout ignored).
    package func wait(_ t: UnsafeMutablePointer<chi_task_t>, timeoutNs: Int64) throws(ChiError) {
        _ = try liveTask(t)
        if t.pointee.flags & fafFlag != 0 {
            throw ChiError(EINVAL, "task \(t.pointee.task_id) was submitted fire-and-forget: nobody may wait for it")
        }
        if isInternal, let pt = PrivateTask.from(t) {
            try waitInternal(pt, timeoutNs: timeoutNs)
            return
        }
        let done = t.donePtr
        // Before the first look: a task that is already done may have been run by a worker
        // that took this CPU from us, and the next call would share it again.
        let onWorkerCpu = stuckOnWorkerCpu()
        if chi_load32(done) == DoneWord.done { return }
        let start = chi_now_ns()
        // Never spin past the caller's timeout: a timeout of 0 polls once.
        let spin = timeoutNs >= 0 ? min(spinNs, UInt64(timeoutNs)) : spinNs
        let spinEnd = onWorkerCpu ? start : start &+ spin
        var i = 0
        var last = start
        while true {
            if chi_load32(done) == DoneWord.done { return }
            i &+= 1
            if i & 63 == 0 {
                // A gap far longer than 64 polls: this thread lost its CPU to other work, so
                // spinning on takes from it too: sleep now instead.
                let now = chi_now_ns()
                if now >= spinEnd || now &- last > Self.preemptedNs { break }
                last = now
            }
            chi_cpu_relax()
        }
        try sleepOn(done, start: start, timeoutNs: timeoutNs, what: "task \(t.pointee.task_id)")
    }

    /// Sleeps on a completion word until it reads done, in slices that check the runtime.
    private func sleepOn(_ done: UnsafeMutablePointer<UInt32>, start: UInt64, timeoutNs: Int64, what: @autoclosure () -> String) throws(ChiError) {
        while true {
            var slice: Int64 = 100_000_000
            if timeoutNs >= 0 {
                let elapsed = Int64(chi_now_ns() &- start)
                if elapsed >= timeoutNs {
                    let within = timeoutNs >= 1_000_000 ? "\(timeoutNs / 1_000_000) ms" : "\(timeoutNs / 1_000) us"
                    throw ChiError(ETIMEDOUT, "\(what()) did not complete within \(within)")
                }
                slice = min(slice, timeoutNs - elapsed)
            }
            let v = chi_load32(done)
            if v == DoneWord.done { return }
            if v == DoneWord.pending && !chi_cas32(done, DoneWord.pending, DoneWord.sleeper) { continue }
            _ = chi_futex_wait(done, DoneWord.sleeper, slice)
            if chi_load32(done) == DoneWord.done { return }
            if !runtimeAlive {
                throw ChiError(CInt(CHI_ENORUNTIME), "the runtime of segment \(segment.name) (pid \(daemonPid)) is gone; \(what()) never completed")
            }
        }
    }

    /// Waits for an internal task: a fiber suspends (the worker goes on), another thread
    /// sleeps on its completion word.
    private func waitInternal(_ pt: PrivateTask, timeoutNs: Int64) throws(ChiError) {
        if let rt = runtime, let w = Worker.current, w.runtime === rt, let f = w.currentFiber {
            // The waiter is stored before it is announced in the word; the completer reads
            // it only after its exchange sees the announcement.
            pt.waiter = Ref(f)
            while chi_load32(pt.state) != DoneWord.done {
                if chi_cas32(pt.state, DoneWord.pending, DoneWord.fiber) { f.suspend() }
            }
            // A subtask's failure explains its parent's, unless the parent has its own.
            if pt.task.pointee.rc < 0, let m = pt.message, let rec = f.running {
                rec.with { if $0.errorMessage == nil { $0.errorMessage = m } }
            }
            return
        }
        try sleepOn(pt.state, start: chi_now_ns(), timeoutNs: timeoutNs, what: "subtask \(pt.task.pointee.task_id)")
    }

    /// Whether the calling thread runs on a pinned worker's CPU and should sleep at once.
    ///
    /// Spinning there would keep the worker from running the task. Sleeping there on every
    /// call costs ~10 us a call and can last while the worker is busy: the kernel tends to
    /// wake a sleeper where its waker runs. So while the worker is awake the thread moves to
    /// another CPU it may use (its affinity mask is left as it was). A sleeping worker is
    /// only woken by this task: sharing its CPU once is cheaper than moving (the other CPU
    /// may be halted too), and a thread allowed nowhere else has no choice.
    private func stuckOnWorkerCpu() -> Bool {
        let cpu = chi_current_cpu()
        let pinned = segment.header.pointee.pinned_cpus
        guard cpu >= 0 && cpu < 32 && pinned & (1 << UInt32(cpu)) != 0 else { return false }
        if chi_load32_relaxed(ringSleeping[ringIndex]) != 0 { return true }
        return chi_leave_cpus(pinned) != 0
    }

    /// Frees a task that is not in flight.
    package func deleteTask(_ t: UnsafeMutablePointer<chi_task_t>) throws(ChiError) {
        let off = try liveTask(t)
        let flags = t.pointee.flags
        if flags & submittedFlag != 0 {
            if flags & fafFlag != 0 {
                throw ChiError(EBUSY, "task \(t.pointee.task_id) was submitted fire-and-forget: the runtime frees it")
            }
            if chi_load32(t.donePtr) != DoneWord.done {
                // A dead runtime never completes it: say so, not "in flight" (issue 18).
                if !runtimeAlive {
                    throw ChiError(CInt(CHI_ENORUNTIME), "the runtime of segment \(segment.name) (pid \(daemonPid)) is gone; task \(t.pointee.task_id) never completed")
                }
                throw ChiError(EBUSY, "task \(t.pointee.task_id) is still in flight")
            }
        }
        if isInternal, let pt = PrivateTask.from(t) {
            PrivateTaskPool.give(pt)
            return
        }
        let live = t.pointee.reserved.0
        t.pointee.reserved.0 = 0
        t.pointee.reserved.2 = 0
        try slab.freeTask(off, cls: Int(live & 0xFF))
    }

    /// Submits, waits, and returns the task's status.
    package func call(_ t: UnsafeMutablePointer<chi_task_t>, timeoutNs: Int64) throws(ChiError) -> CInt {
        try submit(t)
        try wait(t, timeoutNs: timeoutNs)
        return t.pointee.rc
    }

    // MARK: Buffers

    package func allocBuffer(_ size: Int) throws(ChiError) -> UnsafeMutableRawPointer {
        guard size > 0 else { throw ChiError(EINVAL, "buffer size must be positive, got \(size)") }
        let off: UInt64
        do {
            off = try slab.allocate(UInt64(size), kind: UInt32(CHI_MEM_BUFFER))
        } catch {
            throw ChiError(error.code, "cannot allocate a buffer of \(size) bytes in segment \(segment.name): \(error.message)")
        }
        return segment.base + Int(off)
    }

    package func freeBuffer(_ p: UnsafeRawPointer) throws(ChiError) {
        guard let off = segment.offset(of: p) else {
            throw ChiError(EINVAL, "\(p) is not inside segment \(segment.name)")
        }
        try slab.free(off, kind: UInt32(CHI_MEM_BUFFER))
    }
}

extension RuntimeClient {
    /// The runtime's message for a failed task, if it left one; forgets it.
    package func takeErrorMessage(_ t: UnsafeMutablePointer<chi_task_t>) -> String? {
        if isInternal, let pt = PrivateTask.from(t) {
            defer { pt.message = nil }
            return pt.message
        }
        let v = t.pointee.reserved.2
        t.pointee.reserved.2 = 0
        let i = Int(v & 0xFF) - 1
        guard let msgs, i >= 0, i < Int(CHI_MSG_SLOTS) else { return nil }
        let want = UInt32(truncatingIfNeeded: v >> 8)
        let gen = UnsafeMutableRawPointer(msgs + i).assumingMemoryBound(to: UInt32.self)
        guard chi_load32(gen) == want, msgs[i].task_id == t.pointee.task_id else { return nil }
        let n = min(Int(msgs[i].len), Int(CHI_MSG_TEXT))
        let text = withUnsafeBytes(of: msgs[i].text) { String(decoding: $0.prefix(n), as: UTF8.self) }
        // Read twice: the runtime may have reused the slot meanwhile.
        return chi_load32(gen) == want ? text : nil
    }
}

