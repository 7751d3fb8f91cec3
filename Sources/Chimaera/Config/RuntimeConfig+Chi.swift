import CChimaera

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
