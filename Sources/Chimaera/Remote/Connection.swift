import CChimaera
import Glibc
import NIOCore

/// One TCP connection to another runtime, on the network thread.
///
/// Each node writes only on the connections it opened (see `Peer`) and reads only on the ones
/// it accepted: node A's requests to B and A's replies to B's requests both travel on A's
/// connection to B. Every connection starts with the handshake: the acceptor challenges, the
/// connector proves it holds the cluster key, the acceptor proves it too. Until then any
/// other frame, or any malformed frame at any time, closes the connection and is logged;
/// nothing of it reaches the runtime.
final class Connection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = Frame
    typealias OutboundOut = ByteBuffer

    enum Role {
        case outbound(Peer)
        case inbound
    }

    unowned(unsafe) let rq: RemoteQueue
    let role: Role
    /// The frame size this connection's decoder accepts: `FrameLimit.preAuth` until the
    /// handshake completes.
    let limit: FrameLimit
    /// Set in channelActive; used only on the network thread.
    private(set) var context: ChannelHandlerContext?
    private(set) var remoteAddress = "?"
    private(set) var authed = false
    /// The node at the other end, once authenticated.
    private(set) var peerNode: UInt32 = 0
    private var hs: Handshake
    var lastHeardNs = chi_now_ns()
    var closing = false

    /// Outbound: the duplicate descriptor workers will write with, until `Peer` takes it.
    private var writeFd: Int32
    /// Requests of this connection still running here (inbound): reading pauses above
    /// `RemoteQueue.maxInflight`, which is how a fast peer feels back-pressure.
    let inflight = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    /// Bulk bytes held here by this connection's running requests (inbound), against
    /// `cluster.connection_budget`. Added on the network thread, given back by workers.
    let bulkBytes = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    var paused = false
    /// Counted in `RemoteQueue.pendingInbound` (accepted, not yet authenticated).
    var countedPending = false

    init(rq: RemoteQueue, role: Role, limit: FrameLimit, writeFd: Int32 = -1) {
        self.rq = rq
        self.role = role
        self.limit = limit
        self.writeFd = writeFd
        let hsRole: Handshake.Role
        switch role {
        case .inbound: hsRole = .acceptor
        case .outbound(let p): hsRole = .connector(expecting: p.id)
        }
        hs = Handshake(key: rq.key, selfId: rq.map.selfId, nodes: rq.map.count, role: hsRole)
        inflight.initialize(to: 0)
        bulkBytes.initialize(to: 0)
    }

    /// Hands the write descriptor over (to the peer, once authenticated).
    func takeWriteFd() -> Int32 {
        defer { writeFd = -1 }
        return writeFd
    }

    /// Closes the write descriptor if nobody took it.
    func closeWriteFd() {
        if writeFd >= 0 { Glibc.close(writeFd) }
        writeFd = -1
    }

    deinit {
        inflight.deallocate()
        bulkBytes.deallocate()
    }

    var isOutbound: Bool { if case .outbound = role { true } else { false } }

    var who: String {
        peerNode != 0 ? rq.map.describe(peerNode) : "peer at \(remoteAddress)"
    }

    // MARK: Channel events

    func channelActive(context: ChannelHandlerContext) {
        self.context = context
        remoteAddress = context.remoteAddress.map { "\($0)" } ?? "?"
        lastHeardNs = chi_now_ns()
        if !isOutbound {
            guard rq.inboundOpened(self) else { return }
            context.writeAndFlush(wrapOutboundOut(hs.challenge()), promise: nil)
        }
        // A connection that does not finish the handshake in time is dropped.
        let deadline = TimeAmount.milliseconds(Int64(rq.handshakeTimeoutMs))
        context.eventLoop.scheduleTask(in: deadline) { [self] in
            if !authed && !closing { reject("no handshake within \(deadline.nanoseconds / 1_000_000) ms") }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        rq.connectionClosed(self, reason: authed ? "connection lost" : "connection closed during the handshake")
        self.context = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is FrameError { reject("\(error)") } else { reject(RemoteQueue.describe(error)) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var frame = unwrapInboundIn(data)
        lastHeardNs = chi_now_ns()
        do {
            if !authed {
                try handshake(&frame)
                return
            }
            guard !isOutbound else {
                throw FrameError.malformed("\(frame.type) frame on a connection this node opened (peers answer on their own)")
            }
            rq.heard(peerNode)
            switch frame.type {
            case .request: try rq.handleRequest(&frame.body, from: self)
            case .reply: try rq.handleReply(&frame.body, from: self)
            case .ping: break
            case .catalogRequest: rq.send(rq.catalogFrame(), to: rq.peer(peerNode))
            case .catalog: try rq.mergeCatalog(&frame.body, from: self)
            case .membership: try rq.handleMembership(&frame.body, from: self)
            default: throw FrameError.malformed("unexpected \(frame.type) frame")
            }
        } catch {
            reject("\(error)")
        }
    }

    // MARK: Handshake

    private func handshake(_ frame: inout Frame) throws {
        let reply = try hs.receive(&frame)
        peerNode = hs.peer
        guard hs.done else {
            if let reply { send(reply) }
            return
        }
        // A cluster certificate speaks only for the host it names: the node id claimed
        // inside TLS must be one listed at that host.
        if let tls = try? context?.pipeline.syncOperations.handler(type: TLSHandler.self) {
            let host = rq.map.host(hs.peer).host
            guard tls.peerCertificateNames(host) else {
                throw FrameError.malformed("its certificate does not name \(host), the host of node \(hs.peer)")
            }
        }
        if let reply { send(reply) }
        authenticated()
        switch role {
        case .inbound: rq.inboundAuthenticated(self)
        case .outbound(let peer): rq.peerUp(peer, self)
        }
    }

    /// The peer proved itself: it may now send frames as large as a bulk request needs,
    /// and it no longer counts against `cluster.max_pending_connections`.
    private func authenticated() {
        authed = true
        limit.maxBody = rq.maxFrameBody
        rq.pendingEnded(self)
    }

    // MARK: Writing (network thread)

    /// Writes and flushes one handshake frame. Network thread only.
    func send(_ b: ByteBuffer) {
        guard let context, !closing else { return }
        context.writeAndFlush(wrapOutboundOut(b), promise: nil)
    }

    /// Closes the connection, logging why. Network thread only.
    func reject(_ why: String) {
        guard !closing else { return }
        closing = true
        rq.count(RemoteQueue.rejection(why))
        Log.warn("remote: dropping connection with \(who): \(why)")
        context?.close(promise: nil)
    }

    /// Closes without a warning (shutdown, or a peer declared dead already logged).
    func close() {
        guard !closing else { return }
        closing = true
        context?.close(promise: nil)
    }

    /// Pauses or resumes reading requests (back-pressure). Network thread only.
    func setReading(_ on: Bool) {
        guard let context, paused == on else { return }
        paused = !on
        context.channel.setOption(ChannelOptions.autoRead, value: on).whenComplete { _ in }
        if on { context.read() }
    }
}
