import CChimaera
import Glibc

/// The client's end of registration: the runtime's socket (or, in the runtime's own process,
/// its registry), through which a client attaches and asks for memory. Requests are rare
/// (memory comes in batches of spans); tasks never go this way.
protocol RegistrationChannel: AnyObject, Sendable {
    /// Sends a request and waits for its reply.
    func call(_ m: chi_reg_msg_t) throws(ChiError) -> chi_reg_reply_t
    /// Sends a request that has no reply.
    func post(_ m: chi_reg_msg_t)
    /// Detaches: the runtime reclaims what the client held once its tasks finish.
    func close()
}

extension chi_reg_msg_t {
    static func make(_ type: UInt32) -> chi_reg_msg_t {
        var m = chi_reg_msg_t()
        m.magic = CHI_REG_MAGIC
        m.type = type
        m.abi_major = UInt32(CHI_ABI_MAJOR)
        m.abi_minor = UInt32(CHI_ABI_MINOR)
        m.layout = CHI_SEG_LAYOUT
        m.pid = getpid()
        return m
    }
}

/// Registration over the runtime's Unix socket. The socket stays open for the client's
/// life: the runtime knows the client is gone when it hangs up.
final class SocketChannel: RegistrationChannel, @unchecked Sendable {
    private let fd: Int32
    private let lock = Mutex()
    private let what: String
    private var closed = false
    static let timeoutMs: Int32 = 10_000

    private init(fd: Int32, what: String) {
        self.fd = fd
        self.what = what
    }

    /// Connects and registers; returns the channel and the runtime's welcome.
    static func register(path: String, segment: String) throws(ChiError) -> (SocketChannel, chi_reg_reply_t) {
        let fd = chi_unix_connect(path, timeoutMs)
        guard fd >= 0 else {
            throw ChiError(CInt(CHI_ENORUNTIME), "cannot reach the runtime of segment \"\(segment)\" at \(path): \(Sys.errnoText(-fd))")
        }
        let ch = SocketChannel(fd: fd, what: "the runtime of segment \"\(segment)\"")
        do {
            let r = try ch.call(.make(CHI_REG_HELLO))
            return (ch, r)
        } catch {
            ch.close()
            throw error
        }
    }

    deinit { close() }

    func call(_ m: chi_reg_msg_t) throws(ChiError) -> chi_reg_reply_t {
        try lock.withLock { () throws(ChiError) -> chi_reg_reply_t in
            guard !closed else { throw ChiError(EINVAL, "the client is finalized") }
            var m = m
            let sent = withUnsafeBytes(of: &m) { chi_sock_send(fd, $0.baseAddress, $0.count) }
            guard sent == MemoryLayout<chi_reg_msg_t>.size else {
                throw ChiError(CInt(CHI_ENORUNTIME), "\(what) is gone (sending a request: \(Sys.errnoText(CInt(-max(sent, -Int(EIO))))))")
            }
            var r = chi_reg_reply_t()
            let n = withUnsafeMutableBytes(of: &r) { chi_sock_recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { throw ChiError(CInt(CHI_ENORUNTIME), "\(what) is gone (it closed the registration socket)") }
            if n == -Int(EAGAIN) { throw ChiError(ETIMEDOUT, "\(what) did not answer within \(Self.timeoutMs) ms") }
            if n < 0 { throw ChiError(CInt(CHI_ENORUNTIME), "\(what) dropped the registration socket: \(Sys.errnoText(CInt(-n)))") }
            guard n == MemoryLayout<chi_reg_reply_t>.size, r.magic == CHI_REG_MAGIC else {
                throw ChiError(CInt(CHI_ENORUNTIME), "\(what) sent a malformed reply (\(n) bytes)")
            }
            if r.status < 0 { throw ChiError(-r.status, ClientRegistry.message(r)) }
            return r
        }
    }

    func post(_ m: chi_reg_msg_t) {
        lock.withLock {
            guard !closed else { return }
            var m = m
            _ = withUnsafeBytes(of: &m) { chi_sock_send(fd, $0.baseAddress, $0.count) }
        }
    }

    func close() {
        lock.withLock {
            guard !closed else { return }
            closed = true
            Glibc.close(fd)
        }
    }
}

/// Registration with the registry of a runtime in this process (embedded mode).
final class InProcessChannel: RegistrationChannel, @unchecked Sendable {
    private let registry: ClientRegistry
    let slot: ClientSlot
    let welcome: chi_reg_reply_t

    init(registry: ClientRegistry) throws(ChiError) {
        self.registry = registry
        (slot, welcome) = try registry.registerInProcess()
    }

    func call(_ m: chi_reg_msg_t) throws(ChiError) -> chi_reg_reply_t {
        guard let r = registry.requestInProcess(m, from: slot) else {
            throw ChiError(EINVAL, "request \(m.type) has no reply")
        }
        if r.status < 0 { throw ChiError(-r.status, ClientRegistry.message(r)) }
        return r
    }

    func post(_ m: chi_reg_msg_t) { _ = registry.requestInProcess(m, from: slot) }

    func close() { registry.unregisterInProcess(slot) }
}

/// A client's spans, asked of the runtime through its channel.
final class ChannelSpans: SpanSource, @unchecked Sendable {
    let channel: RegistrationChannel

    init(_ channel: RegistrationChannel) { self.channel = channel }

    func spans(kind: UInt32, cls: Int, count: Int) throws(ChiError) -> [UInt64] {
        var m = chi_reg_msg_t.make(CHI_REG_SPANS)
        m.kind = kind
        m.cls = UInt32(cls)
        m.count = UInt64(count)
        let r = try channel.call(m)
        return withUnsafeBytes(of: r.offs) { b in
            (0..<Int(min(r.count, CHI_REG_MAX_OFFS))).map { b.load(fromByteOffset: $0 * 8, as: UInt64.self) }
        }
    }

    func large(kind: UInt32, bytes: UInt64) throws(ChiError) -> (off: UInt64, bytes: UInt64) {
        var m = chi_reg_msg_t.make(CHI_REG_LARGE)
        m.kind = kind
        m.bytes = bytes
        let r = try channel.call(m)
        return (r.offs.0, r.bytes)
    }

    func giveBack(spans: [UInt64]) {
        var m = chi_reg_msg_t.make(CHI_REG_FREE_SPANS)
        m.count = UInt64(min(spans.count, Int(CHI_REG_MAX_OFFS)))
        withUnsafeMutableBytes(of: &m.offs) { b in
            for (i, o) in spans.prefix(Int(CHI_REG_MAX_OFFS)).enumerated() { b.storeBytes(of: o, toByteOffset: i * 8, as: UInt64.self) }
        }
        channel.post(m)
    }

    func giveBack(large off: UInt64) {
        var m = chi_reg_msg_t.make(CHI_REG_FREE_LARGE)
        m.offs.0 = off
        channel.post(m)
    }
}

/// The runtime's own spans, straight from its span map.
final class RuntimeSpans: SpanSource, @unchecked Sendable {
    let map: SpanMap

    init(_ map: SpanMap) { self.map = map }

    func spans(kind: UInt32, cls: Int, count: Int) throws(ChiError) -> [UInt64] {
        try map.allocateSpans(owner: SpanMap.runtimeOwner, kind: kind == UInt32(CHI_MEM_TASK) ? .taskSlab : .bufferSlab,
                              cls: cls, count: count)
    }

    func large(kind: UInt32, bytes: UInt64) throws(ChiError) -> (off: UInt64, bytes: UInt64) {
        try map.allocateExtent(owner: SpanMap.runtimeOwner, kind: kind == UInt32(CHI_MEM_TASK) ? .largeTask : .largeBuffer,
                               bytes: bytes)
    }

    func giveBack(spans: [UInt64]) { for o in spans { map.free(o, owner: SpanMap.runtimeOwner) } }

    func giveBack(large off: UInt64) { map.free(off, owner: SpanMap.runtimeOwner) }
}
