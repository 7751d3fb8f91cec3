import CChimaera
import Glibc
import Testing

@testable import Chimaera

/// A ring in private memory (the ring code is the same wherever its memory is).
func makeRing(depth: Int) -> ShmRing {
    let p = UnsafeMutableRawPointer.allocate(byteCount: ShmRing.bytes(capacity: depth), alignment: 64)
    ShmRing.format(at: p, capacity: depth, owner: 0)
    return ShmRing(at: p)
}

@Suite struct ShmRingTests {
    @Test func fullRingRejectsPushWithoutLosingValues() throws {
        let ring = makeRing(depth: 64)
        var pushed: [UInt64] = []
        var v: UInt64 = 100
        while ring.push(v) {
            pushed.append(v)
            v += 1
        }
        #expect(pushed.count == 64)
        #expect(!ring.push(999))
        var popped: [UInt64] = []
        while let x = ring.popSingle() { popped.append(x) }
        #expect(popped == pushed)
        #expect(ring.isEmpty)
    }

    @Test func fourProducersDeliverEveryValueOnceInProducerOrder() throws {
        let ring = makeRing(depth: 1024)
        let producers = 4, perProducer: UInt64 = 100_000
        struct Ctx { var ring: ShmRing; var id: UInt64; var n: UInt64 }
        let ctxs = UnsafeMutablePointer<Ctx>.allocate(capacity: producers)
        defer { ctxs.deinitialize(count: producers); ctxs.deallocate() }
        for i in 0..<producers { (ctxs + i).initialize(to: Ctx(ring: ring, id: UInt64(i), n: perProducer)) }
        var tids = [pthread_t](repeating: 0, count: producers)
        for i in 0..<producers {
            let rc = pthread_create(&tids[i], nil, { arg in
                    let c = arg!.assumingMemoryBound(to: Ctx.self).pointee
                    for k in 0..<c.n {
                        while !c.ring.push(c.id << 32 | k) { sched_yield() }
                    }
                    return nil
                }, ctxs + i)
            #expect(rc == 0)
        }
        var next = [UInt64](repeating: 0, count: producers)
        var received: UInt64 = 0
        var inOrder = true
        let deadline = chi_now_ns() + 60_000_000_000
        while received < UInt64(producers) * perProducer && chi_now_ns() < deadline {
            guard let v = ring.popSingle() else { continue }
            let id = Int(v >> 32), k = v & 0xFFFF_FFFF
            if k != next[id] { inOrder = false }
            next[id] = k + 1
            received += 1
        }
        for t in tids { pthread_join(t, nil) }
        #expect(received == UInt64(producers) * perProducer)
        #expect(inOrder)
        #expect(next.allSatisfy { $0 == perProducer })
    }
}
