import CChimaera
import Chimaera

// Modules, pools and the runtime, through the admin pool: client.h.

@c(chi_module_register)
public func chiModuleRegister(_ h: OpaquePointer?, _ name: UnsafePointer<CChar>?) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        try Handles.client(h).registerModule(try cString(name, "module name"))
        return 0
    }
}

@c(chi_pool_create)
public func chiPoolCreate(_ h: OpaquePointer?, _ opts: UnsafePointer<chi_pool_create_opts_t>?,
                          _ out: UnsafeMutablePointer<UInt64>?) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        let c = try Handles.client(h)
        guard let opts, let out else { throw ChiError(EINVAL, "opts or pool_id is NULL") }
        var o = chi_pool_create_opts_t()
        let n = min(Int(opts.pointee.size), MemoryLayout<chi_pool_create_opts_t>.size)
        guard n >= MemoryLayout<chi_pool_create_opts_t>.offset(of: \.params_size)! + 4 else {
            throw ChiError(EINVAL, "chi_pool_create_opts_t.size is \(opts.pointee.size); set it to sizeof(chi_pool_create_opts_t)")
        }
        withUnsafeMutableBytes(of: &o) { $0.copyMemory(from: UnsafeRawBufferPointer(start: opts, count: n)) }
        let module = try cString(o.module, "opts.module")
        let name = try cString(o.name, "opts.name")
        if o.params_size > 0 && o.params == nil { throw ChiError(EINVAL, "opts.params is NULL but params_size is \(o.params_size)") }
        let params = o.params_size > 0 ? UnsafeRawBufferPointer(start: o.params, count: Int(o.params_size)) : nil
        out.pointee = try c.createPool(module: module, name: name, containersPerNode: o.containers_per_node,
                                       params: params, replicas: o.replicas)
        return 0
    }
}

@c(chi_pool_get_id)
public func chiPoolGetId(_ h: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<UInt64>?) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        let c = try Handles.client(h)
        guard let out else { throw ChiError(EINVAL, "pool_id is NULL") }
        out.pointee = try c.poolId(named: try cString(name, "pool name"))
        return 0
    }
}

@c(chi_pool_destroy)
public func chiPoolDestroy(_ h: OpaquePointer?, _ id: UInt64) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        try Handles.client(h).destroyPool(id)
        return 0
    }
}

@c(chi_runtime_flush)
public func chiRuntimeFlush(_ h: OpaquePointer?) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        try Handles.client(h).flush()
        return 0
    }
}

@c(chi_runtime_stop)
public func chiRuntimeStop(_ h: OpaquePointer?) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        try Handles.client(h).stopRuntime()
        return 0
    }
}

@c(chi_runtime_stats)
public func chiRuntimeStats(_ h: OpaquePointer?, _ buf: UnsafeMutablePointer<CChar>?, _ cap: Int) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        let c = try Handles.client(h)
        guard buf != nil else { throw ChiError(EINVAL, "buf is NULL") }
        return try copyOut(try c.statsJSON(), to: buf, cap: cap, what: "the statistics")
    }
}

@c(chi_runtime_set_worch)
public func chiRuntimeSetWorch(_ h: OpaquePointer?, _ name: UnsafePointer<CChar>?) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        try Handles.client(h).setWorkOrchestrator(try cString(name, "policy module name"))
        return 0
    }
}

@c(chi_pool_info)
public func chiPoolInfo(_ h: OpaquePointer?, _ id: UInt64, _ name: UnsafePointer<CChar>?,
                        _ info: UnsafeMutablePointer<chi_pool_info_t>?) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        let c = try Handles.client(h)
        guard let info else { throw ChiError(EINVAL, "info is NULL") }
        guard id != 0 || name != nil else { throw ChiError(EINVAL, "give a pool id or a name") }
        let size = Int(info.pointee.size)
        guard size >= 4 else { throw ChiError(EINVAL, "chi_pool_info_t.size is \(size); set it to sizeof(chi_pool_info_t)") }
        var got = try c.poolInfo(id: id, name: name.map { String(cString: $0) })
        withUnsafeBytes(of: &got) { UnsafeMutableRawPointer(info).copyMemory(from: $0.baseAddress!, byteCount: min(size, $0.count)) }
        info.pointee.size = UInt32(size)
        return 0
    }
}

@c(chi_module_upgrade)
public func chiModuleUpgrade(_ h: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ path: UnsafePointer<CChar>?,
                             _ flags: UInt32) -> CInt {
    chiModuleUpgradeReport(h, name, path, flags, nil, 0)
}

@c(chi_module_upgrade_report)
public func chiModuleUpgradeReport(_ h: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ path: UnsafePointer<CChar>?,
                                   _ flags: UInt32, _ buf: UnsafeMutablePointer<CChar>?, _ cap: Int) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        let report = try Handles.client(h).upgradeModule(try cString(name, "module name"),
                                                         path: path.map { String(cString: $0) }, flags: flags)
        // The upgrade happened whatever the buffer's size: a short one gets what fits.
        if let buf, cap > 0 {
            let bytes = Array(report.utf8.prefix(cap - 1))
            for (i, b) in bytes.enumerated() { buf[i] = CChar(bitPattern: b) }
            buf[bytes.count] = 0
        }
        return 0
    }
}

@c(chi_container_migrate)
public func chiContainerMigrate(_ h: OpaquePointer?, _ pool: UInt64, _ container: UInt32, _ to: UInt32) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        _ = try Handles.client(h).migrateContainer(pool: pool, container: container, to: to)
        return 0
    }
}
