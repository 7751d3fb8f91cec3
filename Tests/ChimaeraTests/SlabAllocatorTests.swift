import CChimaera
import Glibc
import Testing

@testable import Chimaera

/// The process-private allocator a client (or the runtime) runs over its spans. It only
/// computes offsets, so these tests need no segment.
@Suite struct SlabAllocatorTests {
    func make(mib: UInt64 = 64) -> (SlabAllocator, SpanMap) {
        let m = SpanMap(heapOff: 1 << 20, heapSize: mib << 20)
        return (SlabAllocator(source: RuntimeSpans(m), heapOff: 1 << 20), m)
    }

    static let buffer = UInt32(CHI_MEM_BUFFER)
    static let task = UInt32(CHI_MEM_TASK)

    @Test func aSecondFreeIsRefusedAndNothingIsHandedOutTwice() throws {
        let (a, _) = make()
        let x = try a.allocate(100, kind: Self.buffer)
        try a.free(x, kind: Self.buffer)
        #expect(throws: ChiError.self) { try a.free(x, kind: Self.buffer) }
        let y = try a.allocate(100, kind: Self.buffer)
        let z = try a.allocate(100, kind: Self.buffer)
        #expect(y != z)
        #expect(throws: ChiError.self) { try a.free(y + 64, kind: Self.buffer) }
        #expect(throws: ChiError.self) { try a.free(y, kind: Self.task) }
    }

    @Test func freedMemoryServesAnotherSize() throws {
        let (a, m) = make(mib: 16)
        var big: [UInt64] = []
        while let o = try? a.allocate(1 << 20, kind: Self.buffer) { big.append(o) }
        #expect(big.count == 16)
        #expect(throws: ChiError.self) { try a.allocate(136, kind: Self.task) }
        for o in big { try a.free(o, kind: Self.buffer) }
        #expect(m.usedBytes == 0)
        var small: [UInt64] = []
        for _ in 0..<10_000 { small.append(try a.allocate(136, kind: Self.task)) }
        for o in small { try a.free(o, kind: Self.task) }
        // One spare span per class and kind stays; the rest went back, and large buffers fit
        // again (the spare may split the heap in two: 7 MiB fit on one side whatever).
        #expect(m.usedBytes <= SpanMap.spanSize)
        _ = try a.allocate(7 << 20, kind: Self.buffer)
    }

    @Test func aFailedAllocationChangesNothing() throws {
        let (a, m) = make(mib: 16)
        #expect(throws: ChiError.self) { try a.allocate(600 << 20, kind: Self.buffer) }
        #expect(m.usedBytes == 0 && a.liveBytes == 0)
        _ = try a.allocate(64, kind: Self.buffer)
    }

    @Test func blockSizeKnowsLiveBlocksOnly() throws {
        let (a, _) = make()
        let x = try a.allocate(3000, kind: Self.buffer)
        #expect(a.blockSize(x, kind: Self.buffer) == 4096)
        let big = try a.allocate(100_000, kind: Self.buffer)
        #expect(a.blockSize(big, kind: Self.buffer) == 2 * SpanMap.spanSize)
        try a.free(x, kind: Self.buffer)
        #expect(a.blockSize(x, kind: Self.buffer) == nil)
    }

    @Test func concurrentAllocationsNeverOverlap() throws {
        let (a, _) = make(mib: 512)
        let threads = 4, perThread = 3000
        let out = UnsafeMutablePointer<(UInt64, UInt64)>.allocate(capacity: threads * perThread)
        defer { out.deallocate() }
        struct Ctx { var a: SlabAllocator; var out: UnsafeMutablePointer<(UInt64, UInt64)>; var n: Int; var t: Int }
        let ctxs = UnsafeMutablePointer<Ctx>.allocate(capacity: threads)
        defer { ctxs.deinitialize(count: threads); ctxs.deallocate() }
        for i in 0..<threads { (ctxs + i).initialize(to: Ctx(a: a, out: out + i * perThread, n: perThread, t: i)) }
        var tids = [pthread_t](repeating: 0, count: threads)
        for i in 0..<threads {
            let rc = pthread_create(&tids[i], nil, { arg in
                let c = arg!.assumingMemoryBound(to: Ctx.self).pointee
                for k in 0..<c.n {
                    let size = UInt64(1 + (k * 37 + c.t * 101) % 70_000)
                    let kind = k % 2 == 0 ? UInt32(CHI_MEM_BUFFER) : UInt32(CHI_MEM_TASK)
                    let off = try! c.a.allocate(size, kind: kind)
                    if k % 3 == 0 {
                        try! c.a.free(off, kind: kind)
                        c.out[k] = (0, 0)
                    } else {
                        c.out[k] = (off, size)
                    }
                }
                return nil
            }, ctxs + i)
            #expect(rc == 0)
        }
        for t in tids { pthread_join(t, nil) }
        var live = (0..<(threads * perThread)).map { out[$0] }.filter { $0.1 > 0 }
        live.sort { $0.0 < $1.0 }
        for i in 1..<live.count {
            #expect(live[i - 1].0 + live[i - 1].1 <= live[i].0, "blocks overlap")
        }
    }
}
