import CChimaera

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

    init(_ e: ChiError) { self.init(code: e.negated, message: e.message) }

    /// A task's failed status, with the runtime's message when it left one.
    init(status rc: Int32, message: String?) {
        self.init(code: rc, message: message ?? ChiError.describe(rc))
    }

    public var description: String { "\(message) (\(ChiError.describe(code)), \(code))" }

    public static let timedOut = -ETIMEDOUT
    public static let noPool = -Int32(CHI_ENOPOOL)
    public static let noModule = -Int32(CHI_ENOMODULE)
    public static let noMethod = -Int32(CHI_ENOMETHOD)
    public static let noRuntime = -Int32(CHI_ENORUNTIME)
    public static let stopped = -Int32(CHI_ESTOPPED)
}

/// Runs `body`, turning the core's error into the public one.
@inline(__always)
func api<T>(_ body: () throws(ChiError) -> T) throws(ChimaeraError) -> T {
    do {
        return try body()
    } catch {
        throw ChimaeraError(error)
    }
}
