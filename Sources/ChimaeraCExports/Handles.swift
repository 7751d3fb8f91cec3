import CChimaera
import Chimaera
import Glibc

/// C handles for clients: a small box with a magic word, so a NULL, stale or foreign handle
/// is an error rather than a crash. Boxes are never freed (a finalized one is marked dead),
/// which keeps a stale handle readable.
struct ClientBox {
    static let live: UInt64 = 0x4348_4943_4C49_4E54 // "CHICLINT"
    static let dead: UInt64 = 0x4445_4144_434C_4E54
    var magic: UInt64
    var client: Unmanaged<RuntimeClient>?
}

enum Handles {
    static func make(_ c: RuntimeClient) -> OpaquePointer {
        let box = UnsafeMutablePointer<ClientBox>.allocate(capacity: 1)
        box.initialize(to: ClientBox(magic: ClientBox.live, client: .passRetained(c)))
        return OpaquePointer(box)
    }

    /// The client behind a handle, or an EINVAL error naming the problem.
    @inline(__always)
    static func client(_ h: OpaquePointer?) throws(ChiError) -> RuntimeClient {
        guard let h else { throw ChiError(EINVAL, "client handle is NULL") }
        let box = UnsafeMutablePointer<ClientBox>(h)
        guard box.pointee.magic == ClientBox.live, let c = box.pointee.client else {
            throw ChiError(EINVAL, "client handle \(h) is not a live client (finalized or invalid)")
        }
        return c.takeUnretainedValue()
    }

    /// Runs `body` on the client behind a handle, borrowed (no retain or release: the task
    /// calls are the hot path, and a finalized handle's box keeps the client only until
    /// chi_client_finalize, which must not race with calls on the same handle anyway), and
    /// translates a thrown error as `chiTry` does.
    @inline(__always)
    static func withClient(_ h: OpaquePointer?, _ body: (RuntimeClient) throws(ChiError) -> CInt) -> CInt {
        guard let h, UnsafeMutablePointer<ClientBox>(h).pointee.magic == ClientBox.live,
              let u = UnsafeMutablePointer<ClientBox>(h).pointee.client
        else {
            return chiTry { () throws(ChiError) -> CInt in _ = try client(h); return 0 }
        }
        // Not chiTry: it lives in another module, so the body would stay a closure call.
        return u._withUnsafeGuaranteedRef { c -> CInt in
            do throws(ChiError) {
                return try body(c)
            } catch {
                setLastError(error.message)
                return error.negated
            }
        }
    }

    static func release(_ h: OpaquePointer?) throws(ChiError) -> RuntimeClient {
        let c = try client(h)
        let box = UnsafeMutablePointer<ClientBox>(h!)
        box.pointee.magic = ClientBox.dead
        box.pointee.client?.release()
        box.pointee.client = nil
        return c
    }

    /// Forgets (and kills) the internal handle of a runtime that stopped.
    static func dropInternalHandle(for rt: Runtime) {
        pthread_mutex_lock(&lock)
        let h = internalHandles.removeValue(forKey: ObjectIdentifier(rt))
        pthread_mutex_unlock(&lock)
        if let h { _ = try? release(h) }
    }

    /// The handle of a runtime's internal client, made once per runtime.
    nonisolated(unsafe) static var internalHandles: [ObjectIdentifier: OpaquePointer] = [:]
    nonisolated(unsafe) static var lock = pthread_mutex_t()
    static func internalHandle(for rt: Runtime) -> OpaquePointer? {
        guard let c = rt.internalClient else { return nil }
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        if let h = internalHandles[ObjectIdentifier(rt)] { return h }
        let h = make(c)
        internalHandles[ObjectIdentifier(rt)] = h
        return h
    }
}

/// A C string argument, or an EINVAL error if it is NULL.
@inline(__always)
func cString(_ p: UnsafePointer<CChar>?, _ what: String) throws(ChiError) -> String {
    guard let p else { throw ChiError(EINVAL, "\(what) is NULL") }
    return String(cString: p)
}

/// Copies `s` NUL-terminated into a caller's buffer of `cap` bytes; returns its length, or
/// ERANGE naming `what` and the size needed when it does not fit.
func copyOut(_ s: String, to buf: UnsafeMutablePointer<CChar>?, cap: Int, what: String) throws(ChiError) -> CInt {
    guard let buf else { throw ChiError(EINVAL, "buf is NULL") }
    let bytes = Array(s.utf8)
    guard bytes.count < cap else {
        throw ChiError(ERANGE, "\(what) needs \(bytes.count + 1) bytes; the buffer has \(cap)")
    }
    for (i, b) in bytes.enumerated() { buf[i] = CChar(bitPattern: b) }
    buf[bytes.count] = 0
    return CInt(bytes.count)
}

/// A task argument, or an EINVAL error if it is NULL.
@inline(__always)
func taskArg(_ t: UnsafeMutablePointer<chi_task_t>?) throws(ChiError) -> UnsafeMutablePointer<chi_task_t> {
    guard let t else { throw ChiError(EINVAL, "task is NULL") }
    return t
}
