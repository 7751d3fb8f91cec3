import CChimaera

/// The shared-memory allocator: power-of-two size classes from 64 bytes, each with a
/// lock-free free list, refilled from a bump pointer in 64 KiB spans.
///
/// Any process attached to the segment allocates and frees without a system call. A block
/// is found again from its offset alone: a one-byte table records each span's size class.
/// Not guaranteed: memory of a process that dies while holding blocks is not reclaimed.
package struct ShmAllocator: @unchecked Sendable {
    private let base: UnsafeMutableRawPointer
    private let hdr: UnsafeMutablePointer<chi_alloc_header_t>
    private let heads: UnsafeMutablePointer<UInt64>
    private let bump: UnsafeMutablePointer<UInt64>
    private let spans: UnsafeMutablePointer<UInt8>
    private let heapOff: UInt64
    private let heapSize: UInt64

    static let minShift: UInt64 = 6
    static let spanShift = UInt64(CHI_SPAN_SHIFT)
    static let spanSize: UInt64 = 1 << spanShift
    static let indexBits: UInt64 = 40
    static let indexMask: UInt64 = (1 << indexBits) - 1
    /// Identifies this allocator (this mapping of the segment) to the per-thread task cache.
    private let cacheOwner: UInt64

    package init(segment: SharedSegment) {
        base = segment.base
        cacheOwner = segment.mappingId
        hdr = (segment.base + Int(segment.header.pointee.alloc_off))
            .assumingMemoryBound(to: chi_alloc_header_t.self)
        let raw = UnsafeMutableRawPointer(hdr)
        heads = (raw + MemoryLayout<chi_alloc_header_t>.offset(of: \.free_heads)!)
            .assumingMemoryBound(to: UInt64.self)
        bump = (raw + MemoryLayout<chi_alloc_header_t>.offset(of: \.bump)!)
            .assumingMemoryBound(to: UInt64.self)
        spans = (segment.base + Int(hdr.pointee.spans_off)).assumingMemoryBound(to: UInt8.self)
        heapOff = hdr.pointee.heap_off
        heapSize = hdr.pointee.heap_size
    }

    /// Lays out the allocator: its header at `headerOffset`, the span table, then the heap.
    static func format(segment: SharedSegment, headerOffset: Int, heapStart: Int) {
        let h = (segment.base + headerOffset).assumingMemoryBound(to: chi_alloc_header_t.self)
        let size = UInt64(segment.size)
        // The span table needs one byte per span of whatever remains.
        let spansOff = UInt64(heapStart)
        let tableBytes = (size - spansOff) >> spanShift + 1
        let heap = (spansOff + tableBytes + spanSize - 1) & ~(spanSize - 1)
        h.initialize(to: chi_alloc_header_t())
        h.pointee.spans_off = spansOff
        h.pointee.heap_off = heap
        h.pointee.heap_size = size > heap ? (size - heap) & ~(spanSize - 1) : 0
    }

    /// Bytes the heap can hold.
    package var capacity: UInt64 { heapSize }
    /// Bytes carved from the heap so far (free lists included).
    package var used: UInt64 { min(chi_load64_relaxed(bump), heapSize) }

    @inline(__always)
    static func sizeClass(_ size: UInt64) -> Int {
        let s = max(size, 1 << minShift)
        let bits = 64 - UInt64((s - 1).leadingZeroBitCount)
        return Int(bits - minShift)
    }

    /// Allocates `size` bytes, 64-byte aligned; returns the offset, or nil when out of memory.
    @inline(__always)
    package func allocate(_ size: UInt64) -> UInt64? {
        guard size > 0, size <= heapSize else { return nil }
        let c = Self.sizeClass(size)
        if let off = pop(c) { return off }
        return refill(c)
    }

    /// Allocates a block for a task: first the calling thread's cached block of that class
    /// (no atomic operation), else as `allocate` does.
    @inline(__always)
    package func allocateTask(_ size: UInt64) -> UInt64? {
        guard size > 0, size <= heapSize else { return nil }
        let c = Self.sizeClass(size)
        let off = chi_tls_cache_take(cacheOwner, UInt32(c))
        if off != 0 { return off }
        if let off = pop(c) { return off }
        return refill(c)
    }

    /// Frees a task's block into the calling thread's cache when its slot is empty, else as
    /// `free` does.
    @inline(__always)
    package func freeTask(_ off: UInt64) {
        guard off >= heapOff, off < heapOff + heapSize else { return }
        let c = spans[Int((off - heapOff) >> Self.spanShift)]
        if c < UInt8(CHI_TASK_CACHE_CLASSES), (off - heapOff) & ((UInt64(1) << (UInt64(c) + Self.minShift)) - 1) == 0,
           chi_tls_cache_put(cacheOwner, UInt32(c), off) != 0 {
            return
        }
        free(off)
    }

    /// Returns a block to its free list. Offsets that are not block starts are ignored and
    /// reported as false.
    @discardableResult
    package func free(_ off: UInt64) -> Bool {
        guard off >= heapOff, off < heapOff + heapSize else { return false }
        let span = Int((off - heapOff) >> Self.spanShift)
        let c = Int(spans[span])
        guard c < Int(CHI_NCLASSES) else { return false }
        let blockSize = UInt64(1) << (UInt64(c) + Self.minShift)
        if blockSize < Self.spanSize {
            guard (off - heapOff) & (blockSize - 1) == 0 else { return false }
        } else {
            guard (off - heapOff) & (Self.spanSize - 1) == 0 else { return false }
        }
        push(c, first: off, last: off)
        return true
    }

    /// The usable size of the block at `off` (its class size).
    package func blockSize(_ off: UInt64) -> UInt64? {
        guard off >= heapOff, off < heapOff + heapSize else { return nil }
        let c = spans[Int((off - heapOff) >> Self.spanShift)]
        return c < UInt8(CHI_NCLASSES) ? UInt64(1) << (UInt64(c) + Self.minShift) : nil
    }

    @inline(__always)
    private func pop(_ c: Int) -> UInt64? {
        let head = heads + c
        var h = chi_load64(head)
        while true {
            let idx = h & Self.indexMask
            if idx == 0 { return nil }
            let off = idx << Self.minShift
            // May read a block another thread just took; the tag makes the CAS fail then.
            let next = chi_load64_relaxed((base + Int(off)).assumingMemoryBound(to: UInt64.self))
            let tag = (h >> Self.indexBits) &+ 1
            let nh = (tag << Self.indexBits) | ((next >> Self.minShift) & Self.indexMask)
            if chi_cas64(head, h, nh) { return off }
            h = chi_load64(head)
        }
    }

    @inline(__always)
    private func push(_ c: Int, first: UInt64, last: UInt64) {
        let head = heads + c
        let lastNext = (base + Int(last)).assumingMemoryBound(to: UInt64.self)
        var h = chi_load64(head)
        while true {
            chi_store64_relaxed(lastNext, (h & Self.indexMask) << Self.minShift)
            let tag = (h >> Self.indexBits) &+ 1
            let nh = (tag << Self.indexBits) | (first >> Self.minShift)
            if chi_cas64(head, h, nh) { return }
            h = chi_load64(head)
        }
    }

    private func refill(_ c: Int) -> UInt64? {
        let blockSize = UInt64(1) << (UInt64(c) + Self.minShift)
        let carve = max(blockSize, Self.spanSize)
        let start = chi_add64(bump, carve)
        guard start + carve <= heapSize else { return nil }
        let off = heapOff + start
        let firstSpan = Int(start >> Self.spanShift)
        for s in 0..<Int(carve >> Self.spanShift) { spans[firstSpan + s] = UInt8(c) }
        if blockSize < Self.spanSize {
            // Keep the first block; chain the rest and publish them with one CAS.
            let n = Self.spanSize / blockSize
            if n > 1 {
                for i in 1..<(n - 1) {
                    (base + Int(off + i * blockSize)).storeBytes(
                        of: off + (i + 1) * blockSize, as: UInt64.self)
                }
                push(c, first: off + blockSize, last: off + (n - 1) * blockSize)
            }
        }
        return off
    }
}
