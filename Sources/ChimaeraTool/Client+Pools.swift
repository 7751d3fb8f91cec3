import CChimaeraABI
import Glibc

/// Modules and pools by name, for `chimaera compose` and `chimaera pipeline run`.
extension Client {
    /// Loads module `name` in the runtime (idempotent: a loaded module is not loaded again).
    ///
    /// - Throws: The library's message (the module not found names the directories searched).
    func registerModule(_ name: String) throws(ToolError) {
        try check { chi_module_register(handle, name) }
    }

    /// The pool named `name`, or nil when the runtime has none.
    ///
    /// - Throws: Any other failure of the lookup.
    func poolInfo(named name: String) throws(ToolError) -> chi_pool_info_t? {
        var info = chi_pool_info_t()
        info.size = UInt32(MemoryLayout<chi_pool_info_t>.size)
        let rc = chi_pool_info(handle, 0, name, &info)
        if rc == -Int32(CHI_ENOPOOL) { return nil }
        if rc < 0 { throw ToolError.last(rc) }
        return info
    }

    /// Creates (or finds, by name) a pool with `params` as its create parameters; returns its id.
    func createPool(module: String, name: String, containersPerNode: UInt32, params: [UInt8],
                    replicas: UInt32 = 1) throws(ToolError) -> UInt64 {
        var o = chi_pool_create_opts_t()
        o.size = UInt32(MemoryLayout<chi_pool_create_opts_t>.size)
        o.containers_per_node = containersPerNode
        o.replicas = replicas
        var id: UInt64 = 0
        let m = strdup(module), n = strdup(name)
        defer { free(m); free(n) }
        o.module = UnsafePointer(m)
        o.name = UnsafePointer(n)
        let rc = params.withUnsafeBytes { b in
            o.params = b.isEmpty ? nil : b.baseAddress
            o.params_size = UInt32(b.count)
            return chi_pool_create(handle, &o, &id)
        }
        if rc < 0 { throw ToolError.last(rc) }
        return id
    }
}

extension chi_pool_info_t {
    /// The fixed-size C string fields as Swift strings.
    var nameText: String { withUnsafeBytes(of: name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } }
    var moduleText: String { withUnsafeBytes(of: module) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } }
}
