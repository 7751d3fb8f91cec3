import CChimaera
import Glibc
import NIOCore
import NIOPosix

/// The remote queue's connections, on the network thread: dialling peers, the handshake's
/// outcome, failures, the NIO fallback for writes, and the periodic tick.
extension RemoteQueue {
    /// Opens the connection to `p`: dial on a short-lived thread, then hand the socket to NIO
    /// (keeping a duplicate descriptor for the workers' writes) and run the handshake.
    func connect(_ p: Peer) {
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
                                let limit = FrameLimit()
                                if let tls = self.tls {
                                    try channel.pipeline.syncOperations.addHandler(try TLSHandler(tls, server: false))
                                }
                                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(limit: limit)))
                                try channel.pipeline.syncOperations.addHandler(
                                    Connection(rq: self, role: .outbound(p), limit: limit, writeFd: wfd))
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
            p.tls = try? channel.pipeline.syncOperations.handler(type: TLSHandler.self)
            p.nioWriting = !p.outbox.isEmpty
            return p.nioWriting
        }
        Log.info("remote: connected to \(map.describe(p.id))")
        if queued { drainPeer(p) }
        var req = ByteBuffer.frame(.catalogRequest, capacity: 0)
        req.endFrame()
        send(req, to: p)
        // Views are exchanged whole on every new connection: a node that was away learns
        // at once what the others think of it.
        p.viewSynced = false
        run(swim.sync(with: p.id, now: chi_now_ns()))
    }

    /// Marks `p` down and fails everything sent to it.
    func markDown(_ p: Peer, _ why: String) {
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
        p.viewSynced = true
        // Logged when it changes, not on every retry.
        if wasUp || why != p.lastLoggedReason {
            p.lastLoggedReason = why
            Log.warn("remote: \(map.describe(p.id)) is down: \(why)")
        }
        for e in lost { fail(e, "\(map.describe(p.id)): \(why)") }
    }

    func fail(_ e: Peer.Pending, _ message: String) {
        count(.failed)
        e.record.errorMessage = message
        e.record.task.pointee.rc = -CInt(CHI_ENODE)
        finish(e.record, worker: e.worker)
    }

    /// An accepted connection starts its handshake, unless `cluster.max_pending_connections`
    /// others are mid-handshake already: then it is closed at once (and logged, once a
    /// second at most). Returns whether it may go on.
    func inboundOpened(_ c: Connection) -> Bool {
        guard pendingInbound < maxPendingConnections else {
            count(.refusedPending)
            count(.rejectedConnections)
            let now = chi_now_ns()
            if now &- lastPendingLogNs >= 1_000_000_000 {
                lastPendingLogNs = now
                Log.warn("remote: refusing a connection from \(c.remoteAddress): \(pendingInbound) connections are mid-handshake (cluster.max_pending_connections)")
            }
            c.close()
            return false
        }
        pendingInbound += 1
        c.countedPending = true
        inbound[ObjectIdentifier(c)] = c
        return true
    }

    /// A connection left the handshake (authenticated or closed).
    func pendingEnded(_ c: Connection) {
        guard c.countedPending else { return }
        c.countedPending = false
        pendingInbound -= 1
    }

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
            let known = inbound.removeValue(forKey: ObjectIdentifier(c)) != nil
            pendingEnded(c)
            if known && !c.isAuthenticated { count(.rejectedConnections) }
        }
    }

    /// Hands the outbox of `p` to NIO, in order, and goes on until it is empty; then the
    /// workers write directly again.
    func drainPeer(_ p: Peer) {
        let (tail, tls, frames, channel) = p.lock.withLock { () -> (ByteBuffer?, TLSHandler?, [ByteBuffer], Channel?) in
            guard p.state == .up, let ch = p.channel else { return (nil, nil, [], nil) }
            if p.outbox.isEmpty && p.sealedTail == nil {
                p.nioWriting = false
                return (nil, nil, [], nil)
            }
            p.nioWriting = true
            let t = p.sealedTail
            p.sealedTail = nil
            let f = p.outbox
            p.outbox.removeAll(keepingCapacity: true)
            return (t, p.tls, f, ch)
        }
        guard let channel else { return }
        let done = loop.makePromise(of: Void.self)
        // Sealed ciphertext first (it was encrypted before anything in the outbox).
        if let tail {
            if let tls { tls.writeSealed(tail, promise: frames.isEmpty ? done : nil) }
            else if frames.isEmpty { done.succeed(()) }
        }
        if let last = frames.last {
            for f in frames.dropLast() { channel.write(f, promise: nil) }
            channel.write(last, promise: done)
        }
        channel.flush()
        done.futureResult.whenComplete { [self] _ in drainPeer(p) }
    }

    /// Every tick: expire requests past their deadline, ping, declare silent peers dead
    /// and retry down ones.
    func tick() {
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
}
