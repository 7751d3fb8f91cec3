import CChimaera
import Glibc
import Testing

@testable import Chimaera

/// A throwaway segment, unlinked at once so a failed test leaves nothing in /dev/shm.
func makeSegment(_ tag: String, size: Int = 64 << 20, queues: Int = 1, depth: Int = 1024) throws -> SharedSegment {
    try SharedSegment.create(name: "unit_\(tag)_\(getpid())", size: size,
                             layout: .init(queues: queues, queueDepth: depth, workers: queues),
                             anonymous: true)
}

@Suite struct ShmAllocatorTests {
    @Test func concurrentAllocationsNeverOverlap() throws {
        let seg = try makeSegment("alloc", size: 512 << 20)
        let alloc = seg.allocator
        let threads = 4, perThread = 2000
        let results = UnsafeMutablePointer<(UInt64, UInt64)>.allocate(capacity: threads * perThread)
        defer { results.deallocate() }
        struct Ctx { var alloc: ShmAllocator; var seg: SharedSegment; var out: UnsafeMutablePointer<(UInt64, UInt64)>; var n: Int; var t: Int }
        var tids = [pthread_t](repeating: 0, count: threads)
        let ctxs = UnsafeMutablePointer<Ctx>.allocate(capacity: threads)
        defer { ctxs.deinitialize(count: threads); ctxs.deallocate() }
        for i in 0..<threads {
            (ctxs + i).initialize(to: Ctx(alloc: alloc, seg: seg, out: results + i * perThread, n: perThread, t: i))
        }
        for i in 0..<threads {
            let rc = pthread_create(&tids[i], nil, { arg in
                    let c = arg!.assumingMemoryBound(to: Ctx.self).pointee
                    for k in 0..<c.n {
                        let size = UInt64(1 + (k * 37 + c.t * 101) % 20000)
                        let off = c.alloc.allocate(size)!
                        // Fill with a tag, free every third block at once to exercise reuse.
                        memset(c.seg.base + Int(off), Int32(c.t + 1), Int(size))
                        if k % 3 == 0 {
                            c.alloc.free(off)
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
        var live = (0..<(threads * perThread)).map { results[$0] }.filter { $0.1 > 0 }
        live.sort { $0.0 < $1.0 }
        for i in 1..<live.count {
            #expect(live[i - 1].0 + live[i - 1].1 <= live[i].0, "blocks overlap")
        }
        // Every live block still holds its writer's tag: nobody else wrote into it.
        for (k, entry) in results.enumerated(count: threads * perThread) where entry.1 > 0 {
            let tag = UInt8(k / perThread + 1)
            let p = (seg.base + Int(entry.0)).assumingMemoryBound(to: UInt8.self)
            #expect(p[0] == tag && p[Int(entry.1) - 1] == tag)
        }
    }

    @Test func freedBlocksAreReusedWithoutGrowingTheHeap() throws {
        let seg = try makeSegment("reuse")
        let alloc = seg.allocator
        var offs: [UInt64] = []
        for _ in 0..<1000 { offs.append(alloc.allocate(200)!) }
        let used = alloc.used
        for o in offs { #expect(alloc.free(o)) }
        for _ in 0..<1000 { _ = alloc.allocate(256)! }
        #expect(alloc.used == used)
    }

    @Test func exhaustionReturnsNilAndFreeingRecovers() throws {
        let seg = try makeSegment("exhaust", size: 16 << 20)
        let alloc = seg.allocator
        var offs: [UInt64] = []
        while let o = alloc.allocate(1 << 20) { offs.append(o) }
        #expect(!offs.isEmpty)
        #expect(alloc.allocate(1 << 20) == nil)
        alloc.free(offs.removeLast())
        #expect(alloc.allocate(1 << 20) != nil)
    }

    @Test func freeRejectsOffsetsThatAreNotBlocks() throws {
        let seg = try makeSegment("badfree")
        let alloc = seg.allocator
        let off = alloc.allocate(128)!
        #expect(!alloc.free(off + 8))
        #expect(!alloc.free(0))
        #expect(!alloc.free(UInt64(seg.size) + 4096))
    }
}

extension UnsafeMutablePointer {
    func enumerated(count: Int) -> [(Int, Pointee)] { (0..<count).map { ($0, self[$0]) } }
}
