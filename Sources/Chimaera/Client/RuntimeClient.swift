import CChimaera
import Glibc

/// A connection to a runtime through its segment: allocates tasks and buffers there, pushes
/// tasks on an ingress ring and waits on their completion words.
///
/// Three flavours share this type: attached to a daemon, embedded (owning an in-process
/// runtime), and internal (handed to module code; waits suspend the fiber).
package final class RuntimeClient: @unchecked Sendable {
    package let segment: SharedSegment
    let allocator: ShmAllocator
    private let rings: [ShmRing]
    private let ringSeq: [UnsafeMutablePointer<UInt32>]
    private let ringSleeping: [UnsafeMutablePointer<UInt32>]
    let daemonPid: pid_t
    let clientId: UInt64
    private let counter = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    let spinNs: UInt64
    /// The runtime this client owns (embedded mode) or lives in (internal client).
    package let runtime: Runtime?
    package let ownsRuntime: Bool

    package init(segment: SharedSegment, runtime: Runtime?, ownsRuntime: Bool, spinNs: UInt64) {
        self.segment = segment
        self.runtime = runtime
        self.ownsRuntime = ownsRuntime
        self.spinNs = spinNs
        allocator = segment.allocator
        let h = segment.header
        daemonPid = h.pointee.daemon_pid
        var rs: [ShmRing] = [], seqs: [UnsafeMutablePointer<UInt32>] = [], sl: [UnsafeMutablePointer<UInt32>] = []
        for q in 0..<Int(h.pointee.nqueues) {
            let r = segment.ring(q)
            rs.append(r)
            let owner = Int(h.pointee.nworkers) > 0 ? q % Int(h.pointee.nworkers) : 0
            let db = UnsafeMutableRawPointer(segment.doorbell(owner))
            seqs.append((db + MemoryLayout<chi_doorbell_t>.offset(of: \.seq)!).assumingMemoryBound(to: UInt32.self))
            sl.append((db + MemoryLayout<chi_doorbell_t>.offset(of: \.sleeping)!).assumingMemoryBound(to: UInt32.self))
        }
        rings = rs
        ringSeq = seqs
        ringSleeping = sl
        let nc = (UnsafeMutableRawPointer(h) + MemoryLayout<chi_seg_header_t>.offset(of: \.next_client)!)
            .assumingMemoryBound(to: UInt64.self)
        clientId = chi_add64(nc, 1)
        counter.initialize(to: 0)
    }

    deinit { counter.deallocate() }

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
        if embedded {
            let rt = try Runtime(config: config, segmentName: segName, anonymous: true)
            do {
                try rt.start()
            } catch {
                rt.shutdown()
                throw error
            }
            rt.internalClient = RuntimeClient(segment: rt.segment, runtime: rt, ownsRuntime: false, spinNs: spin)
            return RuntimeClient(segment: rt.segment, runtime: rt, ownsRuntime: true, spinNs: spin)
        }
        let timeout = UInt64(timeoutMs == 0 ? 500 : timeoutMs) * 1_000_000
        let seg = try SharedSegment.attach(name: segName, timeoutNs: timeout)
        return RuntimeClient(segment: seg, runtime: nil, ownsRuntime: false, spinNs: spin)
    }

    /// Stops an owned (embedded) runtime.
    package func close() {
        if ownsRuntime, let rt = runtime { rt.shutdown() }
    }

    // MARK: Tasks

    /// The offset of a task pointer that must lie inside this client's segment.
    @inline(__always)
    package func offset(ofTask t: UnsafeMutablePointer<chi_task_t>) throws(ChiError) -> UInt64 {
        guard let off = segment.offset(of: t), off & 7 == 0,
              segment.pointer(off, UInt64(MemoryLayout<chi_task_t>.size)) != nil
        else { throw ChiError(EINVAL, "task pointer \(t) is not a task in segment \(segment.name)") }
        return off
    }

    /// Allocates and zeroes a task, filling its header.
    @inline(__always)
    package func newTask(pool: UInt64, method: UInt32, size: Int, query: chi_domain_query_t?)
        throws(ChiError) -> UnsafeMutablePointer<chi_task_t>
    {
        guard size >= MemoryLayout<chi_task_t>.size, size <= Int(UInt32.max) else {
            throw ChiError(EINVAL, "task size \(size) is smaller than the task header (\(MemoryLayout<chi_task_t>.size) bytes) or too large")
        }
        guard let off = allocator.allocateTask(UInt64(size)), let p = segment.pointer(off, UInt64(size)) else {
            throw ChiError(ENOMEM, "shared memory exhausted allocating a task of \(size) bytes in segment \(segment.name)")
        }
        p.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        let t = p.assumingMemoryBound(to: chi_task_t.self)
        t.pointee.size = UInt32(size)
        t.pointee.method = method
        t.pointee.pool_id = pool
        t.pointee.task_id = clientId << 40 | (chi_add64_relaxed(counter, 1) & ((1 << 40) - 1))
        t.pointee.dom_query = query ?? chi_dq_local_hash(0)
        t.pointee.lane_hash = Self.threadHash
        return t
    }

    /// A per-thread value that keeps one thread's tasks on one lane and one ring.
    @inline(__always)
    static var threadHash: UInt32 {
        let x = UInt64(pthread_self()) >> 12
        return UInt32(truncatingIfNeeded: x ^ (x >> 17))
    }

    /// The calling thread's ingress ring.
    @inline(__always)
    private var ringIndex: Int { rings.count == 1 ? 0 : Int(Self.threadHash % UInt32(rings.count)) }

    /// Hands a task to the runtime.
    @inline(__always)
    package func submit(_ t: UnsafeMutablePointer<chi_task_t>) throws(ChiError) {
        let off = try offset(ofTask: t)
        if t.pointee.flags & submittedFlag != 0 && chi_load32(t.donePtr) != DoneWord.done {
            throw ChiError(EBUSY, "task \(t.pointee.task_id) is already in flight")
        }
        t.pointee.rc = 0
        t.pointee.flags = (t.pointee.flags & UInt32(CHI_TASK_USER_FLAGS)) | submittedFlag
        chi_store32(t.donePtr, DoneWord.pending)
        if ownsRuntime == false, let rt = runtime, let w = Worker.current, w.runtime === rt {
            w.submitInternal(t, off: off)
            return
        }
        let q = ringIndex
        let ring = rings[q]
        if !ring.push(off) { try pushSlow(ring, off) }
        Worker.ring(seq: ringSeq[q], sleeping: ringSleeping[q])
    }

    private func pushSlow(_ ring: ShmRing, _ off: UInt64) throws(ChiError) {
        let deadline = chi_now_ns() + 5_000_000_000
        var spins = 0
        while !ring.push(off) {
            spins += 1
            if spins & 1023 == 0 {
                if !runtimeAlive {
                    throw ChiError(CInt(CHI_ENORUNTIME), "the runtime of segment \(segment.name) (pid \(daemonPid)) is gone")
                }
                if chi_now_ns() > deadline {
                    throw ChiError(EAGAIN, "the runtime's queue stayed full for 5 s")
                }
                sched_yield()
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

    /// Waits for a task: spin, then sleep on its completion word in slices that check the
    /// runtime is alive. On a runtime fiber, suspends the fiber instead (timeout ignored).
    package func wait(_ t: UnsafeMutablePointer<chi_task_t>, timeoutNs: Int64) throws(ChiError) {
        _ = try offset(ofTask: t)
        let done = t.donePtr
        if let rt = runtime, !ownsRuntime, let w = Worker.current, w.runtime === rt, let f = w.currentFiber {
            t.reservedPtr(1).pointee = UInt64(UInt(bitPattern: Unmanaged.passUnretained(f).toOpaque()))
            while chi_load32(done) != DoneWord.done {
                if chi_cas32(done, DoneWord.pending, DoneWord.fiber) { f.suspend() }
            }
            return
        }
        // Before the first look: a task that is already done may have been run by a worker
        // that took this CPU from us, and the next call would share it again.
        let onWorkerCpu = stuckOnWorkerCpu()
        if chi_load32(done) == DoneWord.done { return }
        let start = chi_now_ns()
        // Never spin past the caller's timeout: a timeout of 0 polls once.
        let spin = timeoutNs >= 0 ? min(spinNs, UInt64(timeoutNs)) : spinNs
        let spinEnd = onWorkerCpu ? start : start &+ spin
        var i = 0
        while true {
            if chi_load32(done) == DoneWord.done { return }
            i &+= 1
            if i & 63 == 0 && chi_now_ns() >= spinEnd { break }
            chi_cpu_relax()
        }
        while true {
            var slice: Int64 = 100_000_000
            if timeoutNs >= 0 {
                let elapsed = Int64(chi_now_ns() &- start)
                if elapsed >= timeoutNs {
                    let within = timeoutNs >= 1_000_000 ? "\(timeoutNs / 1_000_000) ms" : "\(timeoutNs / 1_000) us"
                    throw ChiError(ETIMEDOUT, "task \(t.pointee.task_id) did not complete within \(within)")
                }
                slice = min(slice, timeoutNs - elapsed)
            }
            let v = chi_load32(done)
            if v == DoneWord.done { return }
            if v == DoneWord.pending && !chi_cas32(done, DoneWord.pending, DoneWord.sleeper) { continue }
            _ = chi_futex_wait(done, DoneWord.sleeper, slice)
            if chi_load32(done) == DoneWord.done { return }
            if !runtimeAlive {
                throw ChiError(CInt(CHI_ENORUNTIME), "the runtime of segment \(segment.name) (pid \(daemonPid)) stopped before task \(t.pointee.task_id) completed")
            }
        }
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
        let off = try offset(ofTask: t)
        if t.pointee.flags & submittedFlag != 0 && chi_load32(t.donePtr) != DoneWord.done {
            throw ChiError(EBUSY, "task \(t.pointee.task_id) is still in flight")
        }
        if t.reservedPtr(2).pointee != 0 { _ = takeErrorMessage(t) }
        allocator.freeTask(off)
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
        guard let off = allocator.allocate(UInt64(size)), let p = segment.pointer(off, UInt64(size)) else {
            throw ChiError(ENOMEM, "shared memory exhausted allocating \(size) bytes in segment \(segment.name)")
        }
        return p
    }

    package func freeBuffer(_ p: UnsafeRawPointer) throws(ChiError) {
        guard let off = segment.offset(of: p), allocator.free(off) else {
            throw ChiError(EINVAL, "\(p) is not a buffer allocated in segment \(segment.name)")
        }
    }
}

extension RuntimeClient {
    /// The runtime's message for a failed task, if it left one (in reserved[2]); frees it.
    package func takeErrorMessage(_ t: UnsafeMutablePointer<chi_task_t>) -> String? {
        let slot = t.reservedPtr(2)
        let off = slot.pointee
        guard off != 0, let p = segment.pointer(off, 1), let cap = allocator.blockSize(off) else { return nil }
        slot.pointee = 0
        let n = min(Int(cap), segment.size - Int(off))
        let bytes = UnsafeRawBufferPointer(start: p, count: n)
        let end = bytes.firstIndex(of: 0) ?? n
        let msg = String(decoding: bytes[..<end], as: UTF8.self)
        allocator.free(off)
        return msg
    }
}
