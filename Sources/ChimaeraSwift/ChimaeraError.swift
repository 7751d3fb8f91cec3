import CChimaeraABI
import Glibc

/// An error from the runtime: a negative errno-style code (as the C API returns) and a message
/// that names what went wrong.
public struct ChimaeraError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The negative code, e.g. `-CHI_ENOPOOL` or `-ETIMEDOUT`.
    public let code: Int32
    /// What went wrong, naming the object at fault.
    public let message: String

    public init(code: Int32, message: String) {
        self.code = code
        self.message = message
    }

    /// The error of a failed `chi_*` call: its code and the calling thread's message
    /// (`chi_last_error`), which must be read before the thread's next `chi_*` call.
    init(rc: Int32) {
        let last = String(cString: chi_last_error())
        self.init(code: rc, message: last.isEmpty ? Self.describe(rc) : last)
    }

    /// `chi_strerror`'s name for a code.
    public static func describe(_ code: Int32) -> String { String(cString: chi_strerror(code)) }

    public var description: String { "\(message) (\(Self.describe(code)), \(code))" }

    public static let timedOut = -ETIMEDOUT
    public static let noPool = -Int32(CHI_ENOPOOL)
    public static let noModule = -Int32(CHI_ENOMODULE)
    public static let noMethod = -Int32(CHI_ENOMETHOD)
    public static let noRuntime = -Int32(CHI_ENORUNTIME)
    public static let stopped = -Int32(CHI_ESTOPPED)
}

/// Returns a `chi_*` call's non-negative result, or throws its error.
@inline(__always)
@discardableResult
func check(_ rc: Int32) throws(ChimaeraError) -> Int32 {
    if rc < 0 { throw ChimaeraError(rc: rc) }
    return rc
}
