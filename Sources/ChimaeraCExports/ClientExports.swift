import CChimaera
import Chimaera

// Client lifecycle and tasks: client.h.

@c(chi_abi_version)
public func chiAbiVersion() -> UInt32 { UInt32(CHI_ABI_MAJOR) << 16 | UInt32(CHI_ABI_MINOR) }

@c(chi_client_init)
public func chiClientInit(_ opts: UnsafePointer<chi_client_opts_t>?,
                          _ out: UnsafeMutablePointer<OpaquePointer?>?) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        guard let out else { throw ChiError(EINVAL, "out is NULL") }
        out.pointee = nil
        // Honour an older, smaller options struct: copy what it has into a zeroed local.
        var o = chi_client_opts_t()
        if let opts {
            let n = min(Int(opts.pointee.size), MemoryLayout<chi_client_opts_t>.size)
            guard n >= 4 else { throw ChiError(EINVAL, "chi_client_opts_t.size is \(opts.pointee.size); set it to sizeof(chi_client_opts_t)") }
            withUnsafeMutableBytes(of: &o) { $0.copyMemory(from: UnsafeRawBufferPointer(start: opts, count: n)) }
        }
        let seg = o.segment.map { String(cString: $0) }
        let conf = o.config_path.map { String(cString: $0) }
        let c = try RuntimeClient.connect(segment: seg, configPath: conf, mode: o.mode,
                                   timeoutMs: o.connect_timeout_ms)
        out.pointee = Handles.make(c)
        return 0
    }
}

@c(chi_client_finalize)
public func chiClientFinalize(_ h: OpaquePointer?) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        let c = try Handles.release(h)
        c.close()
        if c.ownsRuntime, let rt = c.runtime { Handles.dropInternalHandle(for: rt) }
        return 0
    }
}

@c(chi_client_segment)
public func chiClientSegment(_ h: OpaquePointer?, _ buf: UnsafeMutablePointer<CChar>?, _ cap: Int) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        try copyOut(try Handles.client(h).segment.name, to: buf, cap: cap, what: "the segment name")
    }
}

@c(chi_task_new)
public func chiTaskNew(_ h: OpaquePointer?, _ pool: UInt64, _ method: UInt32, _ size: Int,
                       _ dq: UnsafePointer<chi_domain_query_t>?,
                       _ out: UnsafeMutablePointer<UnsafeMutablePointer<chi_task_t>?>?) -> CInt {
    Handles.withClient(h) { c throws(ChiError) -> CInt in
        guard let out else { throw ChiError(EINVAL, "out is NULL") }
        out.pointee = try c.newTask(pool: pool, method: method, size: size, query: dq?.pointee)
        return 0
    }
}

@c(chi_task_submit)
public func chiTaskSubmit(_ h: OpaquePointer?, _ t: UnsafeMutablePointer<chi_task_t>?) -> CInt {
    Handles.withClient(h) { c throws(ChiError) -> CInt in
        try c.submit(try taskArg(t))
        return 0
    }
}

@c(chi_task_wait)
public func chiTaskWait(_ h: OpaquePointer?, _ t: UnsafeMutablePointer<chi_task_t>?, _ timeoutNs: Int64) -> CInt {
    Handles.withClient(h) { c throws(ChiError) -> CInt in
        let task = try taskArg(t)
        try c.wait(task, timeoutNs: timeoutNs)
        if task.pointee.rc < 0 {
            setLastError(c.takeErrorMessage(task) ?? "the task failed: \(ChiError.describe(task.pointee.rc))")
        }
        return 0
    }
}

@c(chi_task_call)
public func chiTaskCall(_ h: OpaquePointer?, _ t: UnsafeMutablePointer<chi_task_t>?, _ timeoutNs: Int64) -> CInt {
    Handles.withClient(h) { c throws(ChiError) -> CInt in
        let task = try taskArg(t)
        let rc = try c.call(task, timeoutNs: timeoutNs)
        if rc < 0 {
            setLastError(c.takeErrorMessage(task) ?? ChiError.describe(rc))
        }
        return rc
    }
}

@c(chi_task_is_done)
public func chiTaskIsDone(_ t: UnsafePointer<chi_task_t>?) -> Bool {
    guard let t else { return false }
    return chi_load32(UnsafeMutablePointer(mutating: t).donePtr) == UInt32(CHI_TASK_DONE)
}

@c(chi_task_del)
public func chiTaskDel(_ h: OpaquePointer?, _ t: UnsafeMutablePointer<chi_task_t>?) -> CInt {
    Handles.withClient(h) { c throws(ChiError) -> CInt in
        let task = try taskArg(t)
        try c.deleteTask(task)
        return 0
    }
}

@c(chi_task_cancel)
public func chiTaskCancel(_ h: OpaquePointer?, _ t: UnsafeMutablePointer<chi_task_t>?) -> CInt {
    Handles.withClient(h) { c throws(ChiError) -> CInt in
        try c.cancel(try taskArg(t))
        return 0
    }
}
