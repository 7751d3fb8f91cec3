import COpenSSL
import NIOCore

/// Why a TLS connection failed, as OpenSSL (or certificate verification) tells it.
struct TLSError: Error, CustomStringConvertible {
    let reason: String
    var description: String { "TLS: \(reason)" }
}

/// TLS 1.3 on one peer connection: OpenSSL's libssl over two memory BIOs, as the first
/// handler of the channel (ciphertext below it, frames above it). One `SSL` per connection,
/// under `lock`: the network thread decrypts with it, and once the handshake is done a
/// worker encrypts its frames with it (`seal`) and writes the ciphertext straight into the
/// socket (`Peer.send`), as in plaintext mode. This departs from "one `SSL`, one thread" on
/// purpose: this kernel has no kernel TLS, and handing every batch to the network thread to
/// encrypt cost a hand-off per batch and put all bulk encryption on that one thread
/// (measured against it: TLS bulk +65%, TLS async +33%, sync p50 within noise).
///
/// Until the handshake completes, writes from above wait here and at most
/// `TLSContext.preHandshakeBytes` of ciphertext are buffered; a failed handshake is reported
/// with its reason through `errorCaught` (the connection logs it and closes).
final class TLSHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let ssl: OpaquePointer
    private let rbio: OpaquePointer
    private let wbio: OpaquePointer
    private let isServer: Bool
    private var established = false
    private var failed = false
    private var waiting: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    /// Guards `ssl` and its BIOs: the network thread and workers (`seal`) use them.
    private let lock = Mutex()
    /// Set in handlerAdded; network thread only.
    private var context: ChannelHandlerContext?
    /// Allocates the ciphertext `seal` returns (on any thread).
    private static let allocator = ByteBufferAllocator()

    init(_ ctx: TLSContext, server: Bool) throws(ChiError) {
        guard let s = SSL_new(server ? ctx.server : ctx.client),
              let r = BIO_new(BIO_s_mem()), let w = BIO_new(BIO_s_mem())
        else { throw ChiError(ENOMEM, "TLS: cannot create a connection: \(TLSContext.lastError())") }
        ssl = s
        rbio = r
        wbio = w
        isServer = server
        SSL_set_bio(s, r, w) // the SSL owns both BIOs from here
        if server { SSL_set_accept_state(s) } else { SSL_set_connect_state(s) }
    }

    deinit { SSL_free(ssl) }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Encrypts `b` into TLS records and returns them, for the caller to write into the
    /// socket itself, in the order sealed (the caller holds the peer's lock, which orders
    /// both). Any thread, once established; nil if the connection failed.
    func seal(_ b: ByteBuffer) -> ByteBuffer? {
        var out = Self.allocator.buffer(capacity: b.readableBytes + b.readableBytes / 512 + 1024)
        let ok = lock.withLock { () -> Bool in
            guard established && !failed else { return false }
            return b.withUnsafeReadableBytes { p -> Bool in
                var off = 0
                while off < p.count {
                    let n = SSL_write(ssl, p.baseAddress! + off, Int32(min(p.count - off, Self.writeChunk)))
                    if n <= 0 { return false }
                    off += Int(n)
                    drainCiphertext(into: &out)
                }
                drainCiphertext(into: &out)
                return true
            }
        }
        return ok ? out : nil
    }

    /// Writes ciphertext a worker sealed but could not write whole (the socket was full)
    /// past this handler, before any frame written after it. Network thread.
    func writeSealed(_ b: ByteBuffer, promise: EventLoopPromise<Void>?) {
        guard let context else {
            promise?.fail(TLSError(reason: "the connection is closed"))
            return
        }
        context.write(wrapOutboundOut(b), promise: promise)
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        if !isServer { handshake(context) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        let b = unwrapInboundIn(data)
        let n = lock.withLock { b.withUnsafeReadableBytes { BIO_write(rbio, $0.baseAddress, Int32($0.count)) } }
        guard n == b.readableBytes else { return fail(context, "cannot buffer \(b.readableBytes) bytes") }
        if !established {
            guard lock.withLock({ chi_bio_pending(rbio) }) <= TLSContext.preHandshakeBytes else {
                return fail(context, "more than \(TLSContext.preHandshakeBytes) bytes before the handshake completed")
            }
            handshake(context)
            guard established else { return }
        }
        readPlaintext(context)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let b = unwrapOutboundIn(data)
        guard established else {
            if failed { promise?.fail(TLSError(reason: "the connection failed")) } else { waiting.append((b, promise)) }
            return
        }
        encrypt(context, b, promise)
    }

    /// Whether the peer's certificate names `host` (an IP address or a DNS name, in its
    /// subject alternative names or common name). True when the peer presented none (PSK).
    /// Network thread, after the handshake.
    func peerCertificateNames(_ host: String) -> Bool {
        guard let cert = SSL_get0_peer_certificate(ssl) else { return true }
        return X509_check_ip_asc(cert, host, 0) == 1 || X509_check_host(cert, host, host.utf8.count, 0, nil) == 1
    }

    // MARK: Private

    private func handshake(_ context: ChannelHandlerContext) {
        let (r, e) = lock.withLock { () -> (Int32, Int32) in
            let r = SSL_do_handshake(ssl)
            return (r, r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, r))
        }
        sendCiphertext(context, promise: nil, flush: true)
        if r == 1 {
            lock.withLock { established = true }
            let w = waiting
            waiting = []
            for (b, p) in w { encrypt(context, b, p) }
            if !w.isEmpty { context.flush() }
            return
        }
        if e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE { return }
        let v = SSL_get_verify_result(ssl)
        // UNSPECIFIED is what a handshake that verified no certificate reports (PSK mode).
        if v != X509_V_OK && v != X509_V_ERR_UNSPECIFIED {
            fail(context, "peer certificate refused: \(String(cString: X509_verify_cert_error_string(Int(v))))")
        } else {
            fail(context, "handshake failed: \(TLSContext.lastError())")
        }
    }

    /// Plaintext is handed up in pieces of up to this many bytes (several TLS records each):
    /// a 4 MiB bulk frame then reaches the frame decoder in 16 pieces, not 256.
    private static let readChunk = 256 << 10
    /// Plaintext is encrypted this many bytes at a time, and the ciphertext moved out after
    /// each piece: the memory BIO stays small instead of growing (and being copied and
    /// cleansed on every growth) to the size of the whole frame.
    private static let writeChunk = 64 << 10

    private func readPlaintext(_ context: ChannelHandlerContext) {
        while !failed {
            // No more plaintext than the ciphertext buffered (plus a record OpenSSL may hold):
            // a small message gets a small buffer.
            let size = min(Self.readChunk, Int(lock.withLock { chi_bio_pending(rbio) }) + (16 << 10))
            var out = context.channel.allocator.buffer(capacity: size)
            var err: Int32 = SSL_ERROR_NONE
            var why = ""
            // Not held while the plaintext goes up: that may send (and `seal`) at once.
            out.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { p in lock.withLock {
                var got = 0
                while got < p.count {
                    let rc = SSL_read(ssl, p.baseAddress! + got, Int32(min(p.count - got, Int(Int32.max))))
                    if rc <= 0 {
                        // Asked at once: handing the plaintext up below may use the SSL again.
                        err = SSL_get_error(ssl, rc)
                        if err != SSL_ERROR_WANT_READ && err != SSL_ERROR_ZERO_RETURN { why = TLSContext.lastError() }
                        break
                    }
                    got += Int(rc)
                }
                return got
            } }
            if out.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(out)) }
            if err == SSL_ERROR_NONE { continue } // the piece was full: there may be more
            if err == SSL_ERROR_WANT_READ { break }
            if err == SSL_ERROR_ZERO_RETURN {
                context.close(promise: nil)
                break
            }
            fail(context, "record refused: \(why)")
        }
    }

    private func encrypt(_ context: ChannelHandlerContext, _ b: ByteBuffer, _ promise: EventLoopPromise<Void>?) {
        // TLS 1.3 adds 22 bytes per record of at most 16 KiB (and a header); sized generously.
        let sealed = seal(b)
        guard let out = sealed else {
            promise?.fail(TLSError(reason: "cannot encrypt: \(TLSContext.lastError())"))
            return fail(context, "cannot encrypt")
        }
        if out.readableBytes > 0 { context.write(wrapOutboundOut(out), promise: promise) } else { promise?.succeed(()) }
    }

    /// Appends what OpenSSL has produced to `out`. Under `lock`.
    private func drainCiphertext(into out: inout ByteBuffer) {
        let n = chi_bio_pending(wbio)
        guard n > 0 else { return }
        out.writeWithUnsafeMutableBytes(minimumWritableBytes: n) { p in
            Int(max(0, BIO_read(wbio, p.baseAddress, Int32(n))))
        }
    }

    /// Moves what OpenSSL produced into the channel (completing `promise` when it is out).
    private func sendCiphertext(_ context: ChannelHandlerContext, promise: EventLoopPromise<Void>?, flush: Bool) {
        var out = context.channel.allocator.buffer(capacity: 0)
        lock.withLock { drainCiphertext(into: &out) }
        guard out.readableBytes > 0 else {
            promise?.succeed(())
            return
        }
        if flush { context.writeAndFlush(wrapOutboundOut(out), promise: promise) }
        else { context.write(wrapOutboundOut(out), promise: promise) }
    }

    private func fail(_ context: ChannelHandlerContext, _ why: String) {
        guard !failed else { return }
        lock.withLock { failed = true }
        sendCiphertext(context, promise: nil, flush: true) // the alert, if any
        for (_, p) in waiting { p?.fail(TLSError(reason: why)) }
        waiting = []
        context.fireErrorCaught(TLSError(reason: why))
        context.close(promise: nil)
    }
}
