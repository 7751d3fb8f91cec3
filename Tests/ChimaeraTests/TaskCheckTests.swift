import CChimaera
import Glibc
import Testing

@testable import Chimaera

/// The checks a client's task passes on its way in (TaskCheck), on hand-made tasks.
@Suite struct TaskCheckTests {
    /// An Io-like method: a bulk field at 128 (a chi_shm_ptr_t) whose length is the u64 at
    /// 144, then a u64 output; may be periodic when `periodic`.
    final class Method {
        let fields = UnsafeMutablePointer<chi_field_desc_t>.allocate(capacity: 3)
        let desc = UnsafeMutablePointer<chi_method_desc_t>.allocate(capacity: 1)
        init(periodic: Bool) {
            fields[0] = chi_field_desc_t(name: strdup("data"), offset: 128, size: 16, type: UInt32(CHI_FT_BULK),
                                         dir: UInt32(CHI_DIR_IN), bulk_size_field: 1, bulk_mode: UInt32(CHI_DT_WRITE))
            fields[1] = chi_field_desc_t(name: strdup("size"), offset: 144, size: 8, type: UInt32(CHI_FT_U64),
                                         dir: UInt32(CHI_DIR_IN), bulk_size_field: -1, bulk_mode: 0)
            fields[2] = chi_field_desc_t(name: strdup("ret"), offset: 152, size: 8, type: UInt32(CHI_FT_U64),
                                         dir: UInt32(CHI_DIR_OUT), bulk_size_field: -1, bulk_mode: 0)
            desc.pointee = chi_method_desc_t(id: 10, task_size: 160, flags: periodic ? UInt32(CHI_MF_PERIODIC_OK) : 0,
                                             nfields: 3, name: strdup("Io"), fields: fields, handler: nil)
        }
    }

    func task(size: UInt32 = 160) -> UnsafeMutablePointer<chi_task_t> {
        let p = UnsafeMutableRawPointer.allocate(byteCount: 256, alignment: 64)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: 256)
        let t = p.assumingMemoryBound(to: chi_task_t.self)
        t.pointee.size = size
        t.pointee.method = 10
        return t
    }

    @Test func sizesOutsideTheBlockOrTheLimitAreRefused() {
        #expect(TaskCheck.size(160, limit: 256, maxTaskSize: 1 << 20) == nil)
        #expect(TaskCheck.size(127, limit: 256, maxTaskSize: 1 << 20) != nil)
        #expect(TaskCheck.size(257, limit: 256, maxTaskSize: 1 << 20) != nil)
        #expect(TaskCheck.size(UInt64(UInt32.max), limit: 256, maxTaskSize: 1 << 20) != nil)
        #expect(TaskCheck.size(4096, limit: 8192, maxTaskSize: 1024)?.contains("runtime.max_task_size") == true)
    }

    @Test func sealingKeepsTheCheckedSizeAndOnlyClientFlags() {
        let t = task(size: 999)
        t.pointee.flags = 0xFFFF_FFFF
        TaskCheck.seal(t, size: 160)
        #expect(t.pointee.size == 160)
        #expect(t.pointee.flags == UInt32(CHI_TASK_USER_FLAGS))
    }

    @Test func aTaskSmallerThanItsMethodIsRefused() {
        let m = Method(periodic: true)
        #expect(TaskCheck.method(task(size: 159), m.desc, module: "x", limits: RuntimeLimits()) != nil)
        #expect(TaskCheck.method(task(size: 160), m.desc, module: "x", limits: RuntimeLimits()) == nil)
    }

    @Test func periodicTasksNeedPermissionAndAPeriodInBounds() {
        let limits = RuntimeLimits()
        let t = task()
        t.pointee.flags = UInt32(CHI_TASK_PERIODIC)
        t.pointee.period_ns = 5_000_000
        #expect(TaskCheck.method(t, Method(periodic: false).desc, module: "x", limits: limits)?.contains("CHI_MF_PERIODIC_OK") == true)
        let ok = Method(periodic: true)
        #expect(TaskCheck.method(t, ok.desc, module: "x", limits: limits) == nil)
        for bad: UInt64 in [0, 1, 9_999, 10_000_000_000_000_000_000, UInt64.max] {
            t.pointee.period_ns = bad
            #expect(TaskCheck.method(t, ok.desc, module: "x", limits: limits) != nil, "period \(bad)")
        }
    }

    @Test func bulkFieldsMustLieInOneBufferOfTheirOwner() throws {
        let spans = SpanMap(heapOff: 1 << 20, heapSize: 16 << 20)
        let buf = try spans.allocateSpans(owner: 3, kind: .bufferSlab, cls: 4, count: 1)[0] // 1 KiB blocks
        let m = Method(periodic: false)
        let t = task()
        func set(_ off: UInt64, _ len: UInt64) {
            UnsafeMutableRawPointer(t).storeBytes(of: chi_shm_ptr_t(segment: 0, reserved: 0, offset: off), toByteOffset: 128, as: chi_shm_ptr_t.self)
            UnsafeMutableRawPointer(t).storeBytes(of: len, toByteOffset: 144, as: UInt64.self)
        }
        set(buf, 1024)
        #expect(TaskCheck.bulk(t, m.desc, spans: spans, owner: 3).map(\.ok) == [true])
        set(buf, 1025)
        #expect(TaskCheck.bulk(t, m.desc, spans: spans, owner: 3).map(\.ok) == [false])
        #expect(TaskCheck.bulk(t, m.desc, spans: spans, owner: 4).map(\.ok) == [false])
        set(64, 16)
        #expect(TaskCheck.bulk(t, m.desc, spans: spans, owner: 3).map(\.ok) == [false])
        set(buf, 0)
        #expect(TaskCheck.bulk(t, m.desc, spans: spans, owner: 3).isEmpty, "a zero length names no buffer")
        t.pointee.size = 140
        set(buf, 10)
        #expect(TaskCheck.bulk(t, m.desc, spans: spans, owner: 3).isEmpty, "a field past the task's end is not read")
    }
}
