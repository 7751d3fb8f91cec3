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
    /// The task, in the runtime's private memory (given back with the reply).
    let block: PrivateTask
    var task: UnsafeMutablePointer<chi_task_t> { block.task }
    /// The runtime's buffers holding its bulk data, by field index.
    let bulks: [(field: Int, off: UInt64, size: UInt64)]
    /// The bytes of `bulks`, charged to the connection's budget while the request runs.
    var bulkTotal: UInt64 { bulks.reduce(0) { $0 + $1.size } }
    /// A primary's copy of a change: its number in the container's sequence (0: none).
    var seq: UInt64 = 0
    /// For local jobs: called with the status on the worker.
    let onDone: (@Sendable (CInt, String?) -> Void)?

    init(conn: Connection?, reqId: UInt64, block: PrivateTask,
         bulks: [(field: Int, off: UInt64, size: UInt64)], onDone: (@Sendable (CInt, String?) -> Void)? = nil)
    {
        self.conn = conn
        self.reqId = reqId
        self.block = block
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
    /// `cluster.handshake_timeout_ms`, `cluster.max_pending_connections`, `cluster.max_bulk`
    /// and `cluster.connection_budget` (see ClusterConfig).
    let handshakeTimeoutMs: Int
    let maxPendingConnections: Int
    let maxBulk: UInt64
    let connectionBudget: UInt64
    /// The frame body an authenticated peer may send: one largest bulk field and its task.
    var maxFrameBody: UInt32 { UInt32(min(UInt64(FrameDecoder.maxBody), maxBulk + (1 << 20))) }
    /// `cluster.tls`; nil when off. Made by `start`.
    let tlsMode: ClusterConfig.TLSMode
    private(set) var tls: TLSContext?
    /// Inbound connections mid-handshake (network thread only).
    var pendingInbound = 0
    var lastPendingLogNs: UInt64 = 0
    let listenHost: String
    let listenPort: Int
    private let group: MultiThreadedEventLoopGroup
    let loop: EventLoop
    private(set) var peers: [Peer] = []
    private var listener: Channel?
    /// Connections peers opened to this node (network thread only).
    var inbound: [ObjectIdentifier: Connection] = [:]
    private var ticker: RepeatedTask?
    private var membershipTicker: RepeatedTask?
    /// The membership state machine (network thread only).
    var swim: Swim
    let swimConfig: SwimConfig
    /// Each node's membership state and since when (chi_now_ns), published by the network
    /// thread for workers deciding whether a task fails fast.
    let memberState: UnsafeMutablePointer<UInt32>
    let memberSince: UnsafeMutablePointer<UInt64>
    /// Set (1) when shutdown begins: nothing more is handed to the network thread.
    private let stopFlag: UnsafeMutablePointer<UInt32> = {
        let p = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        p.initialize(to: 0)
        return p
    }()
    var stopped: Bool { chi_load32(stopFlag) != 0 }
    /// Requests from one connection running here at once before its reads pause.
    static let maxInflight: UInt64 = 4096
    static let retryNs: UInt64 = 1_000_000_000

    // Counters (relaxed atomics; for statistics).
    let counters = UnsafeMutablePointer<UInt64>.allocate(capacity: 16)
    enum Counter: Int {
        case sent = 0, served, failed, rejectedConnections, catalogPools, refusedPending, refusedBulk
        /// Connections dropped, by why (`rejection(_:)`): every drop counts in one.
        case rejectedCertificate, rejectedTLSHandshake, rejectedTLSRecord, rejectedHandshakeTimeout,
             rejectedSilent, rejectedProtocol
    }

    /// The counter a connection dropped for `why` (Connection.reject's reason) counts in.
    static func rejection(_ why: String) -> Counter {
        if why.contains("certificate") { return .rejectedCertificate }
        if why.contains("record refused") { return .rejectedTLSRecord }
        if why.hasPrefix("TLS") { return .rejectedTLSHandshake }
        if why.hasPrefix("no handshake within") { return .rejectedHandshakeTimeout }
        if why == "silent" { return .rejectedSilent }
        return .rejectedProtocol
    }

    package init(runtime: Runtime, map: ClusterMap, config: ClusterConfig) {
        self.runtime = runtime
        self.map = map
        key = config.key
        timeoutMs = config.timeoutMs
        timeoutNs = UInt64(config.timeoutMs) * 1_000_000
        heartbeatNs = UInt64(config.heartbeatMs) * 1_000_000
        handshakeTimeoutMs = config.handshakeTimeoutMs
        tlsMode = config.tls
        maxPendingConnections = config.maxPendingConnections
        maxBulk = UInt64(config.maxBulk)
        connectionBudget = UInt64(config.connectionBudget)
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
        counters.initialize(repeating: 0, count: 16)
        swimConfig = config.membership
        let now = chi_now_ns()
        swim = Swim(selfId: map.selfId, nodes: map.count, config: config.membership, now: now, seed: now)
        memberState = .allocate(capacity: map.count)
        memberState.initialize(repeating: UInt32(MemberState.alive.rawValue), count: map.count)
        memberSince = .allocate(capacity: map.count)
        memberSince.initialize(repeating: now, count: map.count)
        for (i, h) in map.hosts.enumerated() {
            peers.append(Peer(id: UInt32(i + 1), host: h))
        }
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
        if tlsMode != .off { tls = try TLSContext(mode: tlsMode, key: key) }
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let limit = FrameLimit()
                    if let tls = self.tls { try channel.pipeline.syncOperations.addHandler(try TLSHandler(tls, server: true)) }
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(limit: limit)))
                    try channel.pipeline.syncOperations.addHandler(Connection(rq: self, role: .inbound, limit: limit))
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
        // A quarter of the probe timeout: timers fire at most that late.
        let mtick = TimeAmount.nanoseconds(Int64(max(2_000_000, swimConfig.probeTimeoutNs / 4)))
        membershipTicker = loop.scheduleRepeatedTask(initialDelay: mtick, delay: mtick) { [self] _ in membershipTick() }
        loop.execute { [self] in
            for p in peers where p.id != map.selfId { connect(p) }
        }
        // Pools made while this node was away arrive with the catalogs.
        let deadline = chi_now_ns() + min(timeoutNs, 3_000_000_000)
        while chi_now_ns() < deadline {
            let settled = (try? loop.submit { [self] in
                // The catalog and the membership view of every peer that answers: a restarted
                // node has refuted its old death before it serves.
                peers.allSatisfy { p in
                    p.id == map.selfId || (p.synced && p.viewSynced) || p.lock.withLock { p.state == .down }
                }
            }.wait()) ?? true
            if settled && chi_load32(catalogJobs) == 0 { break }
            usleep(2000)
        }
    }

    /// Closes every connection and fails what is still in flight. Call after the workers
    /// stopped; waits briefly for replies already queued to go out.
    package func shutdown() {
        if stopped { return }
        // A clean stop: every peer hears this node left (rather than suspect it and wait).
        _ = try? loop.submit { [self] in run(swim.leave(now: chi_now_ns())) }.wait()
        let leaveDeadline = chi_now_ns() &+ 200_000_000
        while chi_now_ns() < leaveDeadline,
              peers.contains(where: { p in p.lock.withLock { p.state == .up && (p.nioWriting || !p.outbox.isEmpty) } }) {
            usleep(1000)
        }
        chi_store32(stopFlag, 1)
        let done = loop.submit { [self] in
            ticker?.cancel()
            membershipTicker?.cancel()
            for p in peers { p.conn?.close() }
            for c in inbound.values { c.close() }
            listener?.close(promise: nil)
        }
        _ = try? done.wait()
        try? group.syncShutdownGracefully()
        HopTrace.flush()
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
        guard let m = r.method else {
            w.complete(r, rc: -CInt(CHI_ENOMETHOD))
            return
        }
        // The method's flag binds every caller (bindings build tasks without the task flag).
        if t.pointee.flags & UInt32(CHI_TF_LOCAL) != 0 || m.pointee.flags & UInt32(CHI_MF_LOCAL) != 0 {
            let why = t.pointee.flags & UInt32(CHI_TF_LOCAL) != 0 ? "task is marked CHI_TF_LOCAL" : "method is CHI_MF_LOCAL"
            r.errorMessage = "the \(why) but its container \(c.id) is on \(map.describe(c.node))"
            w.complete(r, rc: -CInt(CHI_ENOCONTAINER))
            return
        }
        // The membership view says the node is gone: fail now, naming it (a suspected node is
        // still used: it may only be slow).
        if let why = deadMessage(c.node) {
            count(.failed)
            r.errorMessage = why
            w.complete(r, rc: -CInt(CHI_ENODE))
            return
        }
        send(r, m, container: c.id, to: c.node, from: w, replica: false)
    }

    /// Sends a changing task that ran on the primary here to the backup of container
    /// `container` on `node` (Worker+Dispatch.swift's replicate); its reply completes `r`
    /// again on worker `w`. The copy carries the task's outputs and CHI_TASK_REPLICA.
    func forwardBackup(_ r: TaskRecord, container: UInt32, node: UInt32, from w: Worker) {
        if stopped {
            w.complete(r, rc: -CInt(CHI_ESTOPPED))
            return
        }
        guard let m = r.method else {
            w.complete(r, rc: -CInt(CHI_ENOMETHOD))
            return
        }
        if let why = deadMessage(node) {
            count(.failed)
            r.errorMessage = why
            w.complete(r, rc: -CInt(CHI_ENODE))
            return
        }
        send(r, m, container: container, to: node, from: w, replica: true)
    }

    /// Encodes `r` for container `container` on `node`, registers it and queues it: the
    /// common tail of `forward` and `forwardBackup`.
    private func send(_ r: TaskRecord, _ m: UnsafePointer<chi_method_desc_t>, container: UInt32, to node: UInt32,
                      from w: Worker, replica: Bool)
    {
        let p = peer(node)
        let reqId = chi_add64(p.nextReqId, 1) &+ 1
        HopTrace.note("forward", tls: tls != nil, origin: map.selfId, dest: node, reqId: reqId)
        let frame: ByteBuffer
        do {
            let owner = r.bulkOwner
            frame = try TaskCodec.encodeRequest(r.task, m, container: container, reqId: reqId, maxBulk: maxBulk,
                                                replica: replica, seq: replica ? r.replicaSeq : 0) {
                runtime.resolveBulk($0, $1, owner: owner)
            }
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
            r.errorMessage = "\(map.describe(node)) is unreachable: \(why)"
            w.complete(r, rc: -CInt(CHI_ENODE))
            return
        }
        enqueue(frame, to: p, from: w)
        count(.sent)
        HopTrace.note("queued", tls: tls != nil, origin: map.selfId, dest: node, reqId: reqId)
    }

    /// Sends the outcome of a request that came from another node, then frees what was made
    /// for it. Called on a worker once the task completed.
    func reply(_ r: TaskRecord, _ inc: RemoteIncoming) {
        let seg = runtime.segment
        if let conn = inc.conn {
            HopTrace.note("served", tls: tls != nil, origin: conn.peerNode, dest: map.selfId, reqId: inc.reqId)
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
            HopTrace.note("replyQueued", tls: tls != nil, origin: conn.peerNode, dest: map.selfId, reqId: inc.reqId)
            if !inc.bulks.isEmpty { _ = chi_sub64(conn.bulkBytes, inc.bulkTotal) }
            let left = chi_sub64(conn.inflight, 1) &- 1
            if left == Self.maxInflight / 2 && !stopped { loop.execute { conn.setReading(true) } }
        } else {
            inc.onDone?(inc.task.pointee.rc, r.errorMessage)
        }
        count(.served)
        for x in inc.bulks { try? runtime.slab.free(x.off, kind: UInt32(CHI_MEM_BUFFER)) }
        PrivateTaskPool.give(inc.block)
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

    // MARK: Sending

    /// Sends a frame that needs no reply bookkeeping (replies, pings, catalogs). Any thread.
    func send(_ f: ByteBuffer, to p: Peer) {
        after(p.send(f, now: chi_now_ns(), retryNs: Self.retryNs) {}, p)
    }

    /// What a send asked for: a drain or a connection, on the network thread.
    @inline(__always)
    func after(_ res: Peer.SendResult, _ p: Peer) {
        if stopped { return }
        switch res {
        case .drain: loop.execute { [self] in drainPeer(p) }
        case .connect: loop.execute { [self] in connect(p) }
        case .done, .down: break
        }
    }

    /// Catalog jobs still running (start-up waits for them).
    let catalogJobs: UnsafeMutablePointer<UInt32> = {
        let p = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        p.initialize(to: 0)
        return p
    }()
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
