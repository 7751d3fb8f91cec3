import CChimaera
import Chimaera
import Glibc

// Running a runtime in the calling process: serve.h.

/// Copies an older, smaller `chi_serve_opts_t` into a zeroed local and reads it.
private func serveRequest(_ opts: UnsafePointer<chi_serve_opts_t>?) throws(ChiError) -> ServeRequest {
    var o = chi_serve_opts_t()
    o.notify_fd = -1
    if let opts {
        let n = min(Int(opts.pointee.size), MemoryLayout<chi_serve_opts_t>.size)
        guard n >= 4 else { throw ChiError(EINVAL, "chi_serve_opts_t.size is \(opts.pointee.size); set it to sizeof(chi_serve_opts_t)") }
        withUnsafeMutableBytes(of: &o) { $0.copyMemory(from: UnsafeRawBufferPointer(start: opts, count: n)) }
    }
    var r = ServeRequest()
    r.notifyFd = o.notify_fd
    r.segment = o.segment.map { String(cString: $0) }
    r.configPath = o.config_path.map { String(cString: $0) }
    r.hostfile = o.hostfile.map { String(cString: $0) }
    r.pidFile = o.pid_file.map { String(cString: $0) }
    r.nodeId = Int(o.node_id)
    return r
}

@c(chi_runtime_serve)
public func chiRuntimeServe(_ opts: UnsafePointer<chi_serve_opts_t>?) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        try Runtime.serve(try serveRequest(opts))
        return 0
    }
}

@c(chi_config_resolve)
public func chiConfigResolve(_ opts: UnsafePointer<chi_serve_opts_t>?, _ buf: UnsafeMutablePointer<CChar>?, _ cap: Int) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        try copyOut(try Runtime.resolvedJSON(try serveRequest(opts)), to: buf, cap: cap, what: "the resolved configuration")
    }
}

@c(chi_segment_remove)
public func chiSegmentRemove(_ segment: UnsafePointer<CChar>?) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        try Runtime.removeStaleSegment(try cString(segment, "segment")) ? 1 : 0
    }
}

@c(chi_version_string)
public func chiVersionString() -> UnsafePointer<CChar>? { chiVersionText }

private nonisolated(unsafe) let chiVersionText: UnsafePointer<CChar>? = UnsafePointer(strdup(CHI_VERSION_STRING))

@c(chi_runtime_stop_node)
public func chiRuntimeStopNode(_ h: OpaquePointer?, _ node: UInt32) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        try Handles.client(h).stopRuntime(node: node)
        return 0
    }
}

@c(chi_cluster_keygen)
public func chiClusterKeygen(_ dir: UnsafePointer<CChar>?, _ hostfile: UnsafePointer<CChar>?,
                             _ buf: UnsafeMutablePointer<CChar>?, _ cap: Int) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        let d = try cString(dir, "dir"), f = try cString(hostfile, "hostfile")
        let hosts: [ClusterConfig.Host]
        do {
            hosts = try ClusterConfig.readHostfile(f, defaultPort: ClusterConfig().port)
        } catch {
            throw ChiError(EINVAL, "hosts: \(error)")
        }
        let files = try ClusterKeygen.generate(dir: d, hosts: hosts)
        return try copyOut(files.joined(separator: "\n"), to: buf, cap: cap, what: "the list of files written")
    }
}
