import CChimaera
import Glibc
import NIOCore
import NIOPosix

/// The outbound side of one other node: its connection, the requests sent to it and not yet
/// answered, and the requests waiting while it connects.
final class Peer: @unchecked Sendable {
    enum State: Equatable { case idle, connecting, up, down }

    /// A request sent (or queued) to this peer, until its reply or its deadline.
    struct Pending {
        unowned(unsafe) var record: TaskRecord
        var worker: Int
        var deadline: UInt64
    }

    let id: UInt32
    let host: ClusterConfig.Host
    let lock = Mutex()
    // Under `lock` (workers and the network thread):
    var state = State.idle
    var downSince: UInt64 = 0
    var downReason = ""
    var pending: [UInt64: Pending] = [:]
    var outbox: [ByteBuffer] = []
    var drainScheduled = false
    // Network thread only:
    var conn: Connection?
    var synced = false
    var lastPingNs: UInt64 = 0
    var lastLoggedReason = ""
    let nextReqId = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)

    init(id: UInt32, host: ClusterConfig.Host) {
        self.id = id
        self.host = host
        nextReqId.initialize(to: 0)
    }
}

/// A remote request running on this node: where its reply goes and the bulk buffers made
/// for it.
final class RemoteIncoming: @unchecked Sendable {
    /// The connection the request came on; nil for a job this node gave itself (catalog sync).
    let conn: Connection?
    let reqId: UInt64
    let task: UnsafeMutablePointer<chi_task_t>
    let taskOff: UInt64
    let bulks: [(field: Int, off: UInt64, size: UInt64)]
    /// For local jobs: called with the status on the worker.
    let onDone: (@Sendable (CInt, String?) -> Void)?

    init(conn: Connection?, reqId: UInt64, task: UnsafeMutablePointer<chi_task_t>, taskOff: UInt64,
         bulks: [(field: Int, off: UInt64, size: UInt64)], onDone: (@Sendable (CInt, String?) -> Void)? = nil)
    {
        self.conn = conn
        self.reqId = reqId
        self.task = task
        self.taskOff = taskOff
        self.bulks = bulks
        self.onDone = onDone
    }
}

/// The remote_queue: moves tasks between this runtime and the others over TCP (SwiftNIO, one
/// event-loop thread). Workers hand it tasks for containers on other nodes (`forward`) and
/// the outcome of requests that came from other nodes (`reply`); the network thread does
/// the rest. Requests are matched to replies by a per-peer request id, never by pointer.
///
/// Failure handling: a peer that refuses, drops the connection or stays silent for
/// `cluster.timeout_ms` is marked down and every request to it completes with CHI_ENODE
/// naming the node; a down peer is retried every second, and tasks sent to it meanwhile fail
/// at once rather than wait. On every (re)connection this node pulls the peer's pool catalog
/// and creates the pools it lacks, which is how a restarted node rejoins.
package final class RemoteQueue: @unchecked Sendable {
    unowned(unsafe) let runtime: Runtime
    let map: ClusterMap
    let key: [UInt8]
    let timeoutMs: Int
    let timeoutNs: UInt64
    let heartbeatNs: UInt64
    let listenHost: String
    let listenPort: Int
    private let group: MultiThreadedEventLoopGroup
    let loop: EventLoop
    private(set) var peers: [Peer] = []
    private var listener: Channel?
    fileprivate(set) var inbound: [ObjectIdentifier: Connection] = [:]
    private var ticker: RepeatedTask?
    private var stopped = false
    /// Requests from one connection running here at once before its reads pause.
    static let maxInflight: UInt64 = 4096
    static let retryNs: UInt64 = 1_000_000_000

    // Counters (relaxed atomics; for statistics).
    let counters = UnsafeMutablePointer<UInt64>.allocate(capacity: 8)
    enum Counter: Int { case sent = 0, served, failed, rejectedConnections, catalogPools }

    package init(runtime: Runtime, map: ClusterMap, config: ClusterConfig) {
        self.runtime = runtime
        self.map = map
        key = config.key
        timeoutMs = config.timeoutMs
        timeoutNs = UInt64(config.timeoutMs) * 1_000_000
        heartbeatNs = UInt64(config.heartbeatMs) * 1_000_000
        let me = map.host(map.selfId)
        if config.listen.isEmpty {
            listenHost = me.host
            listenPort = me.port
        } else {
            let l = ClusterConfig.parseHost(config.listen, defaultPort: me.port)
            listenHost = l?.host ?? config.listen
            listenPort = l?.port ?? me.port
        }
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        loop = group.next()
        counters.initialize(repeating: 0, count: 8)
        for (i, h) in map.hosts.enumerated() { peers.append(Peer(id: UInt32(i + 1), host: h)) }
    }

    func count(_ c: Counter, _ n: UInt64 = 1) { _ = chi_add64(counters + c.rawValue, n) }
    func counter(_ c: Counter) -> UInt64 { chi_load64_relaxed(counters + c.rawValue) }

    @inline(__always)
    func peer(_ node: UInt32) -> Peer { peers[Int(node) - 1] }

    // MARK: Start and stop

    /// Listens, connects to every peer and pulls their catalogs (waiting at most the timeout
    /// for peers that answer; a peer that is down is simply retried later).
    package func start() throws(ChiError) {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(Connection(rq: self, role: .inbound))
                }
            }
        do {
            listener = try bootstrap.bind(host: listenHost, port: listenPort).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw ChiError(EADDRINUSE, "\(map.describe(map.selfId)): cannot listen on \(listenHost):\(listenPort): \(error)")
        }
        Log.info("remote: \(map.describe(map.selfId)) listening on \(listenHost):\(listenPort), \(map.count) nodes")
        let tick = TimeAmount.nanoseconds(Int64(max(10_000_000, min(heartbeatNs, timeoutNs / 4))))
        ticker = loop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { [self] _ in self.tick() }
        loop.execute { [self] in
            for p in peers where p.id != map.selfId { connect(p) }
        }
        // Pools made while this node was away arrive with the catalogs.
        let deadline = chi_now_ns() + min(timeoutNs, 3_000_000_000)
        while chi_now_ns() < deadline {
            let settled = (try? loop.submit { [self] in
                peers.allSatisfy { p in p.id == map.selfId || p.synced || p.lock.withLock { p.state == .down } }
            }.wait()) ?? true
            if settled && chi_load32(catalogJobs) == 0 { break }
            usleep(2000)
        }
    }

    /// Closes every connection and fails what is still in flight. Call after the workers
    /// stopped; waits briefly for replies already queued to go out.
    package func shutdown() {
        if stopped { return }
        stopped = true
        let done = loop.submit { [self] in
            ticker?.cancel()
            for c in inbound.values { c.outboxDrainNow() }
            for p in peers { p.conn?.close() }
            for c in inbound.values { c.close() }
            listener?.close(promise: nil)
        }
        _ = try? done.wait()
        try? group.syncShutdownGracefully()
        for p in peers {
            let lost = p.lock.withLock { () -> [Peer.Pending] in
                let l = Array(p.pending.values)
                p.pending.removeAll()
                return l
            }
            for e in lost { e.record.task.pointee.rc = -CInt(CHI_ESTOPPED) }
        }
    }

    // MARK: Worker side

    /// Sends record `r` to container `c` on another node. Called on worker `w`; never blocks.
    func forward(_ r: TaskRecord, to c: Container, from w: Worker) {
        let t = r.task
        if t.pointee.flags & UInt32(CHI_TF_LOCAL) != 0 {
            r.errorMessage = "the task is marked CHI_TF_LOCAL but its container \(c.id) is on \(map.describe(c.node))"
            w.complete(r, rc: -CInt(CHI_ENOCONTAINER))
            return
        }
        guard let m = r.method else {
            w.complete(r, rc: -CInt(CHI_ENOMETHOD))
            return
        }
        let p = peer(c.node)
        let reqId = chi_add64(p.nextReqId, 1) &+ 1
        let frame: ByteBuffer
        do {
            frame = try TaskCodec.encodeRequest(t, m, container: c.id, reqId: reqId, segment: runtime.segment)
        } catch {
            r.errorMessage = error.message
            w.complete(r, rc: -error.code)
            return
        }
        let now = chi_now_ns()
        enum Next { case fail(String), queued, drain, connect }
        let next: Next = p.lock.withLock {
            switch p.state {
            case .down where now &- p.downSince < Self.retryNs:
                return .fail(p.downReason)
            case .down, .idle:
                p.state = .connecting
                p.pending[reqId] = .init(record: r, worker: w.id, deadline: now &+ timeoutNs)
                p.outbox.append(frame)
                return .connect
            case .connecting:
                p.pending[reqId] = .init(record: r, worker: w.id, deadline: now &+ timeoutNs)
                p.outbox.append(frame)
                return .queued
            case .up:
                p.pending[reqId] = .init(record: r, worker: w.id, deadline: now &+ timeoutNs)
                p.outbox.append(frame)
                if p.drainScheduled { return .queued }
                p.drainScheduled = true
                return .drain
            }
        }
        switch next {
        case .fail(let why):
            count(.failed)
            r.errorMessage = "\(map.describe(c.node)) is unreachable: \(why)"
            w.complete(r, rc: -CInt(CHI_ENODE))
        case .queued: break
        case .drain: loop.execute { [self] in drainPeer(p) }
        case .connect: loop.execute { [self] in connect(p) }
        }
        count(.sent)
    }

    /// Sends the outcome of a request that came from another node, then frees what was made
    /// for it. Called on a worker once the task completed.
    func reply(_ r: TaskRecord, _ inc: RemoteIncoming) {
        let seg = runtime.segment
        if let conn = inc.conn {
            let b: ByteBuffer
            if let m = r.method {
                b = TaskCodec.encodeReply(inc.task, m, reqId: inc.reqId, message: r.errorMessage,
                                          bulks: inc.bulks, segment: seg)
            } else {
                b = TaskCodec.encodeReject(reqId: inc.reqId, rc: inc.task.pointee.rc,
                                           message: r.errorMessage ?? ChiError.describe(inc.task.pointee.rc))
            }
            if conn.outbox.push(b) { loop.execute { [self] in drain(conn) } }
            let left = chi_sub64(conn.inflight, 1) &- 1
            if left == Self.maxInflight / 2 { loop.execute { conn.setReading(true) } }
        } else {
            inc.onDone?(inc.task.pointee.rc, r.errorMessage)
        }
        count(.served)
        for x in inc.bulks { runtime.allocator.free(x.off) }
        runtime.allocator.free(inc.taskOff)
    }

    // MARK: Network thread

    private func connect(_ p: Peer) {
        guard !stopped, p.conn == nil else { return }
        p.lock.withLock { p.state = .connecting }
        ClientBootstrap(group: loop)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.milliseconds(Int64(min(timeoutMs, 2000))))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(Connection(rq: self, role: .outbound(p)))
                }
            }
            .connect(host: p.host.host, port: p.host.port)
            .whenFailure { [self] error in
                markDown(p, "cannot connect to \(p.host.host):\(p.host.port): \(Self.describe(error))")
            }
    }

    /// The handshake with `p` finished: send what waited, then ask for its catalog.
    func peerUp(_ p: Peer, _ c: Connection) {
        p.conn = c
        let frames = p.lock.withLock { () -> [ByteBuffer] in
            p.state = .up
            p.drainScheduled = false
            let f = p.outbox
            p.outbox.removeAll()
            return f
        }
        Log.info("remote: connected to \(map.describe(p.id))")
        var req = ByteBuffer.frame(.catalogRequest, capacity: 0)
        req.endFrame()
        c.send(batch: frames + [req])
    }

    /// Marks `p` down and fails everything sent to it.
    private func markDown(_ p: Peer, _ why: String) {
        let (lost, wasUp) = p.lock.withLock { () -> ([Peer.Pending], Bool) in
            let wasUp = p.state == .up
            p.state = .down
            p.downSince = chi_now_ns()
            p.downReason = why
            let l = Array(p.pending.values)
            p.pending.removeAll()
            p.outbox.removeAll()
            p.drainScheduled = false
            return (l, wasUp)
        }
        p.synced = true // nothing to wait for at start-up
        // Logged when it changes, not on every retry.
        if wasUp || why != p.lastLoggedReason {
            p.lastLoggedReason = why
            Log.warn("remote: \(map.describe(p.id)) is down: \(why)")
        }
        for e in lost { fail(e, "\(map.describe(p.id)): \(why)") }
    }

    private func fail(_ e: Peer.Pending, _ message: String) {
        count(.failed)
        e.record.errorMessage = message
        e.record.task.pointee.rc = -CInt(CHI_ENODE)
        finish(e.record, worker: e.worker)
    }

    func inboundOpened(_ c: Connection) { inbound[ObjectIdentifier(c)] = c }

    /// A peer proved itself on an inbound connection: it is alive, so if this node had
    /// marked it down, reconnect now rather than at the next retry.
    func inboundAuthenticated(_ c: Connection) {
        let p = peer(c.peerNode)
        if p.lock.withLock({ p.state == .down }) { connect(p) }
    }

    /// An error as a short sentence (NIO's descriptions nest several layers deep).
    static func describe(_ error: Error) -> String {
        if let e = error as? NIOConnectionError {
            if let f = e.connectionErrors.first { return describe(f.error) }
            if let d = e.dnsAAAAError ?? e.dnsAError { return "cannot resolve the host: \(d)" }
            return "no address to connect to"
        }
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)) }
        if let ch = error as? ChannelError, case .connectTimeout = ch { return "connection timed out" }
        return "\(error)"
    }

    func connectionClosed(_ c: Connection, reason: String) {
        switch c.role {
        case .outbound(let p):
            if p.conn === c || p.conn == nil {
                p.conn = nil
                markDown(p, reason)
            }
        case .inbound:
            inbound[ObjectIdentifier(c)] = nil
            if !c.isAuthenticated { count(.rejectedConnections) }
        }
    }

    private func drainPeer(_ p: Peer) {
        let (frames, c) = p.lock.withLock { () -> ([ByteBuffer], Connection?) in
            p.drainScheduled = false
            guard p.state == .up, let c = p.conn else { return ([], nil) }
            let f = p.outbox
            p.outbox.removeAll(keepingCapacity: true)
            return (f, c)
        }
        c?.send(batch: frames)
    }

    /// Writes the replies queued on an inbound connection.
    func drain(_ c: Connection) {
        switch c.role {
        case .outbound(let p): drainPeer(p)
        case .inbound: c.send(batch: c.outbox.take())
        }
    }

    /// Every tick: expire requests past their deadline, probe quiet connections, declare
    /// silent peers dead and retry down ones.
    private func tick() {
        let now = chi_now_ns()
        for p in peers where p.id != map.selfId {
            let expired = p.lock.withLock { () -> [Peer.Pending] in
                var out: [Peer.Pending] = []
                for (id, e) in p.pending where e.deadline <= now {
                    out.append(e)
                    p.pending[id] = nil
                }
                return out
            }
            for e in expired { fail(e, "\(map.describe(p.id)) did not answer within \(timeoutMs) ms") }
            let state = p.lock.withLock { p.state }
            if state == .up, let c = p.conn {
                if now &- c.lastHeardNs > timeoutNs {
                    c.close()
                    p.conn = nil
                    markDown(p, "silent for \(timeoutMs) ms")
                } else if now &- p.lastPingNs >= heartbeatNs {
                    p.lastPingNs = now
                    var b = ByteBuffer.frame(.ping, capacity: 0)
                    b.endFrame()
                    c.send(b)
                }
            } else if state == .down && now &- p.downSince >= Self.retryNs {
                connect(p)
            }
        }
        for c in inbound.values where now &- c.lastHeardNs > 4 * timeoutNs { c.reject("silent") }
    }

    // MARK: Requests from other nodes

    /// A request arrived: build the task in this node's segment and hand it to the worker of
    /// its container. Problems that concern the task (no such pool, full segment) are
    /// answered with a status; a body that does not parse closes the connection.
    func handleRequest(_ body: inout ByteBuffer, from c: Connection) throws {
        let h = try TaskCodec.readRequestHeader(&body)
        func reject(_ rc: CInt, _ msg: String) {
            c.send(TaskCodec.encodeReject(reqId: h.reqId, rc: -rc, message: "\(map.describe(map.selfId)): \(msg)"))
        }
        guard let pool = runtime.pool(h.poolId) else {
            return reject(CInt(CHI_ENOPOOL), "no pool with id \(h.poolId)")
        }
        guard let m = pool.module.method(h.method) else {
            return reject(CInt(CHI_ENOMETHOD), "module \(pool.module.name) has no method \(h.method)")
        }
        guard h.taskSize == m.pointee.task_size else {
            return reject(CInt(CHI_EBADTASK), "method \(h.method) of \(pool.module.name) has a \(m.pointee.task_size)-byte task here, \(h.taskSize) there: module versions differ")
        }
        guard Int(h.container) < pool.containers.count, pool.containers[Int(h.container)].node == map.selfId else {
            return reject(CInt(CHI_ENOCONTAINER), "container \(h.container) of pool \(pool.name) is not here")
        }
        let size = UInt64(m.pointee.task_size)
        guard let off = runtime.allocator.allocate(size), let raw = runtime.segment.pointer(off, size) else {
            return reject(ENOMEM, "no room in the segment for a task")
        }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: Int(size))
        let bulks: [(field: Int, off: UInt64, size: UInt64)]
        do {
            bulks = try TaskCodec.decodeRequestFields(&body, into: raw, m, segment: runtime.segment,
                                                      allocator: runtime.allocator)
        } catch let e as ChiError {
            runtime.allocator.free(off)
            return reject(e.code, e.message)
        } catch {
            runtime.allocator.free(off)
            throw error
        }
        let t = raw.assumingMemoryBound(to: chi_task_t.self)
        t.pointee.size = UInt32(size)
        t.pointee.method = h.method
        t.pointee.pool_id = h.poolId
        t.pointee.task_id = h.reqId
        t.pointee.dom_query = chi_dq_direct_id(UInt32(CHI_SUBDOMAIN_GLOBAL_CONTAINERS), UInt64(h.container))
        t.pointee.prio = h.prio
        t.pointee.flags = h.flags & ~UInt32(CHI_TASK_PERIODIC | CHI_TASK_FIRE_AND_FORGET)
        t.pointee.lane_hash = h.laneHash
        let inc = RemoteIncoming(conn: c, reqId: h.reqId, task: t, taskOff: off, bulks: bulks)
        let n = chi_add64(c.inflight, 1) &+ 1
        if n >= Self.maxInflight { c.setReading(false) }
        submit(inc, container: pool.containers[Int(h.container)])
    }

    /// Hands a request to the worker that owns its container's first lane (any worker
    /// routes it correctly; this one usually saves a hop).
    func submit(_ inc: RemoteIncoming, container: Container) {
        let w = container.lanes.first?.worker ?? runtime.workers[0]
        w.post(.remoteSubmit, inc)
    }

    /// A reply arrived: write the outputs into the original task and let its worker finish it.
    func handleReply(_ body: inout ByteBuffer, from c: Connection) throws {
        guard case .outbound(let p) = c.role else { return }
        let h = try TaskCodec.readReplyHeader(&body)
        guard let e = p.lock.withLock({ p.pending.removeValue(forKey: h.reqId) }) else {
            return // it timed out already
        }
        let r = e.record
        var rc = CInt(h.rc)
        if let m = r.method, !(rc < 0 && body.readableBytes == 0) {
            do {
                try TaskCodec.decodeReplyFields(&body, into: r.task, m, segment: runtime.segment)
            } catch {
                rc = -error.code
                r.errorMessage = "reply from \(map.describe(p.id)): \(error.message)"
            }
        }
        if rc < 0 && !h.message.isEmpty && r.errorMessage == nil { r.errorMessage = h.message }
        r.task.pointee.rc = rc
        finish(r, worker: e.worker)
    }

    /// Completes a record whose reply arrived. A plain task is finished here, on the network
    /// thread, which saves waking its worker on the way back; copies of a broadcast and
    /// periodic tasks go back to their worker, which owns their bookkeeping.
    private func finish(_ r: TaskRecord, worker: Int) {
        let w = runtime.workers[worker]
        guard r.parent == nil, r.remote == nil, !r.isPeriodic, let pool = r.pool else {
            w.post(.remoteDone, r)
            return
        }
        pool.inflightAdd(pool.networkSlot, -1)
        if let msg = r.errorMessage, r.task.pointee.rc < 0 { runtime.attachMessage(msg, to: r.task) }
        runtime.finishTask(r.task, off: r.taskOff, isInternal: r.isInternal)
        w.post(.recycle, r)
    }

    // MARK: Catalog

    /// The pools of this node (all but admin), for a peer that (re)joins.
    func catalogFrame() -> ByteBuffer {
        var b = ByteBuffer.frame(.catalog, capacity: 256)
        let pools = runtime.livePools().filter { $0.id != Runtime.adminPoolId }
        b.writeInteger(UInt32(pools.count))
        for p in pools {
            b.writeInteger(p.id)
            b.writeInteger(UInt32(p.containersPerNode))
            for s in [p.module.name, p.name] {
                b.writeInteger(UInt16(s.utf8.count))
                b.writeString(s)
            }
            b.writeInteger(UInt32(p.createParams.count))
            b.writeBytes(p.createParams)
        }
        b.endFrame()
        return b
    }

    /// Catalog jobs still running (start-up waits for them).
    let catalogJobs: UnsafeMutablePointer<UInt32> = {
        let p = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        p.initialize(to: 0)
        return p
    }()

    /// Creates the pools a peer has and this node lacks, each through a CreatePool task on
    /// the local admin container (module hooks run on workers, never on this thread).
    func mergeCatalog(_ body: inout ByteBuffer, from c: Connection) throws {
        guard case .outbound(let p) = c.role else { return }
        let n: UInt32 = try body.readInt("pool count")
        guard n <= 65536 else { throw FrameError.malformed("catalog of \(n) pools") }
        for _ in 0..<n {
            let id: UInt64 = try body.readInt("pool id")
            let cpn: UInt32 = try body.readInt("containers per node")
            var names: [String] = []
            for what in ["module", "pool name"] {
                let len: UInt16 = try body.readInt("\(what) length")
                let s = try body.readExactly(Int(len), what)
                names.append(String(decoding: s.readableBytesView, as: UTF8.self))
            }
            let plen: UInt32 = try body.readInt("parameter length")
            let params = Array(try body.readExactly(Int(plen), "parameters").readableBytesView)
            if runtime.pool(id) != nil { continue }
            createFromCatalog(id: id, module: names[0], name: names[1], perNode: cpn, params: params, from: p.id)
        }
        p.synced = true
    }

    private func createFromCatalog(id: UInt64, module: String, name: String, perNode: UInt32,
                                   params: [UInt8], from node: UInt32) {
        let size = UInt64(MemoryLayout<chi_admin_create_pool_task_t>.size)
        guard id > 0, id < UInt64(Runtime.maxPools),
              module.utf8.count < Int(CHI_NAME_MAX), name.utf8.count < Int(CHI_NAME_MAX),
              let off = runtime.allocator.allocate(size), let raw = runtime.segment.pointer(off, size)
        else { return }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: Int(size))
        let t = raw.assumingMemoryBound(to: chi_admin_create_pool_task_t.self)
        var bulks: [(field: Int, off: UInt64, size: UInt64)] = []
        if !params.isEmpty {
            guard let poff = runtime.allocator.allocate(UInt64(params.count)),
                  let pp = runtime.segment.pointer(poff, UInt64(params.count)) else {
                runtime.allocator.free(off)
                return
            }
            pp.copyMemory(from: params, byteCount: params.count)
            t.pointee.params = chi_shm_ptr_t(segment: 0, reserved: 0, offset: poff)
            t.pointee.params_size = UInt32(params.count)
            bulks.append((4, poff, UInt64(params.count)))
        }
        withUnsafeMutableBytes(of: &t.pointee.module) { $0.copyBytes(from: module.utf8) }
        withUnsafeMutableBytes(of: &t.pointee.name) { $0.copyBytes(from: name.utf8) }
        t.pointee.containers_per_node = perNode
        t.pointee.pool_id = id
        t.pointee.hdr.size = UInt32(size)
        t.pointee.hdr.method = UInt32(CHI_ADMIN_CREATE_POOL)
        t.pointee.hdr.pool_id = Runtime.adminPoolId
        t.pointee.hdr.dom_query = chi_dq_local_id(UInt32(CHI_SUBDOMAIN_LOCAL_CONTAINERS), 0)
        _ = chi_add32(catalogJobs, 1)
        count(.catalogPools)
        let desc = map.describe(node)
        let inc = RemoteIncoming(conn: nil, reqId: 0, task: raw.assumingMemoryBound(to: chi_task_t.self),
                                 taskOff: off, bulks: bulks) { [self] rc, msg in
            if rc < 0 { Log.warn("remote: pool \"\(name)\" (id \(id)) from \(desc)'s catalog: \(msg ?? ChiError.describe(rc))") }
            _ = chi_sub32(self.catalogJobs, 1)
        }
        guard let admin = runtime.pool(Runtime.adminPoolId)?.local.first else { return }
        submit(inc, container: admin)
    }

    // MARK: Statistics

    /// Each peer's state, for statistics and `chimaera cluster status`.
    func peerStates() -> [(id: UInt32, host: String, state: String, pending: Int, reason: String)] {
        peers.map { p in
            if p.id == map.selfId { return (p.id, "\(p.host.host):\(p.host.port)", "self", 0, "") }
            return p.lock.withLock {
                let s: String
                switch p.state {
                case .idle: s = "idle"
                case .connecting: s = "connecting"
                case .up: s = "up"
                case .down: s = "down"
                }
                return (p.id, "\(p.host.host):\(p.host.port)", s, p.pending.count, p.state == .down ? p.downReason : "")
            }
        }
    }
}

extension Connection {
    var isAuthenticated: Bool { authed }

    /// Writes whatever replies are queued (network thread; used at shutdown).
    func outboxDrainNow() { send(batch: outbox.take()) }
}

extension RemoteQueue {
    /// Waits until the requests other nodes sent here have been answered (at most `maxNs`).
    func quiesce(maxNs: UInt64) {
        let deadline = chi_now_ns() &+ maxNs
        while chi_now_ns() < deadline {
            let busy = (try? loop.submit { [self] in
                inbound.values.contains { chi_load64($0.inflight) > 0 }
            }.wait()) ?? false
            if !busy { break }
            usleep(1000)
        }
        // Let the network thread write what the last replies queued.
        _ = try? loop.submit { [self] in for c in inbound.values { c.outboxDrainNow() } }.wait()
    }
}
