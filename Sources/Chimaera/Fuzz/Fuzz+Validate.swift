import CChimaera
import Glibc

extension Fuzz {
    /// The heap the validate target checks against: a span map laid out once (two clients'
    /// task and buffer slabs of every class, large tasks and buffers, a control area, free
    /// spans between them) and, beside it, the same layout as a plain list of blocks: the
    /// oracle the span map's answers are compared with.
    private final class Heap {
        static let heapOff: UInt64 = 1 << 20
        static let spanSize = SpanMap.spanSize
        let map = SpanMap(heapOff: heapOff, heapSize: 16 << 20)
        /// Every block handed out: [start, end), owner, whether it holds tasks or buffers.
        var blocks: [(start: UInt64, end: UInt64, owner: UInt16, task: Bool)] = []
        /// The bytes of the segment a client's task is read from (the heap's offsets).
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: Int(16 << 20), alignment: 64)

        init() {
            for owner: UInt16 in [1, 2] {
                for cls in 0..<Int(CHI_SLAB_CLASSES) {
                    for (kind, task) in [(SpanMap.Kind.taskSlab, true), (.bufferSlab, false)] {
                        let off = try! map.allocateSpans(owner: owner, kind: kind, cls: cls, count: 1)[0]
                        let size = UInt64(64) << UInt64(cls)
                        var b = off
                        while b < off + Self.spanSize {
                            blocks.append((b, b + size, owner, task))
                            b += size
                        }
                    }
                }
                for (kind, task, n) in [(SpanMap.Kind.largeTask, true, 2), (.largeBuffer, false, 3)] {
                    let x = try! map.allocateExtent(owner: owner, kind: kind, bytes: UInt64(n) * Self.spanSize)
                    blocks.append((x.off, x.off + x.bytes, owner, task))
                }
                // A free span between owners' memory.
                let gap = try! map.allocateSpans(owner: 9, kind: .bufferSlab, cls: 0, count: 1)[0]
                map.free(gap, owner: 9)
            }
            _ = try! map.allocateExtent(owner: SpanMap.runtimeOwner, kind: .control, bytes: 100_000)
        }

        func block(containing off: UInt64) -> (start: UInt64, end: UInt64, owner: UInt16, task: Bool)? {
            blocks.first { off >= $0.start && off < $0.end }
        }
    }

    nonisolated(unsafe) private static var heap: Heap?
    nonisolated(unsafe) private static var pools: [RuntimePool] = []
    nonisolated(unsafe) private static var runtime: Runtime?

    /// A pool per module of 6 containers, alternating between nodes 1 and 2 (node 1 is this
    /// one), over a runtime that is made but never started (no thread runs).
    private static func fakePools() -> [RuntimePool] {
        if !pools.isEmpty { return pools }
        var config = RuntimeConfig()
        config.shmSize = 32 << 20
        config.pinWorkers = false
        let rt = try! Runtime(config: config, segmentName: "fuzzv_\(getpid())", anonymous: true)
        runtime = rt
        for (i, module) in modules.enumerated() {
            let pool = RuntimePool(id: UInt64(2 + i), name: "p\(i)", module: module, workers: 1)
            for c in 0..<6 {
                let con = Container(pool: pool, id: UInt32(c), node: UInt32(1 + c % 2), runtime: rt)
                pool.containers.append(con)
                if con.node == 1 { pool.local.append(con) }
            }
            pools.append(pool)
        }
        return pools
    }

    /// Target `validate`: a ring entry and the task bytes behind it, through every check a
    /// client's task meets on its way in (Worker.accept and route): the span map's verdict on
    /// the entry, the size read once against the block, the copy, the method and periodic
    /// checks, the domain query, the bulk fields.
    ///
    /// Input: u64 ring entry (bytes 0-7; when byte 8 is odd it is folded into the heap so that
    /// most entries land in someone's memory), byte 8 (bit 1: the submitter is client 1 or 2),
    /// then the task bytes. Checks against the plain list of blocks: an entry is taken only if
    /// it starts a task block of the submitter, with the block's size as its limit; a bulk
    /// range passes only inside one buffer block of the submitter. The copy is a block of
    /// exactly the task's size, so ASan sees any read past it.
    package static func validate(_ data: UnsafeRawBufferPointer) {
        guard data.count >= 9, !modules.isEmpty else { return }
        if heap == nil { heap = Heap() }
        let h = heap!
        var v = data.loadUnaligned(as: UInt64.self)
        if data[8] & 1 != 0 { v = Heap.heapOff + v % (16 << 20) }
        let owner: UInt16 = data[8] & 2 != 0 ? 2 : 1
        let body = UnsafeRawBufferPointer(rebasing: data[9...])

        let off = v & ~CHI_RING_TAG_MASK
        let limit = h.map.taskLimit(off, owner: owner)
        let truth = h.block(containing: off)
        if let limit {
            guard let b = truth else { preconditionFailure("an entry outside every block was taken as a task") }
            precondition(b.owner == owner && b.task && b.start == off, "entry \(off) taken as \(owner)'s task: it is \(b)")
            precondition(limit == b.end - b.start, "a task block's limit \(limit) is not its size \(b.end - b.start)")
        } else if let b = truth, b.owner == owner, b.task, b.start == off {
            preconditionFailure("the start of \(owner)'s task block \(b) was refused")
        }
        guard let limit, v & CHI_RING_TAG_MASK == 0 else { return }

        // The client's bytes at the entry, then what the worker does with them.
        let at = h.bytes + Int(off - Heap.heapOff)
        let n = min(body.count, Int(limit))
        at.initializeMemory(as: UInt8.self, repeating: 0, count: Int(limit))
        if n > 0 { at.copyMemory(from: body.baseAddress!, byteCount: n) }
        let size = UInt64(at.load(as: UInt32.self))
        guard TaskCheck.size(size, limit: limit, maxTaskSize: 1 << 20) == nil else { return }
        precondition(size >= TaskCheck.headerSize && size <= limit)
        let copy = UnsafeMutableRawPointer.allocate(byteCount: Int(size), alignment: 64)
        defer { copy.deallocate() }
        copy.copyMemory(from: at, byteCount: Int(size))
        let t = copy.assumingMemoryBound(to: chi_task_t.self)
        TaskCheck.seal(t, size: size)
        precondition(t.pointee.flags & ~UInt32(CHI_TASK_USER_FLAGS) == 0)

        let all = fakePools()
        let pool = all[Int(t.pointee.pool_id % UInt64(all.count))]
        guard let m = pool.module.method(t.pointee.method) else { return }
        guard TaskCheck.method(t, m, module: pool.module.name, limits: RuntimeLimits()) == nil else { return }
        precondition(t.pointee.size >= m.pointee.task_size)
        if t.pointee.flags & UInt32(CHI_TASK_PERIODIC) != 0 {
            precondition(m.pointee.flags & UInt32(CHI_MF_PERIODIC_OK) != 0)
            precondition(t.pointee.period_ns >= RuntimeLimits().minPeriodNs)
        }
        switch DomainResolver.resolve(t.pointee.dom_query, in: pool, node: 1) {
        case .one(let c):
            precondition(c.with { Int($0.id) } < pool.containers.count)
        case .many(let r, _):
            precondition(r.lo >= 0 && r.lo < r.hi && r.hi <= r.all.count)
        case .failure:
            break
        }
        for f in TaskCheck.bulk(t, m, spans: h.map, owner: owner) {
            let b = h.block(containing: f.offset)
            let inside = f.segment == 0 && (b.map { $0.owner == owner && !$0.task && f.length <= $0.end - f.offset } ?? false)
            precondition(f.ok == inside, "bulk [\(f.offset), +\(f.length)) of client \(owner): span map says \(f.ok), the blocks say \(inside) (\(String(describing: b)))")
        }
    }

    /// Seeds: a well-formed Md and Io of client 1 at the start of its 256-byte task block, and
    /// the same entry folded, tagged and misaligned.
    package static func validateSeeds() -> [[UInt8]] {
        if heap == nil { heap = Heap() }
        let h = heap!
        guard let blk = h.blocks.first(where: { $0.owner == 1 && $0.task && $0.end - $0.start == 256 }) else { return [] }
        func seed(_ entry: UInt64, _ sel: UInt8, method: UInt32, size: UInt32) -> [UInt8] {
            var task = [UInt8](repeating: 0, count: 256)
            task.withUnsafeMutableBytes { b in
                b.storeBytes(of: size, toByteOffset: 0, as: UInt32.self)
                b.storeBytes(of: method, toByteOffset: 4, as: UInt32.self)
                b.storeBytes(of: chi_dq_direct_id(UInt32(CHI_SUBDOMAIN_GLOBAL_CONTAINERS), 1), toByteOffset: 24, as: chi_domain_query_t.self)
            }
            return withUnsafeBytes(of: entry) { Array($0) } + [sel] + task
        }
        return [seed(blk.start, 0, method: UInt32(CHI_SM_MD), size: UInt32(MemoryLayout<chi_sm_md_task_t>.size)),
                seed(blk.start, 0, method: UInt32(CHI_SM_IO), size: UInt32(MemoryLayout<chi_sm_io_task_t>.size)),
                seed(blk.start - Heap.heapOff, 1, method: UInt32(CHI_SM_MD), size: 136),
                seed(blk.start | 1, 0, method: UInt32(CHI_SM_MD), size: 136),
                seed(blk.start + 8, 2, method: UInt32(CHI_SM_MD), size: 136)]
    }
}
