import CChimaera
import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix

/// The opt-in Prometheus endpoint (`runtime.metrics.listen`): `GET /metrics` over HTTP/1.1 on
/// one event-loop thread of its own, never a worker.
///
/// Bounded so a scraper gone wrong cannot cost the runtime: at most `maxConnections` at a
/// time (more are answered 503 and closed), at most `maxRequestBytes` of request per request
/// (more is answered 413 and closed), and a connection silent for `idleTimeout` is closed.
/// Not guaranteed: authentication or TLS; listen on loopback or a trusted network.
final class MetricsServer: @unchecked Sendable {
    static let maxConnections = 4
    static let maxRequestBytes = 8 << 10
    static let idleTimeout = TimeAmount.seconds(5)
    /// How long a refused connection may linger (reading and discarding) before it is closed.
    static let lingerTime = TimeAmount.seconds(1)

    private let group: MultiThreadedEventLoopGroup
    private let listener: Channel
    /// The address actually bound (the port, if 0 was asked).
    let boundPort: Int

    /// Starts listening on `host:port`; `render` makes the body of each scrape, on the
    /// server's thread.
    ///
    /// - Throws: `ChiError` (EADDRINUSE or the bind's error) naming the config key.
    init(host: String, port: Int, render: @escaping @Sendable () -> String) throws(ChiError) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        // All connections live on the group's one loop, so the gate is only touched there.
        let gate = ConnectionGate()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 16)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    guard gate.active < Self.maxConnections else {
                        try ops.addHandler(Refuse(status: "503 Service Unavailable"))
                        return
                    }
                    gate.active += 1
                    let limit = RequestLimit(gate: gate)
                    try ops.addHandler(limit)
                    try ops.addHandler(IdleStateHandler(readTimeout: Self.idleTimeout))
                    try ops.configureHTTPServerPipeline(withErrorHandling: true)
                    try ops.addHandler(ScrapeHandler(limit: limit, render: render))
                }
            }
        do {
            listener = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw ChiError(EADDRINUSE, "runtime.metrics.listen: cannot listen on \(host):\(port): \(error)")
        }
        self.group = group
        boundPort = listener.localAddress?.port ?? port
        Log.info("metrics: serving http://\(host):\(boundPort)/metrics")
    }

    /// Closes the listener and every connection; returns once the server's thread is gone.
    func stop() {
        try? listener.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// Connections open now (touched only on the server's one event loop).
private final class ConnectionGate: @unchecked Sendable {
    var active = 0
}

/// Answers a connection beyond the limit with `status`, discarding what it sends.
private final class Refuse: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let status: String
    init(status: String) { self.status = status }

    func channelActive(context: ChannelHandlerContext) {
        refuse(context, status)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}

/// Sends a bodiless `status` response and shuts the connection down gently: output first (so
/// the client reads the answer, then end of file), input discarded until the client closes,
/// and closed for good after `lingerTime` in any case. Closing at once with request bytes
/// unread would send a reset, which can destroy the answer before the client reads it.
private func refuse(_ context: ChannelHandlerContext, _ status: String) {
    let buf = context.channel.allocator.buffer(
        string: "HTTP/1.1 \(status)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    let channel = context.channel
    context.writeAndFlush(NIOAny(buf)).whenComplete { _ in channel.close(mode: .output, promise: nil) }
    channel.eventLoop.scheduleTask(in: MetricsServer.lingerTime) { channel.close(promise: nil) }
}

/// Counts the bytes of the request under way (raw, before the HTTP decoder); past
/// `maxRequestBytes` it answers 413 and closes. Also keeps the connection count.
private final class RequestLimit: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let gate: ConnectionGate
    /// Bytes read since the last complete request (ScrapeHandler resets it).
    var bytes = 0
    private var refused = false

    init(gate: ConnectionGate) { self.gate = gate }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        bytes += unwrapInboundIn(data).readableBytes
        guard bytes <= MetricsServer.maxRequestBytes else {
            refused = true
            refuse(context, "413 Content Too Large")
            return
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // After a refusal the connection says nothing more than the 413.
        guard !refused else {
            promise?.succeed(())
            return
        }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        gate.active -= 1
        context.fireChannelInactive()
    }
}

/// Serves `GET /metrics`; 404 for another path, 405 for another method.
private final class ScrapeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private let limit: RequestLimit
    private let render: @Sendable () -> String
    private var head: HTTPRequestHead?

    init(limit: RequestLimit, render: @escaping @Sendable () -> String) {
        self.limit = limit
        self.render = render
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let h = head else { return }
            head = nil
            limit.bytes = 0
            let path = h.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? h.uri
            let (status, body, type): (HTTPResponseStatus, String, String)
            if h.method != .GET && h.method != .HEAD {
                (status, body, type) = (.methodNotAllowed, "only GET\n", "text/plain")
            } else if path != "/metrics" {
                (status, body, type) = (.notFound, "try /metrics\n", "text/plain")
            } else {
                (status, body, type) = (.ok, render(), "text/plain; version=0.0.4; charset=utf-8")
            }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: type)
            headers.add(name: "Content-Length", value: String(body.utf8.count))
            let keepAlive = h.isKeepAlive
            headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: status, headers: headers))),
                          promise: nil)
            if h.method != .HEAD {
                context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))),
                              promise: nil)
            }
            let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            if !keepAlive { done.whenComplete { _ in context.close(promise: nil) } }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
