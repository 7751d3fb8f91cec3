import CChimaera
import Testing

@testable import Chimaera

/// The daemon's private heap map: who owns which span, and the checks the task path makes.
@Suite struct SpanMapTests {
    static let span = SpanMap.spanSize
    /// A map of a heap of `mib` MiB starting at offset 1 MiB (as in a segment, after the header).
    func map(mib: UInt64 = 64) -> SpanMap { SpanMap(heapOff: 1 << 20, heapSize: mib << 20) }

    @Test func aFailedHugeExtentChangesNothing() throws {
        let m = map()
        let before = m.usedBytes
        #expect(throws: ChiError.self) { try m.allocateExtent(owner: 1, kind: .largeBuffer, bytes: 600 << 20) }
        #expect(m.usedBytes == before)
        // Everything is still free: the whole heap is one extent.
        let x = try m.allocateExtent(owner: 1, kind: .largeBuffer, bytes: 64 << 20)
        #expect(x.bytes == 64 << 20)
    }

    @Test func freedExtentsCoalesceAndServeAnySize() throws {
        let m = map(mib: 16)
        var offs: [UInt64] = []
        while let x = try? m.allocateExtent(owner: 2, kind: .largeBuffer, bytes: 1 << 20) { offs.append(x.off) }
        #expect(offs.count == 16)
        #expect(throws: ChiError.self) { try m.allocateSpans(owner: 3, kind: .taskSlab, cls: 2, count: 1) }
        for o in offs { #expect(m.free(o, owner: 2)) }
        #expect(m.usedBytes == 0)
        // Small spans, then a run as long as the heap: freed space merged back.
        let small = try m.allocateSpans(owner: 3, kind: .taskSlab, cls: 2, count: 4)
        for o in small { #expect(m.free(o, owner: 3)) }
        _ = try m.allocateExtent(owner: 3, kind: .largeBuffer, bytes: 16 << 20)
    }

    @Test func onlyTheOwnerFreesAndAFreeIsRefusedTwice() throws {
        let m = map()
        let o = try m.allocateSpans(owner: 1, kind: .bufferSlab, cls: 0, count: 1)[0]
        #expect(!m.free(o, owner: 2))
        #expect(!m.free(o + 64, owner: 1))
        #expect(m.free(o, owner: 1))
        #expect(!m.free(o, owner: 1))
    }

    @Test func taskOffsetsMustStartATaskBlockOfTheirOwner() throws {
        let m = map()
        let t = try m.allocateSpans(owner: 1, kind: .taskSlab, cls: 2, count: 1)[0] // 256-byte blocks
        #expect(m.taskLimit(t, owner: 1) == 256)
        #expect(m.taskLimit(t + 256 * 3, owner: 1) == 256)
        #expect(m.taskLimit(t + 64, owner: 1) == nil)
        #expect(m.taskLimit(t, owner: 2) == nil)
        let b = try m.allocateSpans(owner: 1, kind: .bufferSlab, cls: 2, count: 1)[0]
        #expect(m.taskLimit(b, owner: 1) == nil)
        let large = try m.allocateExtent(owner: 1, kind: .largeTask, bytes: 100_000)
        #expect(m.taskLimit(large.off, owner: 1) == 2 * Self.span)
        #expect(m.taskLimit(large.off + Self.span, owner: 1) == nil)
        #expect(m.taskLimit(0, owner: 1) == nil)
        #expect(m.taskLimit(UInt64.max - 63, owner: 1) == nil)
    }

    @Test func bulkRangesMustLieInsideOneBufferOfTheirOwner() throws {
        let m = map()
        let b = try m.allocateSpans(owner: 1, kind: .bufferSlab, cls: 4, count: 1)[0] // 1 KiB blocks
        #expect(m.bulkOK(b, 1024, owner: 1))
        #expect(m.bulkOK(b + 1000, 24, owner: 1))
        #expect(!m.bulkOK(b + 1000, 25, owner: 1), "straddles two blocks")
        #expect(!m.bulkOK(b, 0, owner: 1))
        #expect(!m.bulkOK(b, 1024, owner: 2))
        #expect(m.bulkOK(b, 1024, owner: nil), "code inside the runtime may name any buffer")
        let x = try m.allocateExtent(owner: 1, kind: .largeBuffer, bytes: 3 * Self.span)
        #expect(m.bulkOK(x.off, x.bytes, owner: 1))
        #expect(m.bulkOK(x.off + 2 * Self.span + 5, Self.span - 5, owner: 1))
        #expect(!m.bulkOK(x.off + 2 * Self.span + 5, Self.span - 4, owner: 1))
        #expect(!m.bulkOK(x.off, UInt64.max, owner: 1))
        let t = try m.allocateSpans(owner: 1, kind: .taskSlab, cls: 4, count: 1)[0]
        #expect(!m.bulkOK(t, 64, owner: 1), "a task block is not data")
        let ctl = try m.allocateExtent(owner: SpanMap.runtimeOwner, kind: .control, bytes: 100_000)
        #expect(!m.bulkOK(ctl.off, 64, owner: nil), "rings are never data")
        #expect(!m.bulkOK(ctl.off + Self.span, 64, owner: nil))
        #expect(!m.bulkOK(0, 64, owner: nil), "the segment's header is never data")
    }

    @Test func aQuotaIsEnforcedWithTheKeyInTheMessage() throws {
        let m = map()
        let quota: UInt64 = 4 * Self.span
        _ = try m.allocateSpans(owner: 5, kind: .bufferSlab, cls: 0, count: 3, quota: quota)
        let more = try m.allocateSpans(owner: 5, kind: .bufferSlab, cls: 0, count: 8, quota: quota)
        #expect(more.count == 1, "a batch is cut at the quota")
        do {
            _ = try m.allocateExtent(owner: 5, kind: .largeBuffer, bytes: Self.span, quota: quota)
            Issue.record("the quota was not enforced")
        } catch {
            #expect(error.code == ENOMEM && error.message.contains("runtime.max_client_memory"))
        }
        #expect(m.bytes(of: 5) == quota)
    }

    @Test func freeAllTakesBackEverythingOfOneOwnerOnly() throws {
        let m = map()
        _ = try m.allocateSpans(owner: 7, kind: .bufferSlab, cls: 1, count: 5)
        _ = try m.allocateExtent(owner: 7, kind: .largeBuffer, bytes: 5 * Self.span)
        let keep = try m.allocateSpans(owner: 8, kind: .taskSlab, cls: 1, count: 2)
        #expect(m.freeAll(owner: 7) == 10)
        #expect(m.bytes(of: 7) == 0)
        #expect(m.usedBytes == 2 * Self.span)
        #expect(m.taskLimit(keep[0], owner: 8) != nil)
    }
}
