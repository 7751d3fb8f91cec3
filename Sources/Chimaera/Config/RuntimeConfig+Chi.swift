import ChimaeraYAML
import CChimaera
import Glibc

extension RuntimeConfig {
    /// `load(path:)` with the error as a `ChiError` (`CHI_ECONFIG`), for the C boundary.
    package static func loadOrThrowChi(path: String?) throws(ChiError) -> RuntimeConfig {
        do {
            return try load(path: path)
        } catch {
            throw ChiError(CInt(CHI_ECONFIG), error.description)
        }
    }
}

extension RuntimeConfig {
    /// The segment a client or tool talks to: `explicit` (an option), then $CHIMAERA_SEGMENT,
    /// then this configuration's runtime.name.
    package func segmentName(explicit: String?) -> String {
        if let explicit { return explicit }
        if let e = getenv("CHIMAERA_SEGMENT"), e.pointee != 0 { return String(cString: e) }
        return name
    }
}
