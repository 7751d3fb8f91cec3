import CChimaera
import Chimaera

// Buffers in shared memory: client.h.

@c(chi_buffer_alloc)
public func chiBufferAlloc(_ h: OpaquePointer?, _ size: Int, _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        let c = try Handles.client(h)
        guard let out else { throw ChiError(EINVAL, "out is NULL") }
        out.pointee = try c.allocBuffer(size)
        return 0
    }
}

@c(chi_buffer_free)
public func chiBufferFree(_ h: OpaquePointer?, _ p: UnsafeMutableRawPointer?) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        let c = try Handles.client(h)
        guard let p else { throw ChiError(EINVAL, "buffer is NULL") }
        try c.freeBuffer(p)
        return 0
    }
}

@c(chi_ptr_to_shm)
public func chiPtrToShm(_ h: OpaquePointer?, _ p: UnsafeRawPointer?, _ out: UnsafeMutablePointer<chi_shm_ptr_t>?) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        let c = try Handles.client(h)
        guard let p, let out else { throw ChiError(EINVAL, "pointer or out is NULL") }
        guard let off = c.segment.offset(of: p) else {
            throw ChiError(EFAULT, "\(p) is not inside segment \(c.segment.name)")
        }
        out.pointee = chi_shm_ptr_t(segment: 0, reserved: 0, offset: off)
        return 0
    }
}

@c(chi_shm_to_ptr)
public func chiShmToPtr(_ h: OpaquePointer?, _ shm: chi_shm_ptr_t, _ size: Int,
                        _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> CInt {
    chiTry { () throws(ChiError) -> CInt in
        let c = try Handles.client(h)
        guard let out else { throw ChiError(EINVAL, "out is NULL") }
        guard shm.segment == 0, let p = c.segment.pointer(shm.offset, UInt64(size)) else {
            throw ChiError(EFAULT, "shm pointer \(shm.segment):\(shm.offset)+\(size) is outside segment \(c.segment.name)")
        }
        out.pointee = p
        return 0
    }
}
