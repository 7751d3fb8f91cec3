import CChimaera
import NIOCore

extension Fuzz {
    /// Target `request`: a request body as it arrives from a peer (the layout is TaskCodec's).
    ///
    /// Runs the receiving side as `RemoteQueue.handleRequest` does: the header, the method (the
    /// pool id picks a module, modulo their count), the task-size check, `decodeRequestFields`
    /// into a zeroed task. The task is a malloc'd block of exactly the method's size, so ASan
    /// sees a write past it. Checks, when the body is accepted: each bulk buffer lies in the
    /// segment and the task's bulk field points at it; no bulk field's size field announces
    /// more than its buffer holds (a module trusts that field: Io would write past the
    /// buffer); and encoding the task again gives back the same body.
    package static func request(_ data: UnsafeRawBufferPointer) {
        var b = ByteBuffer(bytes: data)
        guard let h = try? TaskCodec.readRequestHeader(&b), !modules.isEmpty else { return }
        let module = modules[Int(h.poolId % UInt64(modules.count))]
        guard let m = module.method(h.method), h.taskSize == m.pointee.task_size else { return }
        let size = Int(m.pointee.task_size)
        let t = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        defer { t.deallocate() }
        t.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        let allocator = freshAllocator()
        let bulks: [(field: Int, off: UInt64, size: UInt64)]
        do {
            bulks = try TaskCodec.decodeRequestFields(&b, into: t, m, segment: segment, slab: allocator,
                                                      replica: h.isReplica)
        } catch {
            return
        }
        let fs = TaskCodec.fields(m)
        var allSizesTravel = true
        for (i, f) in fs.enumerated() where f.type == UInt32(CHI_FT_BULK) && TaskCodec.travels(f) {
            let ptr = (t + Int(f.offset)).loadUnaligned(as: chi_shm_ptr_t.self)
            let have = bulks.first { $0.field == i }
            if let have {
                precondition(segment.pointer(have.off, have.size) != nil, "a bulk buffer outside the segment")
                precondition(ptr.segment == 0 && ptr.offset == have.off, "a bulk field does not point at its buffer")
            } else {
                precondition(ptr.offset == 0, "an empty bulk field points somewhere")
            }
            let sizeField = Int(f.bulk_size_field)
            guard sizeField >= 0 && sizeField < fs.count else { continue }
            allSizesTravel = allSizesTravel && fs[sizeField].dir & UInt32(CHI_DIR_IN) != 0
            precondition(TaskCodec.value(t, fs[sizeField]) <= have?.size ?? 0,
                         "bulk field \(String(cString: f.name)): its size field announces \(TaskCodec.value(t, fs[sizeField])) bytes, its buffer holds \(have?.size ?? 0)")
        }
        let task = t.assumingMemoryBound(to: chi_task_t.self)
        task.pointee.pool_id = h.poolId
        task.pointee.method = h.method
        task.pointee.prio = h.prio
        task.pointee.flags = h.flags
        task.pointee.lane_hash = h.laneHash
        guard let again = try? TaskCodec.encodeRequest(task, m, container: h.container, reqId: h.reqId,
                                                       seq: h.seq, resolve: resolve)
        else { preconditionFailure("an accepted request does not encode again") }
        if allSizesTravel {
            precondition(again.readableBytesView.dropFirst(5).elementsEqual(data),
                         "an accepted request encodes to other bytes")
        }
    }

    /// Target `reply`: a reply from a peer to a task of this node.
    ///
    /// Byte 0 picks the method (of every module's, in order), bytes 1-2 give the length of each
    /// of the task's bulk buffers (0-4095), the rest is the reply body. The original task is
    /// what the requesting side holds: a malloc'd block of the method's size filled with a
    /// pattern, its bulk fields pointing at buffers in the segment followed by guard bytes.
    /// Runs `readReplyHeader` and `decodeReplyFields` as `handleReply` does. Checks: only OUT
    /// fields (the whole parameter block for a method without descriptors) and the bulk
    /// buffers change, and nothing is written past a bulk buffer's length.
    package static func reply(_ data: UnsafeRawBufferPointer) {
        let methods = allMethods
        guard data.count >= 3, !methods.isEmpty else { return }
        let m = methods[Int(data[0]) % methods.count]
        let want = UInt64(data.loadUnaligned(fromByteOffset: 1, as: UInt16.self) & 0xfff)
        var b = ByteBuffer(bytes: data[3...])
        guard let h = try? TaskCodec.readReplyHeader(&b), !(h.rc < 0 && b.readableBytes == 0) else { return }

        let size = Int(m.pointee.task_size)
        let t = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        defer { t.deallocate() }
        t.initializeMemory(as: UInt8.self, repeating: 0x5a, count: size)
        let fs = TaskCodec.fields(m)
        let guardBytes: UInt64 = 64
        let allocator = freshAllocator()
        var buffers: [(off: UInt64, p: UnsafeMutableRawPointer)] = []
        for f in fs where f.type == UInt32(CHI_FT_BULK) {
            guard let off = try? allocator.allocate(want + guardBytes, kind: UInt32(CHI_MEM_BUFFER)),
                  let p = segment.pointer(off, want + guardBytes)
            else { preconditionFailure("the fuzz segment is too small") }
            p.initializeMemory(as: UInt8.self, repeating: 0xa5, count: Int(want + guardBytes))
            buffers.append((off, p))
            (t + Int(f.offset)).storeBytes(of: chi_shm_ptr_t(segment: 0, reserved: 0, offset: off), toByteOffset: 0, as: chi_shm_ptr_t.self)
            let s = Int(f.bulk_size_field)
            if s >= 0 && s < fs.count && TaskCodec.isPlain(fs[s]) {
                storeInteger(want, at: t + Int(fs[s].offset), size: Int(fs[s].size))
            }
        }
        let before = Array(UnsafeRawBufferPointer(start: t, count: size))
        var writable = [Bool](repeating: fs.isEmpty, count: size)
        for i in 0..<min(TaskCodec.headerSize, size) { writable[i] = false }
        for f in fs where f.dir & UInt32(CHI_DIR_OUT) != 0 && TaskCodec.isPlain(f) {
            for i in Int(f.offset)..<Int(f.offset + f.size) { writable[i] = true }
        }

        let task = t.assumingMemoryBound(to: chi_task_t.self)
        _ = try? TaskCodec.decodeReplyFields(&b, into: task, m, resolve: resolve)

        for i in 0..<size where !writable[i] {
            precondition(t.load(fromByteOffset: i, as: UInt8.self) == before[i],
                         "byte \(i) of the task changed, outside every OUT field")
        }
        for (_, p) in buffers {
            for i in Int(want)..<Int(want + guardBytes) {
                precondition(p.load(fromByteOffset: i, as: UInt8.self) == 0xa5, "a write past a bulk buffer of \(want) bytes")
            }
        }
        for x in buffers { try? allocator.free(x.off, kind: UInt32(CHI_MEM_BUFFER)) }
    }

    /// Stores `v` as a `size`-byte integer (1, 2, 4 or 8; other sizes are left alone).
    private static func storeInteger(_ v: UInt64, at p: UnsafeMutableRawPointer, size: Int) {
        switch size {
        case 1: p.storeBytes(of: UInt8(truncatingIfNeeded: v), as: UInt8.self)
        case 2: p.storeBytes(of: UInt16(truncatingIfNeeded: v), as: UInt16.self)
        case 4: p.storeBytes(of: UInt32(truncatingIfNeeded: v), as: UInt32.self)
        case 8: p.storeBytes(of: v, as: UInt64.self)
        default: break
        }
    }

    /// A task of method `m` with every IN field set (integers to 1, strings to "seed", bulk
    /// buffers of 16 bytes): the shape a real client sends. Calls `body` with it.
    private static func sampleTask<R>(_ m: UnsafePointer<chi_method_desc_t>, _ body: (UnsafeMutablePointer<chi_task_t>) -> R) -> R {
        let size = Int(m.pointee.task_size)
        let t = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        defer { t.deallocate() }
        t.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        let fs = TaskCodec.fields(m)
        let allocator = freshAllocator()
        for f in fs {
            let p = t + Int(f.offset)
            switch f.type {
            case UInt32(CHI_FT_BULK):
                let off = try! allocator.allocate(16, kind: UInt32(CHI_MEM_BUFFER))
                segment.pointer(off, 16)!.initializeMemory(as: UInt8.self, repeating: 0x42, count: 16)
                p.storeBytes(of: chi_shm_ptr_t(segment: 0, reserved: 0, offset: off), as: chi_shm_ptr_t.self)
            case UInt32(CHI_FT_STR):
                p.copyMemory(from: Array("seed".utf8.prefix(Int(f.size) - 1)), byteCount: min(4, Int(f.size) - 1))
            case UInt32(CHI_FT_SHM_PTR), UInt32(CHI_FT_DOMAIN_QUERY), UInt32(CHI_FT_BYTES):
                break
            default:
                storeInteger(1, at: p, size: Int(f.size))
            }
        }
        for f in fs where f.type == UInt32(CHI_FT_BULK) {
            let s = Int(f.bulk_size_field)
            if s >= 0 && s < fs.count { storeInteger(16, at: t + Int(fs[s].offset), size: Int(fs[s].size)) }
        }
        let task = t.assumingMemoryBound(to: chi_task_t.self)
        task.pointee.method = m.pointee.id
        return body(task)
    }

    /// Seeds: one request per method of every module, as `encodeRequest` writes it (the pool
    /// id is the module's index, so `request` finds the same method).
    package static func requestSeeds() -> [[UInt8]] {
        var out: [[UInt8]] = []
        for (mi, module) in modules.enumerated() {
            guard let methods = module.vtable.methods else { continue }
            for i in 0..<Int(module.vtable.nmethods) {
                let m = methods + i
                let seed: [UInt8]? = sampleTask(m) { task in
                    task.pointee.pool_id = UInt64(mi)
                    guard let b = try? TaskCodec.encodeRequest(task, m, container: 0, reqId: 7, resolve: resolve)
                    else { return nil }
                    return Array(b.readableBytesView.dropFirst(5))
                }
                if let seed { out.append(seed) }
            }
        }
        return out
    }

    /// Seeds: one reply per method, as `encodeReply` writes it, with 16-byte bulk buffers.
    package static func replySeeds() -> [[UInt8]] {
        allMethods.enumerated().map { i, m in
            sampleTask(m) { task in
                let fs = TaskCodec.fields(m)
                let bulks = fs.indices.filter { fs[$0].type == UInt32(CHI_FT_BULK) }.map { k in
                    (field: k, off: (UnsafeRawPointer(task) + Int(fs[k].offset)).loadUnaligned(as: chi_shm_ptr_t.self).offset, size: UInt64(16))
                }
                let b = TaskCodec.encodeReply(task, m, reqId: 7, message: nil, bulks: bulks, segment: segment)
                return [UInt8(i), 16, 0] + Array(b.readableBytesView.dropFirst(5))
            }
        }
    }
}
