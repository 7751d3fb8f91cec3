import CChimaera
import Chimaera
import Glibc

// Error reporting: errors.h. The strings are interned so the pointers stay valid.

nonisolated(unsafe) private var interned: [CInt: UnsafeMutablePointer<CChar>] = [:]
nonisolated(unsafe) private var internLock = pthread_mutex_t()

@c(chi_strerror)
public func chiStrerror(_ code: CInt) -> UnsafePointer<CChar> {
    let key = code < 0 ? 0 &- code : code
    pthread_mutex_lock(&internLock)
    defer { pthread_mutex_unlock(&internLock) }
    if let p = interned[key] { return UnsafePointer(p) }
    let p = strdup(ChiError.describe(key))!
    interned[key] = p
    return UnsafePointer(p)
}

@c(chi_last_error)
public func chiLastError() -> UnsafePointer<CChar> { chi_tls_error() }
