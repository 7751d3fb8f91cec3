import CChimaera
import Glibc
import NIOCore

/// Another node, as this node sees it: the connection this node opened to it and everything
/// this node sends it (requests, replies to its requests, pings). Frames from it arrive on
/// the connection it opened to this node.
///
/// Sending: a worker with a frame writes it straight into the socket (one `send` call, no
/// hand-off to the network thread, which is the hop a round trip cannot afford). When the
/// socket buffer is full, the rest of that frame and every later one go through the NIO
/// channel, in order, until it has caught up; the channel's writability is then the
/// back-pressure. The socket belongs to NIO, which reads it (end of stream, errors) and
/// closes it; the worker side writes through its own duplicate descriptor. With TLS the
/// worker encrypts the frame first (`TLSHandler.seal`, under this peer's lock, which keeps
/// the records in the order they are written) and writes the ciphertext the same way; a
/// part the socket did not take goes to NIO as ciphertext (`sealedTail`).
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
    /// Frames waiting for the connection or for NIO to catch up, in order.
    var outbox: [ByteBuffer] = []
    /// NIO is writing frames of the outbox: new frames queue behind them.
    var nioWriting = false
    /// The duplicate descriptor workers write with (-1 unless up).
    var writeFd: Int32 = -1
    var channel: Channel?
    /// The connection's TLS (nil in plaintext mode), once up: workers seal frames with it.
    var tls: TLSHandler?
    /// Ciphertext a worker sealed and could not write whole: NIO writes it, past the TLS
    /// handler, before the outbox.
    var sealedTail: ByteBuffer?
    // Network thread only:
    var conn: Connection?
    var dialing = false
    var synced = false
    /// Its membership view arrived (a sync reply) since the connection came up.
    var viewSynced = false
    var lastPingNs: UInt64 = 0
    /// When a frame last arrived from this node (on the connection it opened here).
    var lastHeardNs: UInt64 = 0
    var lastLoggedReason = ""
    let nextReqId = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)

    /// Whether workers write frames straight into the socket (with TLS, sealed first). Off,
    /// every frame goes through the outbox and the network thread.
    let directWrites: Bool

    init(id: UInt32, host: ClusterConfig.Host, directWrites: Bool = true) {
        self.id = id
        self.host = host
        self.directWrites = directWrites
        nextReqId.initialize(to: 0)
    }

    /// Registers a request about to be sent; returns why not when the peer is down and was
    /// tried less than `retryNs` ago (the caller fails the task at once).
    func register(_ reqId: UInt64, _ e: Pending, now: UInt64, retryNs: UInt64) -> String? {
        lock.withLock {
            if state == .down && now &- downSince < retryNs { return downReason }
            pending[reqId] = e
            return nil
        }
    }

    enum SendResult {
        /// Written, or queued behind frames already on their way.
        case done
        /// Queued; the caller must have the network thread drain the outbox.
        case drain
        /// Queued; the caller must start a connection.
        case connect
        /// The peer is down (and was tried less than a retry interval ago).
        case down(String)
    }

    /// Sends one frame. Callable from any thread. `retryNs`: how soon a down peer is tried
    /// again when there is something to send.
    func send(_ frame: ByteBuffer, now: UInt64, retryNs: UInt64, before: (() -> Void)? = nil) -> SendResult {
        lock.withLock {
            switch state {
            case .down where now &- downSince < retryNs:
                return .down(downReason)
            case .down, .idle:
                before?()
                state = .connecting
                outbox.append(frame)
                return .connect
            case .connecting:
                before?()
                outbox.append(frame)
                return .done
            case .up:
                before?()
                if nioWriting || !outbox.isEmpty {
                    outbox.append(frame)
                    return .done
                }
                var wire = frame
                if let tls {
                    guard directWrites, let sealed = tls.seal(frame) else {
                        outbox.append(frame)
                        nioWriting = true
                        return .drain
                    }
                    wire = sealed
                } else if !directWrites {
                    outbox.append(frame)
                    nioWriting = true
                    return .drain
                }
                let written = wire.withUnsafeReadableBytes { b -> Int in
                    var off = 0
                    while off < b.count {
                        let n = Glibc.send(writeFd, b.baseAddress! + off, b.count - off, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                        if n > 0 {
                            off += n
                        } else if n < 0 && errno == EINTR {
                            continue
                        } else {
                            break // full (EAGAIN) or failing: NIO takes over and sees the error
                        }
                    }
                    return off
                }
                if written == wire.readableBytes { return .done }
                let rest = wire.getSlice(at: wire.readerIndex + written, length: wire.readableBytes - written)!
                if tls != nil { sealedTail = rest } else { outbox.append(rest) }
                nioWriting = true
                return .drain
            }
        }
    }

    /// Closes the worker side's descriptor and forgets the channel. Under `lock`.
    func dropConnectionLocked() {
        if writeFd >= 0 { close(writeFd) }
        writeFd = -1
        channel = nil
        tls = nil
        sealedTail = nil
        nioWriting = false
    }
}

/// Opening connections: resolving and connecting happen on a short-lived thread (they may
/// block); the connected socket is then handed to NIO.
enum Dialer {
    /// Connects to `host:port` within `timeoutMs`; returns a connected non-blocking socket or
    /// why not.
    static func dial(host: String, port: Int, timeoutMs: Int) -> Result<Int32, DialError> {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let g = getaddrinfo(host, String(port), &hints, &res)
        guard g == 0, let first = res else {
            return .failure(DialError("cannot resolve \(host): \(String(cString: gai_strerror(g)))"))
        }
        defer { freeaddrinfo(res) }
        var why = "no address"
        var a: UnsafeMutablePointer<addrinfo>? = first
        while let ai = a {
            a = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            if fd < 0 {
                why = Sys.errnoText()
                continue
            }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            if connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 { return .success(fd) }
            if errno == EINPROGRESS {
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                var r: Int32
                repeat { r = poll(&pfd, 1, Int32(timeoutMs)) } while r < 0 && errno == EINTR
                if r == 1 {
                    var err: Int32 = 0
                    var len = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
                    if err == 0 { return .success(fd) }
                    why = Sys.errnoText(err)
                } else {
                    why = r == 0 ? "connection timed out after \(timeoutMs) ms" : Sys.errnoText()
                }
            } else {
                why = Sys.errnoText()
            }
            close(fd)
        }
        return .failure(DialError(why))
    }

    struct DialError: Error {
        let message: String
        init(_ m: String) { message = m }
    }

    /// Runs `body` on a new detached thread.
    static func detached(_ body: @escaping @Sendable () -> Void) {
        final class Box: @unchecked Sendable {
            let body: @Sendable () -> Void
            init(_ b: @escaping @Sendable () -> Void) { body = b }
        }
        let arg = Unmanaged.passRetained(Box(body)).toOpaque()
        var t = pthread_t()
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
        let rc = pthread_create(&t, &attr, { arg in
            Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
            return nil
        }, arg)
        pthread_attr_destroy(&attr)
        if rc != 0 { Unmanaged<Box>.fromOpaque(arg).takeRetainedValue().body() }
    }
}
