import CChimaera
import Glibc
import NIOCore
import NIOPosix

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
    private(set) var inbound: [ObjectIdentifier: Connection] = [:]
    private var ticker: RepeatedTask?
    /// Set (1) when shutdown begins: nothing more is handed to the network thread.
    private let stopFlag: UnsafeMutablePointer<UInt32> = {
        let p = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        p.initialize(to: 0)
        return p
    }()
    private var stopped: Bool { chi_load32(stopFlag) != 0 }
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
        batches = Array(repeating: Array(repeating: nil, count: peers.count), count: runtime.workers.count)
        dirty = Array(repeating: [], count: runtime.workers.count)
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
        chi_store32(stopFlag, 1)
        let done = loop.submit { [self] in
            ticker?.cancel()
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
        if stopped {
            w.complete(r, rc: -CInt(CHI_ESTOPPED))
            return
        }
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
        // The request is registered before its first byte leaves: a fast reply must find it.
        if let why = p.register(reqId, .init(record: r, worker: w.id, deadline: now &+ timeoutNs),
                                now: now, retryNs: Self.retryNs) {
            count(.failed)
            r.errorMessage = "\(map.describe(c.node)) is unreachable: \(why)"
            w.complete(r, rc: -CInt(CHI_ENODE))
            return
        }
        enqueue(frame, to: p, from: w)
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
            // A peer this node cannot reach gets nothing: its request times out there.
            if let w = Worker.current, w.runtime === runtime {
                enqueue(b, to: peer(conn.peerNode), from: w)
            } else {
                send(b, to: peer(conn.peerNode))
            }
            let left = chi_sub64(conn.inflight, 1) &- 1
            if left == Self.maxInflight / 2 && !stopped { loop.execute { conn.setReading(true) } }
        } else {
            inc.onDone?(inc.task.pointee.rc, r.errorMessage)
        }
        count(.served)
        for x in inc.bulks { runtime.allocator.free(x.off) }
        runtime.allocator.free(inc.taskOff)
    }

    // MARK: Batching on workers

    /// Frames a worker made during one pass of its loop, per peer: sent together when the
    /// pass ends (`flush`), one system call for a burst of tasks. Each worker touches only
    /// its own row.
    private var batches: [[ByteBuffer?]] = []
    private var dirty: [[Int]] = []
    static let batchBytes = 64 << 10

    private func enqueue(_ frame: ByteBuffer, to p: Peer, from w: Worker) {
        let i = Int(p.id) - 1
        if frame.readableBytes >= Self.batchBytes {
            flush(w.id, i)
            after(p.send(frame, now: chi_now_ns(), retryNs: Self.retryNs) {}, p)
            return
        }
        if batches[w.id][i] == nil {
            batches[w.id][i] = frame
            dirty[w.id].append(i)
        } else {
            var f = frame
            batches[w.id][i]!.writeBuffer(&f)
        }
        if batches[w.id][i]!.readableBytes >= Self.batchBytes { flush(w.id, i) }
        w.remoteDirty = true
    }

    private func flush(_ w: Int, _ i: Int) {
        guard let b = batches[w][i] else { return }
        batches[w][i] = nil
        after(peers[i].send(b, now: chi_now_ns(), retryNs: Self.retryNs) {}, peers[i])
    }

    /// Sends what worker `w` batched this pass. Called by the worker at the end of a pass.
    func flush(_ w: Worker) {
        w.remoteDirty = false
        for i in dirty[w.id] { flush(w.id, i) }
        dirty[w.id].removeAll(keepingCapacity: true)
    }

    // MARK: Network thread

    /// Sends a frame that needs no reply bookkeeping (replies, pings, catalogs). Any thread.
    func send(_ f: ByteBuffer, to p: Peer) {
        after(p.send(f, now: chi_now_ns(), retryNs: Self.retryNs) {}, p)
    }

    /// What a send asked for: a drain or a connection, on the network thread.
    @inline(__always)
    private func after(_ res: Peer.SendResult, _ p: Peer) {
        if stopped { return }
        switch res {
        case .drain: loop.execute { [self] in drainPeer(p) }
        case .connect: loop.execute { [self] in connect(p) }
        case .done, .down: break
        }
    }

    /// Opens the connection to `p`: dial on a short-lived thread, then hand the socket to NIO
    /// (keeping a duplicate descriptor for the workers' writes) and run the handshake.
    private func connect(_ p: Peer) {
        guard !stopped, !p.dialing, p.conn == nil else { return }
        p.dialing = true
        p.lock.withLock { if p.state != .up { p.state = .connecting } }
        let host = p.host, ms = min(timeoutMs, 2000)
        Dialer.detached { [self] in
            let r = Dialer.dial(host: host.host, port: host.port, timeoutMs: ms)
            if stopped {
                if case .success(let fd) = r { close(fd) }
                return
            }
            loop.execute { [self] in
                p.dialing = false
                switch r {
                case .failure(let e):
                    markDown(p, "cannot connect to \(host.host):\(host.port): \(e.message)")
                case .success(let fd):
                    if stopped {
                        close(fd)
                        return
                    }
                    let wfd = dup(fd)
                    ClientBootstrap(group: loop)
                        .channelInitializer { [self] channel in
                            channel.eventLoop.makeCompletedFuture {
                                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
                                try channel.pipeline.syncOperations.addHandler(
                                    Connection(rq: self, role: .outbound(p), writeFd: wfd))
                            }
                        }
                        .withConnectedSocket(fd)
                        .whenFailure { [self] error in
                            close(wfd)
                            markDown(p, "cannot set up the connection to \(host.host):\(host.port): \(Self.describe(error))")
                        }
                }
            }
        }
    }

    /// The handshake with `p` finished: from now on workers write to it directly; what
    /// queued meanwhile goes first, through NIO. Then ask for its catalog.
    func peerUp(_ p: Peer, _ c: Connection) {
        guard let channel = c.context?.channel else { return }
        p.conn = c
        p.lastHeardNs = chi_now_ns()
        let queued = p.lock.withLock { () -> Bool in
            p.dropConnectionLocked()
            p.state = .up
            p.writeFd = c.takeWriteFd()
            p.channel = channel
            p.nioWriting = !p.outbox.isEmpty
            return p.nioWriting
        }
        Log.info("remote: connected to \(map.describe(p.id))")
        if queued { drainPeer(p) }
        var req = ByteBuffer.frame(.catalogRequest, capacity: 0)
        req.endFrame()
        send(req, to: p)
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
            p.dropConnectionLocked()
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

    /// A peer proved itself on the connection it opened here: it is alive, so if this node
    /// has no connection to it, open one now rather than at the next retry.
    func inboundAuthenticated(_ c: Connection) {
        let p = peer(c.peerNode)
        p.lastHeardNs = chi_now_ns()
        let state = p.lock.withLock { p.state }
        if state == .down || state == .idle || (state == .connecting && !p.dialing && p.conn == nil) { connect(p) }
    }

    /// A frame arrived from node `id`.
    @inline(__always)
    func heard(_ id: UInt32) { peer(id).lastHeardNs = chi_now_ns() }

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
            c.closeWriteFd()
            if p.conn === c || p.conn == nil {
                p.conn = nil
                markDown(p, reason)
            }
        case .inbound:
            inbound[ObjectIdentifier(c)] = nil
            if !c.isAuthenticated { count(.rejectedConnections) }
        }
    }

    /// Hands the outbox of `p` to NIO, in order, and goes on until it is empty; then the
    /// workers write directly again.
    private func drainPeer(_ p: Peer) {
        let (frames, channel) = p.lock.withLock { () -> ([ByteBuffer], Channel?) in
            guard p.state == .up, let ch = p.channel else { return ([], nil) }
            if p.outbox.isEmpty {
                p.nioWriting = false
                return ([], nil)
            }
            p.nioWriting = true
            let f = p.outbox
            p.outbox.removeAll(keepingCapacity: true)
            return (f, ch)
        }
        guard let channel, let last = frames.last else { return }
        for f in frames.dropLast() { channel.write(f, promise: nil) }
        let done = loop.makePromise(of: Void.self)
        channel.writeAndFlush(last, promise: done)
        done.futureResult.whenComplete { [self] _ in drainPeer(p) }
    }

    /// Every tick: expire requests past their deadline, ping, declare silent peers dead
    /// and retry down ones.
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
            if state == .up {
                if now &- p.lastHeardNs > timeoutNs {
                    p.conn?.close()
                    p.conn = nil
                    markDown(p, "silent for \(timeoutMs) ms")
                } else if now &- p.lastPingNs >= heartbeatNs {
                    p.lastPingNs = now
                    var b = ByteBuffer.frame(.ping, capacity: 0)
                    b.endFrame()
                    send(b, to: p)
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
            send(TaskCodec.encodeReject(reqId: h.reqId, rc: -rc, message: "\(map.describe(map.selfId)): \(msg)"),
                 to: peer(c.peerNode))
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
        let p = peer(c.peerNode)
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
        let p = peer(c.peerNode)
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
        // Let NIO write what the last replies queued.
        while chi_now_ns() < deadline,
              peers.contains(where: { p in p.lock.withLock { p.state == .up && (p.nioWriting || !p.outbox.isEmpty) } }) {
            usleep(1000)
        }
    }
}
