import CChimaera
import Glibc
import NIOCore
import Testing

@testable import Chimaera

/// small_message's Io layout: a DT_WRITE | DT_EXPOSE bulk field sized by an IN u64.
/// (The names are never freed; C strings for the descriptors, as a module has them.)
nonisolated(unsafe) private let ioFields: [chi_field_desc_t] = [
    chi_field_desc_t(name: strdup("data"), offset: UInt32(MemoryLayout<chi_sm_io_task_t>.offset(of: \.data)!),
                     size: UInt32(MemoryLayout<chi_shm_ptr_t>.size), type: UInt32(CHI_FT_BULK),
                     dir: UInt32(CHI_DIR_IN), bulk_size_field: 1, bulk_mode: UInt32(CHI_DT_WRITE | CHI_DT_EXPOSE)),
    chi_field_desc_t(name: strdup("size"), offset: UInt32(MemoryLayout<chi_sm_io_task_t>.offset(of: \.size)!),
                     size: 8, type: UInt32(CHI_FT_U64), dir: UInt32(CHI_DIR_IN), bulk_size_field: -1, bulk_mode: 0),
]

/// Runs `body` with Io's method descriptor.
private func withIoMethod<R>(_ body: (UnsafePointer<chi_method_desc_t>) throws -> R) rethrows -> R {
    try ioFields.withUnsafeBufferPointer { fs in
        var m = chi_method_desc_t(id: UInt32(CHI_SM_IO), task_size: UInt32(MemoryLayout<chi_sm_io_task_t>.size),
                                  flags: 0, nfields: UInt32(fs.count), name: nil, fields: fs.baseAddress, handler: nil)
        return try withUnsafePointer(to: &m) { try body($0) }
    }
}

/// A throwaway segment (unlinked at once) and the runtime's own allocator over its heap.
private final class CodecSegment {
    let seg: SharedSegment
    let spans: SpanMap
    let slab: SlabAllocator

    init(_ tag: String) throws {
        seg = try SharedSegment.create(name: "unit_\(tag)_\(getpid())", size: 32 << 20,
                                       layout: .init(workers: 1), anonymous: true)
        spans = SpanMap(heapOff: seg.heapOff, heapSize: seg.heapSize)
        slab = SlabAllocator(source: RuntimeSpans(spans), heapOff: seg.heapOff)
    }

    func resolve(_ p: chi_shm_ptr_t, _ n: UInt64) -> UnsafeMutableRawPointer? {
        p.segment == 0 && spans.bulkOK(p.offset, n, owner: nil) ? seg.base + Int(p.offset) : nil
    }
}

/// An Io request for `size` bytes as encodeRequest writes it, after the fixed header.
private func ioRequestBody(_ m: UnsafePointer<chi_method_desc_t>, _ cs: CodecSegment, size: UInt64) throws -> ByteBuffer {
    let seg = cs.seg
    let off = try cs.slab.allocate(size, kind: UInt32(CHI_MEM_BUFFER))
    seg.pointer(off, size)!.initializeMemory(as: UInt8.self, repeating: 0x42, count: Int(size))
    var t = chi_sm_io_task_t()
    t.hdr.method = UInt32(CHI_SM_IO)
    t.data = chi_shm_ptr_t(segment: 0, reserved: 0, offset: off)
    t.size = size
    var b = try withUnsafeMutablePointer(to: &t) { p in
        try p.withMemoryRebound(to: chi_task_t.self, capacity: 1) {
            try TaskCodec.encodeRequest($0, m, container: 0, reqId: 1, resolve: cs.resolve)
        }
    }
    b.moveReaderIndex(forwardBy: 5)
    _ = try TaskCodec.readRequestHeader(&b)
    return b
}

/// The byte offset of Io's `size` field in a request body after its header: the field order
/// is data's length (8), its 16 bytes, then size.
private let sizeFieldAt = 8 + 16

@Suite struct TaskCodecTests {
    @Test func ioRequestDecodesToABufferOfItsSize() throws {
        let seg = try CodecSegment("codec_ok")
        try withIoMethod { m in
            var b = try ioRequestBody(m, seg, size: 16)
            var t = chi_sm_io_task_t()
            let bulks = try TaskCodec.decodeRequestFields(&b, into: &t, m, segment: seg.seg, slab: seg.slab)
            #expect(bulks.count == 1 && bulks[0].size == 16 && t.size == 16 && t.data.offset == bulks[0].off)
        }
    }

    /// Found by fuzz-request (Tests/fuzz/corpus/request/regress-bulk-longer-than-sent): a peer
    /// sent 16 bytes of bulk data and a size field of 57,616, the task was accepted, and Io
    /// would have filled 57,616 bytes of a 64-byte block, over its neighbours in the segment.
    @Test func requestWhoseSizeFieldExceedsTheBulkSentIsRefused() throws {
        let seg = try CodecSegment("codec_long")
        try withIoMethod { m in
            var b = try ioRequestBody(m, seg, size: 16)
            b.setInteger(UInt64(57_616), at: b.readerIndex + sizeFieldAt, endianness: .little)
            var t = chi_sm_io_task_t()
            #expect(throws: FrameError.self) {
                try TaskCodec.decodeRequestFields(&b, into: &t, m, segment: seg.seg, slab: seg.slab)
            }
        }
    }

    /// Found by fuzz-request (regress-bulk-shorter-than-sent): a size field below the bulk
    /// length is no overflow, but no sender that follows the descriptors writes it, and the
    /// task would not encode back to what arrived.
    @Test func requestWhoseSizeFieldIsBelowTheBulkSentIsRefused() throws {
        let seg = try CodecSegment("codec_short")
        try withIoMethod { m in
            var b = try ioRequestBody(m, seg, size: 16)
            b.setInteger(UInt64(1), at: b.readerIndex + sizeFieldAt, endianness: .little)
            var t = chi_sm_io_task_t()
            #expect(throws: FrameError.self) {
                try TaskCodec.decodeRequestFields(&b, into: &t, m, segment: seg.seg, slab: seg.slab)
            }
        }
    }
}
