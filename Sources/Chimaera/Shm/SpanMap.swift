import CChimaera
import Glibc

/// The daemon's private record of the heap: which owner holds each 64 KiB span and what it
/// is for, and the allocator that hands spans and extents out.
///
/// Clients never see this table, so nothing a client writes into shared memory can change
/// what the runtime believes it owns. The task path reads entries without the lock (one
/// aligned 64-bit word each) to check that a task, or a bulk range, lies inside one block
/// its submitter holds. Free spans are a bitmap searched first-fit, so freed memory
/// coalesces by construction and serves any size again.
/// Not guaranteed: a span a client frees while its own task still uses it may be handed to
/// another owner before that task ends (the client broke its own contract first).
package final class SpanMap: @unchecked Sendable {
    /// What a span is for.
    package enum Kind: UInt64 {
        case free = 0
        /// Task blocks of one size class.
        case taskSlab = 1
        /// Buffer blocks of one size class.
        case bufferSlab = 2
        /// The first span of an extent holding one task.
        case largeTask = 3
        /// The first span of an extent holding one buffer.
        case largeBuffer = 4
        /// A client's rings and message slots: never valid as a task or as data.
        case control = 5
        /// A later span of an extent; `extra` is its distance to the first.
        case tail = 6
    }

    /// The runtime's own owner id (clients are 1...maxClients).
    package static let runtimeOwner: UInt16 = 0xFFFF
    static let spanShift = UInt64(CHI_SPAN_SHIFT)
    static let spanSize: UInt64 = 1 << spanShift

    package let heapOff: UInt64
    package let spanCount: Int
    /// owner (16 bits) | kind (8) | size class (8) | extra (32): the extent's span count on
    /// its first span, the distance back to it on the others.
    private let entries: UnsafeMutablePointer<UInt64>
    /// Bit i set: span i is free.
    private var freeBits: [UInt64]
    private var firstFree = 0
    private let lock = Mutex()
    /// Spans held per owner id.
    private var held: [Int32]
    package private(set) var usedSpans = 0

    package init(heapOff: UInt64, heapSize: UInt64) {
        self.heapOff = heapOff
        spanCount = Int(heapSize >> Self.spanShift)
        entries = .allocate(capacity: max(1, spanCount))
        entries.initialize(repeating: 0, count: max(1, spanCount))
        freeBits = [UInt64](repeating: 0, count: (spanCount + 63) / 64)
        for i in 0..<spanCount { freeBits[i >> 6] |= 1 << UInt64(i & 63) }
        held = [Int32](repeating: 0, count: 1 << 16)
    }

    deinit { entries.deallocate() }

    /// Bytes of spans handed out.
    package var usedBytes: UInt64 { UInt64(withLock { usedSpans }) << Self.spanShift }
    /// Bytes the heap holds.
    package var capacity: UInt64 { UInt64(spanCount) << Self.spanShift }
    /// Bytes owner `owner` holds.
    package func bytes(of owner: UInt16) -> UInt64 { UInt64(withLock { held[Int(owner)] }) << Self.spanShift }

    @inline(__always)
    private func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T { try lock.withLock(body) }

    @inline(__always)
    private static func pack(_ owner: UInt16, _ kind: Kind, _ cls: Int, _ extra: UInt32) -> UInt64 {
        UInt64(owner) << 48 | kind.rawValue << 40 | UInt64(cls & 0xFF) << 32 | UInt64(extra)
    }

    @inline(__always)
    private func entry(_ span: Int) -> (owner: UInt16, kind: UInt64, cls: Int, extra: UInt32) {
        let e = chi_load64_relaxed(entries + span)
        return (UInt16(e >> 48), (e >> 40) & 0xFF, Int((e >> 32) & 0xFF), UInt32(truncatingIfNeeded: e))
    }

    @inline(__always)
    private func setEntry(_ span: Int, _ v: UInt64) { chi_store64(entries + span, v) }

    @inline(__always)
    private func spanIndex(_ off: UInt64) -> Int? {
        guard off >= heapOff else { return nil }
        let s = (off - heapOff) >> Self.spanShift
        return s < UInt64(spanCount) ? Int(s) : nil
    }

    private func spanOffset(_ s: Int) -> UInt64 { heapOff + UInt64(s) << Self.spanShift }

    // MARK: Handing out

    /// Finds `n` contiguous free spans, first fit. Caller holds the lock.
    private func findRun(_ n: Int) -> Int? {
        var i = firstFree
        var runStart = 0, runLen = 0
        while i < spanCount {
            let word = freeBits[i >> 6]
            if i & 63 == 0 && word == 0 {
                runLen = 0
                i += 64
                continue
            }
            if (word >> UInt64(i & 63)) & 1 != 0 {
                if runLen == 0 { runStart = i }
                runLen += 1
                if runLen == n { return runStart }
            } else {
                runLen = 0
            }
            i += 1
        }
        return nil
    }

    private func take(_ start: Int, _ n: Int) {
        for s in start..<(start + n) { freeBits[s >> 6] &= ~(1 << UInt64(s & 63)) }
        if start == firstFree { firstFree = start + n }
        usedSpans += n
    }

    private func release(_ start: Int, _ n: Int) {
        for s in start..<(start + n) {
            setEntry(s, 0)
            freeBits[s >> 6] |= 1 << UInt64(s & 63)
        }
        firstFree = min(firstFree, start)
        usedSpans -= n
    }

    private func checkQuota(_ owner: UInt16, _ n: Int, quota: UInt64) throws(ChiError) {
        guard quota > 0 else { return }
        let after = UInt64(Int(held[Int(owner)]) + n) << Self.spanShift
        if after > quota {
            throw ChiError(ENOMEM, "client memory quota reached: \(after >> 10) KiB would exceed runtime.max_client_memory (\(quota >> 10) KiB)")
        }
    }

    /// Hands out up to `count` single spans for slab blocks of class `cls`. Throws ENOMEM,
    /// changing nothing, when not even one is free (or the owner's quota is reached).
    package func allocateSpans(owner: UInt16, kind: Kind, cls: Int, count: Int, quota: UInt64 = 0)
        throws(ChiError) -> [UInt64]
    {
        precondition(kind == .taskSlab || kind == .bufferSlab)
        return try withLock { () throws(ChiError) -> [UInt64] in
            try checkQuota(owner, 1, quota: quota)
            var out: [UInt64] = []
            for _ in 0..<max(1, count) {
                if quota > 0, UInt64(Int(held[Int(owner)]) + 1) << Self.spanShift > quota { break }
                guard let s = findRun(1) else { break }
                take(s, 1)
                setEntry(s, Self.pack(owner, kind, cls, 0))
                held[Int(owner)] += 1
                out.append(spanOffset(s))
            }
            if out.isEmpty {
                throw ChiError(ENOMEM, "shared memory exhausted: no free 64 KiB span left in the \(capacity >> 20) MiB heap")
            }
            return out
        }
    }

    /// Hands out one extent of at least `bytes` (whole spans). Throws ENOMEM, changing
    /// nothing, when no run of free spans is long enough.
    package func allocateExtent(owner: UInt16, kind: Kind, bytes: UInt64, quota: UInt64 = 0)
        throws(ChiError) -> (off: UInt64, bytes: UInt64)
    {
        precondition(kind == .largeTask || kind == .largeBuffer || kind == .control)
        guard bytes > 0, bytes <= capacity else {
            throw ChiError(ENOMEM, "\(bytes) bytes do not fit in the \(capacity >> 20) MiB heap")
        }
        let n = Int((bytes + Self.spanSize - 1) >> Self.spanShift)
        return try withLock { () throws(ChiError) -> (off: UInt64, bytes: UInt64) in
            try checkQuota(owner, n, quota: quota)
            guard let s = findRun(n) else {
                throw ChiError(ENOMEM, "shared memory exhausted: no free run of \(n) spans (\(bytes) bytes) in the \(capacity >> 20) MiB heap (\((capacity - UInt64(usedSpans) << Self.spanShift) >> 20) MiB free in all)")
            }
            take(s, n)
            setEntry(s, Self.pack(owner, kind, 0, UInt32(n)))
            for i in 1..<max(1, n) where n > 1 { setEntry(s + i, Self.pack(owner, .tail, 0, UInt32(i))) }
            held[Int(owner)] += Int32(n)
            return (spanOffset(s), UInt64(n) << Self.spanShift)
        }
    }

    /// Takes back a slab span or an extent (by its first span) from `owner`. Returns false,
    /// changing nothing, when `off` is not such a start held by `owner`. `discard`, if given,
    /// is called with the extent's (offset, bytes) before it is free, so that no new owner
    /// can have it yet (to give its pages back to the system).
    @discardableResult
    package func free(_ off: UInt64, owner: UInt16, discard: ((UInt64, UInt64) -> Void)? = nil) -> Bool {
        withLock {
            guard let s = spanIndex(off), spanOffset(s) == off else { return false }
            let e = entry(s)
            guard e.owner == owner else { return false }
            let n: Int
            switch Kind(rawValue: e.kind) {
            case .taskSlab, .bufferSlab: n = 1
            case .largeTask, .largeBuffer, .control: n = Int(e.extra)
            default: return false
            }
            discard?(off, UInt64(n) << Self.spanShift)
            release(s, n)
            held[Int(owner)] -= Int32(n)
            return true
        }
    }

    /// Takes back everything `owner` holds. Returns the spans freed. `discard`, if given, is
    /// called with each run of the owner's spans (offset, bytes) before the run is free.
    @discardableResult
    package func freeAll(owner: UInt16, discard: ((UInt64, UInt64) -> Void)? = nil) -> Int {
        withLock {
            var n = 0
            var run: (start: Int, count: Int)? = nil
            func flush() {
                guard let r = run else { return }
                discard?(spanOffset(r.start), UInt64(r.count) << Self.spanShift)
                release(r.start, r.count)
                run = nil
            }
            for s in 0..<spanCount {
                let e = entry(s)
                guard e.owner == owner && e.kind != Kind.free.rawValue else {
                    flush()
                    continue
                }
                if let r = run, r.start + r.count == s { run = (r.start, r.count + 1) } else { flush(); run = (s, 1) }
                n += 1
            }
            flush()
            held[Int(owner)] = 0
            return n
        }
    }

    // MARK: Checks on the task path (no lock)

    /// The bytes available to a task at `off`: its block's size when `off` starts a task
    /// block held by `owner`, else nil.
    @inline(__always)
    package func taskLimit(_ off: UInt64, owner: UInt16) -> UInt64? {
        guard let s = spanIndex(off) else { return nil }
        let e = entry(s)
        guard e.owner == owner else { return nil }
        let inSpan = off - spanOffset(s)
        if e.kind == Kind.taskSlab.rawValue {
            let size = UInt64(1) << (UInt64(e.cls) + UInt64(CHI_MIN_BLOCK_SHIFT))
            return inSpan & (size - 1) == 0 ? size : nil
        }
        if e.kind == Kind.largeTask.rawValue && inSpan == 0 {
            return UInt64(e.extra) << Self.spanShift
        }
        return nil
    }

    /// Whether `[off, off + len)` lies inside one buffer block: one held by `owner`, or, when
    /// `owner` is nil (code inside the runtime), by any client or the runtime.
    @inline(__always)
    package func bulkOK(_ off: UInt64, _ len: UInt64, owner: UInt16?) -> Bool {
        guard len > 0, let s = spanIndex(off) else { return false }
        var e = entry(s)
        var head = s
        if e.kind == Kind.tail.rawValue {
            guard Int(e.extra) <= s else { return false }
            head = s - Int(e.extra)
            let h = entry(head)
            guard h.owner == e.owner else { return false }
            e = h
        }
        if let owner { guard e.owner == owner else { return false } } else { guard e.owner != 0 else { return false } }
        let end: UInt64
        if e.kind == Kind.bufferSlab.rawValue {
            let size = UInt64(1) << (UInt64(e.cls) + UInt64(CHI_MIN_BLOCK_SHIFT))
            let start = spanOffset(s) + ((off - spanOffset(s)) & ~(size - 1))
            end = start + size
        } else if e.kind == Kind.largeBuffer.rawValue {
            end = spanOffset(head) + UInt64(e.extra) << Self.spanShift
        } else {
            return false
        }
        return len <= end - off
    }

    /// A description of what `off` is, for error messages.
    package func describe(_ off: UInt64) -> String {
        guard let s = spanIndex(off) else { return "outside the heap" }
        let e = entry(s)
        let what: String
        switch Kind(rawValue: e.kind) {
        case .free?: return "in a free span"
        case .taskSlab?: what = "a task block"
        case .bufferSlab?: what = "a buffer block of \(64 << e.cls) bytes"
        case .largeTask?: what = "a large task"
        case .largeBuffer?: what = "a large buffer"
        case .control?: what = "a client's rings"
        case .tail?: what = "the inside of a large block"
        case nil: what = "an unknown span"
        }
        let who = e.owner == Self.runtimeOwner ? "the runtime" : "client slot \(e.owner)"
        return "\(what) of \(who)"
    }
}
