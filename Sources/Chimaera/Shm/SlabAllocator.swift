import CChimaera
import Glibc

/// Where a slab allocator gets its spans and large extents: the runtime's `SpanMap` for the
/// runtime itself, a registration channel for a client.
package protocol SpanSource: AnyObject {
    /// Up to `count` (at least one) spans for slab class `cls` of memory kind `kind`
    /// (CHI_MEM_*), as segment offsets.
    func spans(kind: UInt32, cls: Int, count: Int) throws(ChiError) -> [UInt64]
    /// One extent of at least `bytes` of memory kind `kind`.
    func large(kind: UInt32, bytes: UInt64) throws(ChiError) -> (off: UInt64, bytes: UInt64)
    /// Gives back slab spans that hold no live block.
    func giveBack(spans: [UInt64])
    /// Gives back an extent.
    func giveBack(large off: UInt64)
}

/// A process-private allocator over spans of the segment: size classes of 64 B to 32 KiB,
/// each span holding blocks of one class and one kind (tasks or buffers), larger blocks as
/// whole extents.
///
/// Its metadata lives in this process only, so nothing in shared memory can corrupt it. A
/// task block freed and taken back by the same thread goes through a one-block cache per
/// class (no lock, no atomic operation); everything else takes a process-private lock.
/// Spans that empty out go back to their source beyond one spare per class, so freed memory
/// serves any size again. Double frees of buffers are detected (a bitmap per span); a task
/// carries its class in its header, set at allocation and cleared at free.
/// Not guaranteed: a block cached by a thread that exits is only reclaimed with the client.
package final class SlabAllocator: @unchecked Sendable {
    static let classes = Int(CHI_SLAB_CLASSES)
    static let minShift = UInt64(CHI_MIN_BLOCK_SHIFT)
    static let spanShift = UInt64(CHI_SPAN_SHIFT)
    static let spanSize: UInt64 = 1 << spanShift
    /// The largest slab block; bigger allocations are extents.
    static let maxSlab: UInt64 = 1 << (minShift + UInt64(classes) - 1)

    final class Span {
        let off: UInt64
        let cls: Int
        let kind: UInt32
        let capacity: Int
        /// Free block indices.
        var free: [UInt16]
        /// Bit i set: block i is allocated.
        var bits: [UInt64]
        var inPartial = false

        init(off: UInt64, cls: Int, kind: UInt32) {
            self.off = off
            self.cls = cls
            self.kind = kind
            capacity = Int(SlabAllocator.spanSize >> (UInt64(cls) + SlabAllocator.minShift))
            free = (0..<capacity).reversed().map { UInt16($0) }
            bits = [UInt64](repeating: 0, count: (capacity + 63) / 64)
        }

        var blockSize: UInt64 { 1 << (UInt64(cls) + SlabAllocator.minShift) }
        var isEmpty: Bool { free.count == capacity }
    }

    private let source: SpanSource
    private let heapOff: UInt64
    private let lock = Mutex()
    /// Spans with a free block, per kind (0 tasks, 1 buffers) and class.
    private var partial: [[Span]]
    /// Empty spans kept per kind and class (at most one each).
    private var spare: [Span?]
    /// How many spans the next refill of a class asks for (doubles up to 16).
    private var batch: [Int]
    private var spans: [UInt32: Span] = [:]
    /// Extents by offset: their size and kind.
    private var extents: [UInt64: (bytes: UInt64, kind: UInt32)] = [:]
    /// Identifies this allocator to the per-thread task cache.
    let cacheOwner: UInt64 = chi_add64(SlabAllocator.owners, 1) &+ 1
    nonisolated(unsafe) private static let owners: UnsafeMutablePointer<UInt64> = {
        let p = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        p.initialize(to: 0)
        return p
    }()
    /// Bytes of live blocks and extents (statistics).
    package private(set) var liveBytes: UInt64 = 0

    package init(source: SpanSource, heapOff: UInt64) {
        self.source = source
        self.heapOff = heapOff
        partial = [[Span]](repeating: [], count: 2 * Self.classes)
        spare = [Span?](repeating: nil, count: 2 * Self.classes)
        batch = [Int](repeating: 1, count: 2 * Self.classes)
    }

    @inline(__always)
    static func sizeClass(_ size: UInt64) -> Int {
        let s = max(size, 1 << minShift)
        return Int(64 - UInt64((s - 1).leadingZeroBitCount) - minShift)
    }

    @inline(__always)
    private static func slot(_ kind: UInt32, _ cls: Int) -> Int { (kind == UInt32(CHI_MEM_TASK) ? 0 : classes) + cls }

    @inline(__always)
    private func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T { try lock.withLock(body) }

    // MARK: Tasks

    /// The header word that marks a live task block (reserved[0]): this magic, the owning
    /// client's tag (bits 8-31) and the block's size class (bits 0-7).
    static let liveMagic: UInt64 = 0x4C49_5645_0000_0000 // "LIVE"
    static let liveMask: UInt64 = 0xFFFF_FFFF_0000_0000

    /// Allocates a task block: first the calling thread's cached block of the class.
    @inline(__always)
    package func allocateTask(_ size: UInt64) throws(ChiError) -> UInt64 {
        let c = Self.sizeClass(size)
        if c < Int(CHI_TASK_CACHE_CLASSES) {
            let off = chi_tls_cache_take(cacheOwner, UInt32(c))
            if off != 0 { return off }
        }
        return try allocate(size, kind: UInt32(CHI_MEM_TASK))
    }

    /// Frees a task block whose class (from its header word) is `cls`; into the thread's
    /// cache when its slot is free.
    @inline(__always)
    package func freeTask(_ off: UInt64, cls: Int) throws(ChiError) {
        if cls < Int(CHI_TASK_CACHE_CLASSES), chi_tls_cache_put(cacheOwner, UInt32(cls), off) != 0 { return }
        try free(off, kind: UInt32(CHI_MEM_TASK))
    }

    // MARK: Blocks

    /// Allocates `size` bytes of memory kind `kind`, 64-byte aligned. Throws ENOMEM (or the
    /// source's limit error) and changes nothing when no memory can be had.
    package func allocate(_ size: UInt64, kind: UInt32) throws(ChiError) -> UInt64 {
        guard size > 0 else { throw ChiError(EINVAL, "cannot allocate 0 bytes") }
        if size > Self.maxSlab {
            let x = try source.large(kind: kind, bytes: size)
            withLock {
                extents[x.off] = (x.bytes, kind)
                liveBytes &+= x.bytes
            }
            return x.off
        }
        let c = Self.sizeClass(size)
        let k = Self.slot(kind, c)
        return try withLock { () throws(ChiError) -> UInt64 in
            if partial[k].isEmpty {
                if let s = spare[k] {
                    spare[k] = nil
                    s.inPartial = true
                    partial[k].append(s)
                } else {
                    let n = batch[k]
                    let offs = try source.spans(kind: kind, cls: c, count: n)
                    batch[k] = min(16, n * 2)
                    for o in offs {
                        let s = Span(off: o, cls: c, kind: kind)
                        spans[UInt32((o - heapOff) >> Self.spanShift)] = s
                        s.inPartial = true
                        partial[k].append(s)
                    }
                }
            }
            let s = partial[k][partial[k].count - 1]
            let i = Int(s.free.removeLast())
            s.bits[i >> 6] |= 1 << UInt64(i & 63)
            if s.free.isEmpty {
                s.inPartial = false
                partial[k].removeLast()
            }
            liveBytes &+= s.blockSize
            return s.off + UInt64(i) << (UInt64(c) + Self.minShift)
        }
    }

    /// Frees a block of kind `kind`. Throws EINVAL, changing nothing, for an offset that is
    /// not a live block of that kind made here (a double free among them).
    package func free(_ off: UInt64, kind: UInt32) throws(ChiError) {
        if off >= heapOff, (off - heapOff) & (Self.spanSize - 1) == 0,
           let x = withLock({ extents[off] }) {
            guard x.kind == kind else { throw ChiError(EINVAL, "block at offset \(off) is not a \(Self.kindName(kind))") }
            withLock {
                liveBytes &-= x.bytes
                _ = extents.removeValue(forKey: off)
            }
            source.giveBack(large: off)
            return
        }
        let giveBack: [UInt64] = try withLock { () throws(ChiError) -> [UInt64] in
            guard off >= heapOff, let s = spans[UInt32((off - heapOff) >> Self.spanShift)] else {
                throw ChiError(EINVAL, "offset \(off) is not a \(Self.kindName(kind)) of this client")
            }
            guard s.kind == kind else { throw ChiError(EINVAL, "offset \(off) is not a \(Self.kindName(kind))") }
            let rel = off - s.off
            guard rel & (s.blockSize - 1) == 0 else {
                throw ChiError(EINVAL, "offset \(off) is inside a \(s.blockSize)-byte block, not its start")
            }
            let i = Int(rel >> (UInt64(s.cls) + Self.minShift))
            let bit: UInt64 = 1 << UInt64(i & 63)
            guard s.bits[i >> 6] & bit != 0 else {
                throw ChiError(EINVAL, "the \(Self.kindName(kind)) at offset \(off) is not allocated (freed twice?)")
            }
            s.bits[i >> 6] &= ~bit
            s.free.append(UInt16(i))
            liveBytes &-= s.blockSize
            let k = Self.slot(kind, s.cls)
            if !s.inPartial {
                s.inPartial = true
                partial[k].append(s)
            }
            guard s.isEmpty else { return [] }
            // Keep one spare span per class; give the other empty ones back (those a batched
            // refill brought and nobody used included) so they serve any size.
            var back: [UInt64] = []
            partial[k].removeAll { e in
                guard e.isEmpty else { return false }
                e.inPartial = false
                if spare[k] == nil {
                    spare[k] = e
                } else {
                    spans.removeValue(forKey: UInt32((e.off - heapOff) >> Self.spanShift))
                    back.append(e.off)
                }
                return true
            }
            return back
        }
        var rest = giveBack[...]
        while !rest.isEmpty {
            source.giveBack(spans: Array(rest.prefix(Int(CHI_REG_MAX_OFFS))))
            rest = rest.dropFirst(Int(CHI_REG_MAX_OFFS))
        }
    }

    /// The usable size of the block of kind `kind` that starts at `off`, if it is live.
    package func blockSize(_ off: UInt64, kind: UInt32) -> UInt64? {
        withLock {
            if let x = extents[off] { return x.kind == kind ? x.bytes : nil }
            guard off >= heapOff, let s = spans[UInt32((off - heapOff) >> Self.spanShift)], s.kind == kind else { return nil }
            let rel = off - s.off
            guard rel & (s.blockSize - 1) == 0 else { return nil }
            let i = Int(rel >> (UInt64(s.cls) + Self.minShift))
            return s.bits[i >> 6] & (1 << UInt64(i & 63)) != 0 ? s.blockSize : nil
        }
    }

    /// Spans and extents this allocator holds (statistics).
    package var heldSpans: Int {
        withLock { spans.count + extents.values.reduce(0) { $0 + Int($1.bytes >> Self.spanShift) } }
    }

    static func kindName(_ kind: UInt32) -> String { kind == UInt32(CHI_MEM_TASK) ? "task" : "buffer" }
}
