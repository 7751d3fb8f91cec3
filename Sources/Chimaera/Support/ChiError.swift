import CChimaera
import Glibc

/// A Chimaera error: a negative errno-style code plus a message for `chi_last_error()`.
///
/// The code follows the C ABI: errno values and the `CHI_E*` codes of `errors.h`, stored
/// positive here and negated at the boundary.
package struct ChiError: Error, CustomStringConvertible, Sendable {
    /// The positive error code (`EINVAL`, `CHI_ENOPOOL`, ...).
    package let code: CInt
    /// A human-readable explanation naming the object at fault.
    package let message: String

    package init(_ code: CInt, _ message: String) {
        self.code = code
        self.message = message
    }

    package var description: String { message }

    /// The value a C export returns for this error.
    package var negated: CInt { -code }

    package static func invalid(_ what: String) -> ChiError { ChiError(EINVAL, what) }
}

extension ChiError {
    /// Describes a code for `chi_strerror`; never empty.
    package static func describe(_ code: CInt) -> String {
        let c = code < 0 ? 0 &- code : code
        switch c {
        case 0: return "success"
        case CInt(CHI_ENOMODULE): return "no such module"
        case CInt(CHI_ENOPOOL): return "no such pool"
        case CInt(CHI_ENOMETHOD): return "no such method in the pool's module"
        case CInt(CHI_EABI): return "ABI version mismatch"
        case CInt(CHI_ENORUNTIME): return "no runtime is serving the segment"
        case CInt(CHI_EBADTASK): return "malformed task"
        case CInt(CHI_ENOCONTAINER): return "the domain query selects no container"
        case CInt(CHI_ECONFIG): return "bad configuration"
        case CInt(CHI_ESTOPPED): return "the runtime or pool is stopping"
        case CInt(CHI_ENODE): return "another node is unreachable or did not answer in time"
        case CInt(CHI_ELIMIT): return "a runtime limit was reached"
        case CInt(CHI_EVERSION): return "the module is not newer than the one loaded"
        default:
            if c > 0 && c < 4096, let s = strerror(c) { return String(cString: s) }
            return "unknown error \(code)"
        }
    }
}

/// Records `message` as the calling thread's last error (what `chi_last_error()` returns).
package func setLastError(_ message: String) {
    message.withCString { chi_tls_set_error($0) }
}

/// Runs `body`, translating a thrown `ChiError` into its negative code and last-error text.
@inline(__always)
package func chiTry(_ body: () throws(ChiError) -> CInt) -> CInt {
    do {
        return try body()
    } catch {
        setLastError(error.message)
        return error.negated
    }
}
