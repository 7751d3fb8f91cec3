import CChimaera

/// The checks a client's task passes on its way in, as functions of the task's bytes and the
/// runtime's private state only (the span map, the method descriptors, the limits): no
/// worker, no thread, no clock. The worker calls them on every task; the fuzz target
/// `validate` feeds them random ring entries and task bytes.
enum TaskCheck {
    static let headerSize = UInt64(MemoryLayout<chi_task_t>.size)

    /// Why a task whose header says `size` cannot be taken from a block of `limit` bytes,
    /// or nil when it can.
    @inline(__always)
    static func size(_ size: UInt64, limit: UInt64, maxTaskSize: Int) -> String? {
        if size >= headerSize && size <= limit && size <= UInt64(maxTaskSize) { return nil }
        if size > UInt64(maxTaskSize) && size <= limit {
            return "task size \(size) exceeds runtime.max_task_size (\(maxTaskSize))"
        }
        return "task size \(size) is not between the header's \(headerSize) bytes and its block's \(limit)"
    }

    /// Makes the runtime's copy consistent with what was checked: the size read once, and
    /// only the flags a client may set.
    @inline(__always)
    static func seal(_ t: UnsafeMutablePointer<chi_task_t>, size: UInt64) {
        t.pointee.size = UInt32(size)
        t.pointee.flags &= UInt32(CHI_TASK_USER_FLAGS)
    }

    /// Why the (sealed) task does not fit method `m` of module `module`, or nil: its size
    /// against the method's task, and, for a periodic task, the method's permission and the
    /// period's bounds.
    static func method(_ t: UnsafePointer<chi_task_t>, _ m: UnsafePointer<chi_method_desc_t>, module: String,
                       limits: RuntimeLimits) -> String? {
        guard t.pointee.size >= m.pointee.task_size else {
            return "task size \(t.pointee.size) is smaller than method \(t.pointee.method)'s \(m.pointee.task_size) bytes (module \(module))"
        }
        guard t.pointee.flags & UInt32(CHI_TASK_PERIODIC) != 0 else { return nil }
        let name = m.pointee.name.map { String(cString: $0) } ?? "\(t.pointee.method)"
        guard m.pointee.flags & UInt32(CHI_MF_PERIODIC_OK) != 0 else {
            return "method \(name) of module \(module) may not be periodic (no CHI_MF_PERIODIC_OK)"
        }
        let period = t.pointee.period_ns
        guard period >= limits.minPeriodNs, period <= limits.maxPeriodNs else {
            return "period \(period) ns is outside [runtime.min_period_us \(limits.minPeriodUs) us, runtime.max_period_s \(limits.maxPeriodS) s]"
        }
        return nil
    }

    /// The bulk fields of a (sealed) task for method `m`: each field's range and whether it
    /// lies inside one buffer `owner` holds (what chi_rctx_shm_ptr, the libffi handlers and
    /// the transport will find). A field with a zero length or offset names no buffer.
    static func bulk(_ t: UnsafePointer<chi_task_t>, _ m: UnsafePointer<chi_method_desc_t>, spans: SpanMap,
                     owner: UInt16) -> [(field: Int, segment: UInt32, offset: UInt64, length: UInt64, ok: Bool)] {
        let raw = UnsafeRawPointer(t)
        let fs = TaskCodec.fields(m)
        var out: [(field: Int, segment: UInt32, offset: UInt64, length: UInt64, ok: Bool)] = []
        for (i, f) in fs.enumerated() where f.type == UInt32(CHI_FT_BULK) {
            guard UInt64(f.offset) + UInt64(MemoryLayout<chi_shm_ptr_t>.size) <= UInt64(t.pointee.size),
                  f.bulk_size_field >= 0, Int(f.bulk_size_field) < fs.count else { continue }
            let sf = fs[Int(f.bulk_size_field)]
            guard UInt64(sf.offset) + UInt64(sf.size) <= UInt64(t.pointee.size) else { continue }
            let p = (raw + Int(f.offset)).loadUnaligned(as: chi_shm_ptr_t.self)
            let n = TaskCodec.value(raw, sf)
            if p.offset == 0 || n == 0 { continue }
            out.append((i, p.segment, p.offset, n, p.segment == 0 && spans.bulkOK(p.offset, n, owner: owner)))
        }
        return out
    }
}
