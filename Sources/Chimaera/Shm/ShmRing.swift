import CChimaera

/// A bounded multi-producer, multi-consumer queue of 64-bit values in shared memory
/// (Dmitry Vyukov's design: one sequence word per cell, no locks, no system calls).
///
/// Producers are clients and workers in any process; each ring has one consuming worker,
/// which may use `popSingle()`. Values must not be 0-width; any 64-bit value is fine.
/// Not guaranteed: progress for other producers if a producer dies between claiming a cell
/// and publishing it (the consumer then stops at that cell).
package struct ShmRing: @unchecked Sendable {
    private let enq: UnsafeMutablePointer<UInt64>
    private let deq: UnsafeMutablePointer<UInt64>
    private let cells: UnsafeMutablePointer<chi_ring_cell_t>
    /// Capacity minus one.
    package let mask: UInt64

    private static let enqOffset = MemoryLayout<chi_ring_t>.offset(of: \.enqueue_pos)!
    private static let deqOffset = MemoryLayout<chi_ring_t>.offset(of: \.dequeue_pos)!
    private static let maskOffset = MemoryLayout<chi_ring_t>.offset(of: \.mask)!
    private static let ownerOffset = MemoryLayout<chi_ring_t>.offset(of: \.owner)!

    /// Bytes needed for a ring of `capacity` cells.
    package static func bytes(capacity: Int) -> Int {
        MemoryLayout<chi_ring_t>.stride + capacity * MemoryLayout<chi_ring_cell_t>.stride
    }

    /// Initialises a ring at `p` (64-byte aligned); `capacity` must be a power of two.
    package static func format(at p: UnsafeMutableRawPointer, capacity: Int, owner: UInt32) {
        precondition(capacity > 1 && capacity & (capacity - 1) == 0)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<chi_ring_t>.stride)
        p.storeBytes(of: UInt64(capacity - 1), toByteOffset: maskOffset, as: UInt64.self)
        p.storeBytes(of: owner, toByteOffset: ownerOffset, as: UInt32.self)
        let cells = (p + MemoryLayout<chi_ring_t>.stride).bindMemory(to: chi_ring_cell_t.self,
                                                                     capacity: capacity)
        for i in 0..<capacity { cells[i] = chi_ring_cell_t(seq: UInt64(i), value: 0) }
    }

    /// A view of the ring formatted at `p`.
    package init(at p: UnsafeMutableRawPointer) {
        enq = (p + Self.enqOffset).assumingMemoryBound(to: UInt64.self)
        deq = (p + Self.deqOffset).assumingMemoryBound(to: UInt64.self)
        mask = p.load(fromByteOffset: Self.maskOffset, as: UInt64.self)
        cells = (p + MemoryLayout<chi_ring_t>.stride).assumingMemoryBound(to: chi_ring_cell_t.self)
    }

    /// The worker that consumes this ring.
    package var capacity: Int { Int(mask) + 1 }

    @inline(__always)
    private func seqPtr(_ i: UInt64) -> UnsafeMutablePointer<UInt64> {
        UnsafeMutableRawPointer(cells + Int(i & mask)).assumingMemoryBound(to: UInt64.self)
    }

    /// Appends a value. Returns false, changing nothing, when the ring is full.
    @inline(__always)
    package func push(_ value: UInt64) -> Bool {
        var pos = chi_load64_relaxed(enq)
        while true {
            let seq = chi_load64(seqPtr(pos))
            let dif = Int64(bitPattern: seq &- pos)
            if dif == 0 {
                if chi_cas64_weak(enq, pos, pos &+ 1) {
                    let cell = cells + Int(pos & mask)
                    cell.pointee.value = value
                    chi_store64(seqPtr(pos), pos &+ 1)
                    return true
                }
                pos = chi_load64_relaxed(enq)
            } else if dif < 0 {
                return false
            } else {
                pos = chi_load64_relaxed(enq)
            }
        }
    }

    /// Removes the oldest value; safe with several consumers.
    @inline(__always)
    package func pop() -> UInt64? {
        var pos = chi_load64_relaxed(deq)
        while true {
            let seq = chi_load64(seqPtr(pos))
            let dif = Int64(bitPattern: seq &- (pos &+ 1))
            if dif == 0 {
                if chi_cas64_weak(deq, pos, pos &+ 1) {
                    let v = (cells + Int(pos & mask)).pointee.value
                    chi_store64(seqPtr(pos), pos &+ mask &+ 1)
                    return v
                }
                pos = chi_load64_relaxed(deq)
            } else if dif < 0 {
                return nil
            } else {
                pos = chi_load64_relaxed(deq)
            }
        }
    }

    /// Removes the oldest value; only for a ring with exactly one consumer.
    @inline(__always)
    package func popSingle() -> UInt64? {
        let pos = chi_load64_relaxed(deq)
        let seq = chi_load64(seqPtr(pos))
        guard seq == pos &+ 1 else { return nil }
        let v = (cells + Int(pos & mask)).pointee.value
        chi_store64_relaxed(deq, pos &+ 1)
        chi_store64(seqPtr(pos), pos &+ mask &+ 1)
        return v
    }

    /// Whether a consumer would find nothing (a racy snapshot).
    @inline(__always)
    package var isEmpty: Bool {
        let pos = chi_load64_relaxed(deq)
        return chi_load64(seqPtr(pos)) != pos &+ 1
    }

    /// How many values were ever pushed, and popped (racy snapshots): a value pushed before
    /// `enqueuePosition` read p has been popped once `dequeuePosition` reaches p.
    package var enqueuePosition: UInt64 { chi_load64_relaxed(enq) }
    package var dequeuePosition: UInt64 { chi_load64_relaxed(deq) }

    /// Values queued (a racy snapshot).
    package var count: Int {
        Int(truncatingIfNeeded: chi_load64_relaxed(enq) &- chi_load64_relaxed(deq))
    }
}
