import CChimaera
import Glibc

/// Attaches and detaches clients: each registers over the segment's Unix socket (or, in the
/// runtime's own process, by a call), gets a slot, a control area with its rings, and spans
/// on request. A client whose socket hangs up is gone, however it died: its rings are
/// dropped, its periodic tasks cancelled, and once its tasks in flight have finished, all of
/// its memory goes back to the heap.
///
/// One thread serves the socket (epoll); an idle registry sleeps and costs no CPU. Bounds:
/// `runtime.max_clients` slots, 64 connections that have not said hello (each closed after
/// 2 s; when 64 wait, the oldest is closed to let a newcomer in), one request message at a
/// time per client (fixed size; anything else ends it).
final class ClientRegistry: @unchecked Sendable {
    let spans: SpanMap
    let slots: [ClientSlot]
    private let segment: SharedSegment
    private let runtimeRef: Ref<Runtime>
    private let lock = Mutex()
    private var nextClientId: UInt64 = 1
    private let queueDepth: Int
    private let maxClients: Int
    private let quota: UInt64
    private(set) var socketPath: String?
    private var listenFd: Int32 = -1
    private var epfd: Int32 = -1
    private var wakeFd: Int32 = -1
    private var thread = pthread_t()
    private var running = false
    private let stopFlag = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    /// Connections that have not registered yet, with their deadline.
    private var pending: [Int32: UInt64] = [:]
    private var bySocket: [Int32: ClientSlot] = [:]
    private var dying: [ClientSlot] = []
    static let maxPending = 64
    static let helloTimeoutNs: UInt64 = 2_000_000_000
    /// Counters for statistics.
    private(set) var refusedConnections: UInt64 = 0
    private(set) var clientsGone: UInt64 = 0

    init(runtime: Runtime, segment: SharedSegment, maxClients: Int, queueDepth: Int, quota: UInt64) {
        runtimeRef = Ref(runtime)
        self.segment = segment
        spans = runtime.spans
        // Clients that left hold their slot until their tasks end: the limit counts the live
        // ones, and the slots beyond it carry those being reclaimed.
        self.maxClients = maxClients
        slots = (0..<(maxClients + maxClients / 4 + 4)).map { ClientSlot(index: $0, workers: runtime.workers.count) }
        self.queueDepth = queueDepth
        self.quota = quota
        stopFlag.initialize(to: 0)
    }

    private var runtime: Runtime { runtimeRef.o }

    // MARK: Thread

    /// Starts serving: listens on `path` when given (daemon mode).
    func start(socketPath path: String?) throws(ChiError) {
        epfd = chi_epoll_create()
        wakeFd = chi_eventfd()
        guard epfd >= 0, wakeFd >= 0 else { throw ChiError(Sys.errno, "cannot set up the client registry: \(Sys.errnoText())") }
        add(wakeFd)
        if let path {
            let fd = chi_unix_listen(path, 128)
            guard fd >= 0 else { throw ChiError(-fd, "cannot listen on \(path): \(Sys.errnoText(-fd))") }
            listenFd = fd
            socketPath = path
            add(fd)
            segment.setSocketPath(path)
        }
        let arg = Unmanaged.passUnretained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            chi_thread_name("chi-clients")
            Unmanaged<ClientRegistry>.fromOpaque(arg!).takeUnretainedValue().serve()
            return nil
        }, arg)
        guard rc == 0 else { throw ChiError(rc, "cannot start the client registry thread: \(Sys.errnoText(rc))") }
        running = true
    }

    /// Stops serving and removes the socket. Idempotent.
    func stop() {
        guard running else { return }
        running = false
        chi_store32(stopFlag, 1)
        wake()
        pthread_join(thread, nil)
        if listenFd >= 0 { close(listenFd) }
        if let socketPath { unlink(socketPath) }
        for fd in Array(pending.keys) + Array(bySocket.keys) { close(fd) }
        close(epfd)
        close(wakeFd)
    }

    private func wake() {
        var one: UInt64 = 1
        _ = write(wakeFd, &one, 8)
    }

    private func add(_ fd: Int32) { _ = chi_epoll_add(epfd, fd) }

    private func drop(_ fd: Int32) {
        _ = chi_epoll_del(epfd, fd)
        close(fd)
    }

    private func serve() {
        var fds = [Int32](repeating: 0, count: 64)
        var hangups = [UInt32](repeating: 0, count: 64)
        while chi_load32(stopFlag) == 0 {
            // Tick only while something waits on time: hellos due, or clients being reclaimed.
            let timeout: Int32 = lock.withLock { pending.isEmpty && dying.isEmpty } ? -1 : 10
            let n = chi_epoll_wait(epfd, &fds, &hangups, 64, timeout)
            for i in 0..<max(0, Int(n)) {
                let fd = fds[i]
                if fd == wakeFd {
                    var v: UInt64 = 0
                    _ = read(wakeFd, &v, 8)
                } else if fd == listenFd {
                    acceptAll()
                } else {
                    lock.withLock { service(fd, hangup: hangups[i] != 0) }
                }
            }
            lock.withLock {
                let now = chi_now_ns()
                for (fd, deadline) in pending where deadline <= now {
                    pending.removeValue(forKey: fd)
                    refusedConnections &+= 1
                    Log.warn("clients: a connection sent no hello within \(Self.helloTimeoutNs / 1_000_000) ms; closed")
                    drop(fd)
                }
                reclaimFinished()
            }
        }
    }

    private func acceptAll() {
        while true {
            let fd = chi_unix_accept(listenFd)
            if fd < 0 { return }
            lock.withLock {
                // Full: the connection that has waited longest goes, not the newcomer (a client
                // says hello at once; silent connections must not lock real ones out).
                if pending.count >= Self.maxPending, let oldest = pending.min(by: { $0.value < $1.value }) {
                    pending.removeValue(forKey: oldest.key)
                    refusedConnections &+= 1
                    drop(oldest.key)
                }
                pending[fd] = chi_now_ns() &+ Self.helloTimeoutNs
                add(fd)
            }
        }
    }

    /// Reads one message from `fd` (lock held).
    private func service(_ fd: Int32, hangup: Bool) {
        var m = chi_reg_msg_t()
        let want = MemoryLayout<chi_reg_msg_t>.size
        // One byte more than a message: a longer one is a protocol error, not a truncation.
        let n = withUnsafeMutableBytes(of: &m) { b -> Int in
            var big = [UInt8](repeating: 0, count: want + 1)
            let r = big.withUnsafeMutableBytes { chi_sock_recv(fd, $0.baseAddress, want + 1, 1) }
            if r == want { b.copyBytes(from: big[0..<want]) }
            return r
        }
        if n == -Int(EAGAIN) && !hangup { return }
        if let s = bySocket[fd] {
            guard n == want, m.magic == CHI_REG_MAGIC else {
                if n > 0 { Log.warn("clients: client \(s.clientId) (pid \(s.pid)) sent a malformed request; detached") }
                gone(s)
                return
            }
            if let reply = request(m, from: s) { send(reply, to: fd) }
            return
        }
        guard pending.removeValue(forKey: fd) != nil else { return }
        guard n == want, m.magic == CHI_REG_MAGIC, m.type == CHI_REG_HELLO else {
            refusedConnections &+= 1
            if n > 0 { Log.warn("clients: refused a connection that did not start with a hello") }
            drop(fd)
            return
        }
        var pid: Int32 = 0, uid: UInt32 = 0
        guard chi_peer_cred(fd, &pid, &uid) == 0, uid == geteuid() || uid == 0 else {
            refusedConnections &+= 1
            send(Self.refusal(EACCES, "only user \(geteuid()) or root may attach"), to: fd)
            drop(fd)
            return
        }
        let (reply, slot) = hello(m, pid: pid, fd: fd)
        send(reply, to: fd)
        if let slot { bySocket[fd] = slot } else { drop(fd) }
    }

    private func send(_ r: chi_reg_reply_t, to fd: Int32) {
        var r = r
        _ = withUnsafeBytes(of: &r) { chi_sock_send(fd, $0.baseAddress, $0.count) }
    }

    static func refusal(_ code: CInt, _ message: String) -> chi_reg_reply_t {
        var r = chi_reg_reply_t()
        r.magic = CHI_REG_MAGIC
        r.status = -code
        withUnsafeMutableBytes(of: &r.message) { $0.copyBytes(from: message.utf8.prefix($0.count - 1)) }
        return r
    }

    // MARK: Registration (lock held)

    /// Registers a client: a free slot, a control area, its rings on the workers.
    private func hello(_ m: chi_reg_msg_t, pid: pid_t, fd: Int32) -> (chi_reg_reply_t, ClientSlot?) {
        guard m.abi_major == UInt32(CHI_ABI_MAJOR), m.layout == CHI_SEG_LAYOUT else {
            return (Self.refusal(CInt(CHI_EABI), "this runtime speaks ABI \(CHI_ABI_MAJOR).\(CHI_ABI_MINOR) (segment layout \(CHI_SEG_LAYOUT)); the client library is \(m.abi_major).\(m.abi_minor) (layout \(m.layout))"), nil)
        }
        let live = slots.reduce(0) { $0 + ($1.state == .live ? 1 : 0) }
        guard live < maxClients, let slot = slots.first(where: { $0.state == .free }) else {
            refusedConnections &+= 1
            let why = live >= maxClients ? "the runtime already has \(live) clients attached (runtime.max_clients)"
                : "\(slots.count - live) clients that left are still being reclaimed (their tasks have not finished)"
            return (Self.refusal(CInt(CHI_ELIMIT), why), nil)
        }
        let rt = runtime
        let ll = rt.workers.filter { $0.kind == .lowLatency }.map(\.id)
        let drainers = ll.isEmpty ? rt.workers.map(\.id) : ll
        let nrings = drainers.count
        // The policy may spread clients otherwise (worch_proc_round_robin, load balance).
        let placed = rt.orchestrator.placeClient(slot: slot.index, nrings: nrings)
        func align(_ x: Int) -> Int { (x + 63) & ~63 }
        let ringStride = align(ShmRing.bytes(capacity: queueDepth))
        let returnedCap = Self.returnedCapacity(rt.config.limits.maxInflightPerClient)
        let ringsAt = align(MemoryLayout<chi_client_area_t>.size)
        let returnedAt = ringsAt + nrings * ringStride
        let msgsAt = align(returnedAt + ShmRing.bytes(capacity: returnedCap))
        let total = msgsAt + Int(CHI_MSG_SLOTS) * MemoryLayout<chi_msg_slot_t>.stride
        let area: (off: UInt64, bytes: UInt64)
        do throws(ChiError) {
            area = try spans.allocateExtent(owner: SpanMap.runtimeOwner, kind: .control, bytes: UInt64(total))
        } catch {
            return (Self.refusal(error.code, "no room for a client's rings: \(error.message)"), nil)
        }
        let base = segment.base + Int(area.off)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: total)
        let a = base.assumingMemoryBound(to: chi_client_area_t.self)
        let id = nextClientId
        nextClientId += 1
        a.pointee.client_id = id
        a.pointee.slot = UInt32(slot.index)
        a.pointee.nrings = UInt32(nrings)
        a.pointee.ring_depth = UInt32(queueDepth)
        a.pointee.returned_cap = UInt32(returnedCap)
        a.pointee.ring_stride = UInt64(ringStride)
        a.pointee.rings_off = area.off + UInt64(ringsAt)
        a.pointee.returned_off = area.off + UInt64(returnedAt)
        a.pointee.msgs_off = area.off + UInt64(msgsAt)
        // By default clients spread over the draining workers round-robin (by slot).
        let workerOf = placed ?? (0..<nrings).map { drainers[(slot.index + $0) % nrings] }
        withUnsafeMutableBytes(of: &a.pointee.ring_worker) { b in
            for q in 0..<nrings { b.storeBytes(of: UInt32(workerOf[q]), toByteOffset: q * 4, as: UInt32.self) }
        }
        for q in 0..<nrings {
            ShmRing.format(at: base + ringsAt + q * ringStride, capacity: queueDepth, owner: UInt32(workerOf[q]))
        }
        ShmRing.format(at: base + returnedAt, capacity: returnedCap, owner: 0)
        slot.activate(area: a, areaOff: area.off, segment: segment, clientId: id, pid: pid, fd: fd)
        for w in rt.workers { w.post(.attachClient, slot) }
        var r = chi_reg_reply_t()
        r.magic = CHI_REG_MAGIC
        r.client_id = id
        r.area_off = area.off
        r.slot = UInt32(slot.index)
        Log.debug("clients: client \(id) (pid \(pid)) attached in slot \(slot.index)")
        return (r, slot)
    }

    /// The returned-blocks ring holds every fire-and-forget task a client can have in
    /// flight, twice over (the client drains it when it allocates).
    static func returnedCapacity(_ maxInflight: Int) -> Int {
        var n = 1024
        while n < 2 * maxInflight && n < 1 << 20 { n <<= 1 }
        return n
    }

    /// Serves one request of a registered client; nil when no reply is due.
    private func request(_ m: chi_reg_msg_t, from s: ClientSlot) -> chi_reg_reply_t? {
        var r = chi_reg_reply_t()
        r.magic = CHI_REG_MAGIC
        switch m.type {
        case CHI_REG_SPANS:
            guard m.kind == CHI_MEM_TASK || m.kind == CHI_MEM_BUFFER, m.cls < CHI_SLAB_CLASSES else {
                return Self.refusal(EINVAL, "bad span request (kind \(m.kind), class \(m.cls))")
            }
            do throws(ChiError) {
                let offs = try spans.allocateSpans(owner: s.owner, kind: m.kind == CHI_MEM_TASK ? .taskSlab : .bufferSlab,
                                                   cls: Int(m.cls), count: Int(min(m.count, UInt64(CHI_REG_MAX_OFFS))), quota: quota)
                r.count = UInt32(offs.count)
                withUnsafeMutableBytes(of: &r.offs) { b in
                    for (i, o) in offs.enumerated() { b.storeBytes(of: o, toByteOffset: i * 8, as: UInt64.self) }
                }
            } catch {
                return Self.refusal(error.code, error.message)
            }
        case CHI_REG_LARGE:
            guard m.kind == CHI_MEM_TASK || m.kind == CHI_MEM_BUFFER else {
                return Self.refusal(EINVAL, "bad extent request (kind \(m.kind))")
            }
            do throws(ChiError) {
                let x = try spans.allocateExtent(owner: s.owner, kind: m.kind == CHI_MEM_TASK ? .largeTask : .largeBuffer,
                                                 bytes: m.bytes, quota: quota)
                r.count = 1
                r.bytes = x.bytes
                r.offs.0 = x.off
            } catch {
                return Self.refusal(error.code, error.message)
            }
        case CHI_REG_FREE_SPANS, CHI_REG_FREE_LARGE:
            let n = m.type == CHI_REG_FREE_LARGE ? 1 : Int(min(m.count, UInt64(CHI_REG_MAX_OFFS)))
            withUnsafeBytes(of: m.offs) { b in
                for i in 0..<n {
                    let off = b.load(fromByteOffset: i * 8, as: UInt64.self)
                    if !spans.free(off, owner: s.owner) {
                        Log.debug("clients: client \(s.clientId) gave back offset \(off), which it does not hold")
                    }
                }
            }
            return nil
        default:
            return Self.refusal(EINVAL, "unknown request type \(m.type)")
        }
        return r
    }

    // MARK: Leaving (lock held)

    /// The client went (its socket hung up, or it finalized in-process): its rings stop
    /// being read, its timers go, and its memory is freed once its tasks have finished.
    private func gone(_ s: ClientSlot) {
        guard s.state == .live else { return }
        if s.fd >= 0 {
            bySocket.removeValue(forKey: s.fd)
            drop(s.fd)
            s.fd = -1
        }
        s.state = .dying
        s.dyingSince = chi_now_ns()
        clientsGone &+= 1
        Log.debug("clients: client \(s.clientId) (pid \(s.pid)) is gone; \(s.inflight) of its tasks in flight")
        for w in runtime.workers { w.post(.detachClient, s) }
        dying.append(s)
        wake()
    }

    private func reclaimFinished() {
        let n = runtime.workers.count
        dying.removeAll { s in
            guard chi_load32(s.detachAcks) >= UInt32(n), s.inflight <= 0 else {
                if chi_now_ns() &- s.dyingSince > 30_000_000_000 && s.dyingSince != 0 {
                    Log.warn("clients: client \(s.clientId) (pid \(s.pid)) left 30 s ago with \(s.inflight) tasks still running; its memory waits for them")
                    s.dyingSince = 0
                }
                return false
            }
            // A dead client's memory goes back to the system too (MADV_REMOVE punches the
            // pages out of the segment's file), not only back to the heap.
            let base = segment.base
            let discard: (UInt64, UInt64) -> Void = { off, len in
                _ = madvise(base + Int(off), Int(len), MADV_REMOVE)
            }
            let freed = spans.freeAll(owner: s.owner, discard: discard)
            spans.free(s.areaOff, owner: SpanMap.runtimeOwner, discard: discard)
            Log.debug("clients: client \(s.clientId) reclaimed: \(freed) spans")
            s.reset()
            return true
        }
    }

    // MARK: In-process clients (embedded mode)

    /// Registers a client of this process.
    func registerInProcess() throws(ChiError) -> (ClientSlot, chi_reg_reply_t) {
        var m = chi_reg_msg_t()
        m.magic = CHI_REG_MAGIC
        m.type = CHI_REG_HELLO
        m.abi_major = UInt32(CHI_ABI_MAJOR)
        m.layout = CHI_SEG_LAYOUT
        let (reply, slot) = lock.withLock { hello(m, pid: getpid(), fd: -1) }
        guard let slot else { throw ChiError(-reply.status, Self.message(reply)) }
        return (slot, reply)
    }

    func requestInProcess(_ m: chi_reg_msg_t, from s: ClientSlot) -> chi_reg_reply_t? {
        lock.withLock { request(m, from: s) }
    }

    func unregisterInProcess(_ s: ClientSlot) {
        lock.withLock { gone(s) }
    }

    static func message(_ r: chi_reg_reply_t) -> String {
        withUnsafeBytes(of: r.message) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
    }

    // MARK: Statistics

    struct ClientInfo {
        var id: UInt64, slot: Int, pid: pid_t, inflight: Int64, queued: Int, bytes: UInt64, state: String,
            returnedDropped: UInt64
    }

    func clients() -> [ClientInfo] {
        lock.withLock {
            slots.filter { $0.state != .free }.map {
                ClientInfo(id: $0.clientId, slot: $0.index, pid: $0.pid, inflight: $0.inflight,
                           queued: $0.rings.reduce(0) { $0 + $1.count },
                           bytes: spans.bytes(of: $0.owner), state: $0.state.rawValue,
                           returnedDropped: chi_load64($0.returnedDropped))
            }
        }
    }

    /// Where each live client's rings are now (for flush).
    func ringPositions() -> [(ring: ShmRing, at: UInt64, slot: ClientSlot?)] {
        lock.withLock {
            slots.filter { $0.state == .live }.flatMap { s in s.rings.map { (ring: $0, at: $0.enqueuePosition, slot: Optional(s)) } }
        }
    }

}
