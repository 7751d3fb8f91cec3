import CChimaera
import NIOCore

/// Turns tasks into request and reply frames using only the module's task-layout
/// descriptors, so modules write no serialisation code.
///
/// Request: `u64 request id, u64 pool, u32 method, u32 container, u32 task size, u32 prio,
/// u32 flags, u32 lane hash`, then every IN/INOUT field in descriptor order: plain fields as
/// their bytes; every bulk field (an OUT one too: the remote side needs its buffer) as
/// `u64 length` followed by the data when the field `carriesData` (IN and DT_WRITE or
/// DT_EXPOSE: the seed's DT_EXPOSE lets the remote side read the buffer, so its bytes go
/// eagerly; nothing is pulled on demand yet).
/// Reply: `u64 request id, i32 rc, u32 runs, u32 message length, message`, then every
/// OUT/INOUT plain field, then `u64 length + data` for each bulk field that `comesBack`
/// (DT_EXPOSE: what the remote side wrote; OUT and DT_WRITE: the output, written back to the
/// origin as the seed's SerializeOut does). A method
/// without descriptors sends its whole parameter block both ways. Shared-memory pointers that
/// are not bulk data mean nothing on another node and travel as zero.
enum TaskCodec {
    /// The largest bulk transfer one field may carry.
    static let maxBulk: UInt64 = 256 << 20
    static let headerSize = MemoryLayout<chi_task_t>.size

    typealias Field = chi_field_desc_t

    /// The fields of a method, as a buffer (empty without descriptors).
    @inline(__always)
    static func fields(_ m: UnsafePointer<chi_method_desc_t>) -> UnsafeBufferPointer<Field> {
        UnsafeBufferPointer(start: m.pointee.fields, count: m.pointee.fields == nil ? 0 : Int(m.pointee.nfields))
    }

    /// A plain integer field's value (the length of a bulk field).
    static func value(_ t: UnsafeRawPointer, _ f: Field) -> UInt64 {
        let p = t + Int(f.offset)
        switch f.size {
        case 1: return UInt64(p.load(as: UInt8.self))
        case 2: return UInt64(p.loadUnaligned(as: UInt16.self))
        case 4: return UInt64(p.loadUnaligned(as: UInt32.self))
        case 8: return p.loadUnaligned(as: UInt64.self)
        default: return 0
        }
    }

    static func isPlain(_ f: Field) -> Bool {
        f.type != UInt32(CHI_FT_BULK) && f.type != UInt32(CHI_FT_SHM_PTR)
    }

    /// Whether field `f` is in a request: IN/INOUT fields, and every bulk field.
    @inline(__always)
    static func travels(_ f: Field) -> Bool {
        f.dir & UInt32(CHI_DIR_IN) != 0 || f.type == UInt32(CHI_FT_BULK)
    }

    /// Whether bulk field `f`'s bytes go with the request: an IN field that is DT_WRITE (the
    /// data travels) or DT_EXPOSE (the remote side may read it). An OUT-only bulk field
    /// gets a zeroed buffer there.
    @inline(__always)
    static func carriesData(_ f: Field) -> Bool {
        f.dir & UInt32(CHI_DIR_IN) != 0 && f.bulk_mode & UInt32(CHI_DT_WRITE | CHI_DT_EXPOSE) != 0
    }

    /// Whether bulk field `f`'s bytes go back with the reply: DT_EXPOSE (the remote side may
    /// have written the buffer), or an OUT/INOUT field that is DT_WRITE (its output).
    static func comesBack(_ f: Field) -> Bool {
        f.type == UInt32(CHI_FT_BULK) && (f.bulk_mode & UInt32(CHI_DT_EXPOSE) != 0
            || (f.dir & UInt32(CHI_DIR_OUT) != 0 && f.bulk_mode & UInt32(CHI_DT_WRITE) != 0))
    }

    /// The byte count of bulk field `f` of task `t`, checked against `limit` (at most
    /// `maxBulk`, the frame decoder's ceiling).
    static func bulkLength(_ t: UnsafeRawPointer, _ f: Field, _ all: UnsafeBufferPointer<Field>,
                           limit: UInt64 = maxBulk) throws(ChiError) -> UInt64 {
        let i = Int(f.bulk_size_field)
        guard i >= 0 && i < all.count else {
            throw ChiError(CInt(CHI_EBADTASK), "bulk field \(String(cString: f.name)) names no size field")
        }
        let n = value(t, all[i])
        let limit = min(limit, maxBulk)
        guard n <= limit else {
            throw ChiError(EMSGSIZE, "bulk field \(String(cString: f.name)) of \(n) bytes exceeds the \(sizeText(Int(limit))) a remote task may carry (cluster.max_bulk)")
        }
        return n
    }

    // MARK: Requests

    /// Encodes task `t` (method `m`) for container `container` of another node.
    /// `resolve` checks a bulk pointer of the task (inside one buffer its submitter holds).
    /// `replica`: a primary's copy for a backup, flagged CHI_TASK_REPLICA and carrying every
    /// field, the OUT ones too (the primary's outputs, which the backup may apply).
    static func encodeRequest(_ t: UnsafeMutablePointer<chi_task_t>, _ m: UnsafePointer<chi_method_desc_t>,
                              container: UInt32, reqId: UInt64, maxBulk limit: UInt64 = maxBulk,
                              replica: Bool = false, seq: UInt64 = 0,
                              resolve: (chi_shm_ptr_t, UInt64) -> UnsafeMutableRawPointer?) throws(ChiError) -> ByteBuffer
    {
        let raw = UnsafeRawPointer(t)
        let fs = fields(m)
        let replica = replica || t.pointee.flags & UInt32(CHI_TASK_REPLICA) != 0
        var b = ByteBuffer.frame(.request, capacity: 64 + Int(m.pointee.task_size))
        b.writeInteger(reqId)
        b.writeInteger(t.pointee.pool_id)
        b.writeInteger(t.pointee.method)
        b.writeInteger(container)
        b.writeInteger(m.pointee.task_size)
        b.writeInteger(t.pointee.prio)
        let flags = t.pointee.flags | (replica ? UInt32(CHI_TASK_REPLICA) : 0)
        b.writeInteger(flags)
        b.writeInteger(t.pointee.lane_hash)
        // A replica's request carries its place in the container's sequence of changes.
        if flags & UInt32(CHI_TASK_REPLICA) != 0 { b.writeInteger(seq) }
        if fs.isEmpty {
            b.writeBytes(UnsafeRawBufferPointer(start: raw + headerSize, count: Int(m.pointee.task_size) - headerSize))
        }
        for f in fs where replica || travels(f) {
            if f.type == UInt32(CHI_FT_BULK) {
                let n = try bulkLength(raw, f, fs, limit: limit)
                b.writeInteger(n)
                if carriesData(f) && n > 0 {
                    let ptr = (raw + Int(f.offset)).loadUnaligned(as: chi_shm_ptr_t.self)
                    guard let p = resolve(ptr, n) else {
                        throw ChiError(EFAULT, "bulk field \(String(cString: f.name)): [\(ptr.offset), +\(n)) is not inside one buffer the task's submitter holds")
                    }
                    b.writeBytes(UnsafeRawBufferPointer(start: p, count: Int(n)))
                }
            } else if f.type != UInt32(CHI_FT_SHM_PTR) {
                b.writeBytes(UnsafeRawBufferPointer(start: raw + Int(f.offset), count: Int(f.size)))
            }
        }
        b.endFrame()
        return b
    }

    /// A request's fixed part.
    struct RequestHeader {
        var reqId: UInt64
        var poolId: UInt64
        var method: UInt32
        var container: UInt32
        var taskSize: UInt32
        var prio: UInt32
        var flags: UInt32
        var laneHash: UInt32
        /// A replica's place in its container's sequence of changes (CHI_TASK_REPLICA only).
        var seq: UInt64 = 0
        var isReplica: Bool { flags & UInt32(CHI_TASK_REPLICA) != 0 }
    }

    static func readRequestHeader(_ b: inout ByteBuffer) throws -> RequestHeader {
        var h = RequestHeader(reqId: try b.readInt("request id"), poolId: try b.readInt("pool id"),
                              method: try b.readInt("method"), container: try b.readInt("container"),
                              taskSize: try b.readInt("task size"), prio: try b.readInt("priority"),
                              flags: try b.readInt("flags"), laneHash: try b.readInt("lane hash"))
        if h.isReplica { h.seq = try b.readInt("replica sequence") }
        return h
    }

    /// Fills a freshly allocated, zeroed task from the request's fields, allocating one of
    /// the runtime's buffers (`slab`) in `segment` for each bulk field. Returns the buffers
    /// (offset, length) by field index. Throws FrameError when the body does not match the
    /// descriptors, a bulk length that differs from its size field included; ChiError(ENOMEM)
    /// when the segment is full. A bulk length above `maxBulk` throws ChiError(EMSGSIZE), and
    /// bulk lengths adding up to more than `budget` throw ChiError(ENOBUFS), both before
    /// anything is allocated or zeroed: a 100-byte frame must not make the runtime touch
    /// 256 MiB. On any throw the buffers made so far are freed.
    static func decodeRequestFields(_ b: inout ByteBuffer, into t: UnsafeMutableRawPointer,
                                    _ m: UnsafePointer<chi_method_desc_t>, segment: SharedSegment,
                                    slab: SlabAllocator, maxBulk limit: UInt64 = maxBulk,
                                    budget: UInt64 = .max, replica: Bool = false) throws -> [(field: Int, off: UInt64, size: UInt64)]
    {
        let fs = fields(m)
        var bulks: [(field: Int, off: UInt64, size: UInt64)] = []
        var sent: [(field: Int, length: UInt64)] = []
        do {
            if fs.isEmpty {
                let n = Int(m.pointee.task_size) - headerSize
                let s = try b.readExactly(n, "parameters")
                s.withUnsafeReadableBytes { (t + headerSize).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            }
            for (i, f) in fs.enumerated() where replica || travels(f) {
                if f.type == UInt32(CHI_FT_BULK) {
                    let n: UInt64 = try b.readInt("bulk length")
                    guard n <= min(limit, maxBulk) else {
                        throw ChiError(EMSGSIZE, "bulk field \(String(cString: f.name)) of \(n) bytes exceeds the \(sizeText(Int(min(limit, maxBulk)))) a request may carry here (cluster.max_bulk)")
                    }
                    let held = sent.reduce(0) { $0 + $1.length }
                    guard n <= budget && held <= budget - n else {
                        throw ChiError(ENOBUFS, "bulk field \(String(cString: f.name)) of \(n) bytes exceeds what the connection may still hold here (\(budget) bytes left of cluster.connection_budget)")
                    }
                    sent.append((i, n))
                    var ptr = chi_shm_ptr_t()
                    if n > 0 {
                        guard let off = try? slab.allocate(n, kind: UInt32(CHI_MEM_BUFFER)), let p = segment.pointer(off, n) else {
                            throw ChiError(ENOMEM, "no room in the segment for \(n) bytes of bulk data")
                        }
                        bulks.append((i, off, n))
                        if carriesData(f) {
                            let s = try b.readExactly(Int(n), "bulk data")
                            s.withUnsafeReadableBytes { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                        } else {
                            p.initializeMemory(as: UInt8.self, repeating: 0, count: Int(n))
                        }
                        ptr.offset = off
                    }
                    (t + Int(f.offset)).storeBytes(of: ptr, as: chi_shm_ptr_t.self)
                } else if f.type != UInt32(CHI_FT_SHM_PTR) {
                    let s = try b.readExactly(Int(f.size), "field \(String(cString: f.name))")
                    s.withUnsafeReadableBytes { (t + Int(f.offset)).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                }
            }
            guard b.readableBytes == 0 else {
                throw FrameError.malformed("\(b.readableBytes) bytes left over after the fields")
            }
            // The buffer was sized by the length on the wire; the module trusts the size field
            // (small_message's Io fills `size` bytes). A sender that follows the descriptors
            // sends exactly the size field's value, so any other length is a malformed body.
            // A size field that does not travel stays zero here, below any buffer.
            for (i, n) in sent {
                let f = fs[i]
                let claimed = try bulkLength(UnsafeRawPointer(t), f, fs)
                let travels = fs[Int(f.bulk_size_field)].dir & UInt32(CHI_DIR_IN) != 0
                guard claimed == n || (!travels && claimed <= n) else {
                    throw FrameError.malformed("bulk field \(String(cString: f.name)): \(n) bytes sent, its size field says \(claimed)")
                }
            }
        } catch {
            for x in bulks { try? slab.free(x.off, kind: UInt32(CHI_MEM_BUFFER)) }
            throw error
        }
        return bulks
    }

    // MARK: Replies

    /// Encodes a reply carrying only a status (the request never reached a method).
    static func encodeReject(reqId: UInt64, rc: CInt, message: String) -> ByteBuffer {
        var b = ByteBuffer.frame(.reply, capacity: 24 + message.utf8.count)
        b.writeInteger(reqId)
        b.writeInteger(Int32(rc))
        b.writeInteger(UInt32(0))
        writeMessage(&b, message)
        b.endFrame()
        return b
    }

    private static func writeMessage(_ b: inout ByteBuffer, _ message: String) {
        let bytes = message.utf8.prefix(4000)
        b.writeInteger(UInt32(bytes.count))
        b.writeBytes(bytes)
    }

    /// Encodes the outcome of a remote request that ran here.
    static func encodeReply(_ t: UnsafeMutablePointer<chi_task_t>, _ m: UnsafePointer<chi_method_desc_t>,
                            reqId: UInt64, message: String?, bulks: [(field: Int, off: UInt64, size: UInt64)],
                            segment: SharedSegment) -> ByteBuffer
    {
        let raw = UnsafeRawPointer(t)
        let fs = fields(m)
        var b = ByteBuffer.frame(.reply, capacity: 64 + Int(m.pointee.task_size))
        b.writeInteger(reqId)
        b.writeInteger(Int32(t.pointee.rc))
        b.writeInteger(t.pointee.runs)
        writeMessage(&b, t.pointee.rc < 0 ? (message ?? "") : "")
        if fs.isEmpty {
            b.writeBytes(UnsafeRawBufferPointer(start: raw + headerSize, count: Int(m.pointee.task_size) - headerSize))
        }
        for f in fs where f.dir & UInt32(CHI_DIR_OUT) != 0 && isPlain(f) {
            b.writeBytes(UnsafeRawBufferPointer(start: raw + Int(f.offset), count: Int(f.size)))
        }
        for (i, f) in fs.enumerated() where comesBack(f) {
            guard let x = bulks.first(where: { $0.field == i }), let p = segment.pointer(x.off, x.size) else {
                b.writeInteger(UInt64(0))
                continue
            }
            b.writeInteger(x.size)
            b.writeBytes(UnsafeRawBufferPointer(start: p, count: Int(x.size)))
        }
        b.endFrame()
        return b
    }

    /// A reply's fixed part.
    struct ReplyHeader {
        var reqId: UInt64
        var rc: Int32
        var runs: UInt32
        var message: String
    }

    static func readReplyHeader(_ b: inout ByteBuffer) throws -> ReplyHeader {
        let id: UInt64 = try b.readInt("request id")
        let rc: Int32 = try b.readInt("status")
        let runs: UInt32 = try b.readInt("runs")
        let n: UInt32 = try b.readInt("message length")
        guard n <= 4000 else { throw FrameError.malformed("message of \(n) bytes") }
        let s = try b.readExactly(Int(n), "message")
        return ReplyHeader(reqId: id, rc: rc, runs: runs, message: String(decoding: s.readableBytesView, as: UTF8.self))
    }

    /// Writes a reply's outputs into the original task: OUT fields, and the bulk data that comes back
    /// into the buffers the task's bulk fields point at (checked by `resolve`: inside one
    /// buffer the task's submitter holds, and no longer than the field's length).
    static func decodeReplyFields(_ b: inout ByteBuffer, into t: UnsafeMutablePointer<chi_task_t>,
                                  _ m: UnsafePointer<chi_method_desc_t>,
                                  resolve: (chi_shm_ptr_t, UInt64) -> UnsafeMutableRawPointer?) throws(ChiError)
    {
        let raw = UnsafeMutableRawPointer(t)
        let fs = fields(m)
        do {
            if fs.isEmpty {
                let n = Int(m.pointee.task_size) - headerSize
                let s = try b.readExactly(n, "parameters")
                s.withUnsafeReadableBytes { (raw + headerSize).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            }
            for f in fs where f.dir & UInt32(CHI_DIR_OUT) != 0 && isPlain(f) {
                let s = try b.readExactly(Int(f.size), "field \(String(cString: f.name))")
                s.withUnsafeReadableBytes { (raw + Int(f.offset)).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            }
            for f in fs where comesBack(f) {
                let n: UInt64 = try b.readInt("bulk length")
                if n == 0 { continue }
                let want = try bulkLength(raw, f, fs)
                let ptr = (raw + Int(f.offset)).loadUnaligned(as: chi_shm_ptr_t.self)
                guard n <= want, let p = resolve(ptr, n) else {
                    throw ChiError(EFAULT, "bulk field \(String(cString: f.name)): \(n) bytes came back for a buffer of \(want)")
                }
                let s = try b.readExactly(Int(n), "bulk data")
                s.withUnsafeReadableBytes { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            }
        } catch let e as ChiError {
            throw e
        } catch {
            throw ChiError(CInt(CHI_EBADTASK), "reply does not match the method's fields: \(error)")
        }
    }
}
