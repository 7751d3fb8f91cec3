import CChimaera
import Glibc

/// Entry points for the libFuzzer targets (Sources/ChimaeraFuzz runs them; docs/testing.md).
///
/// Each target takes one input and returns; it traps (`precondition`) when an invariant of the
/// code under test breaks, and that trap is the crash libFuzzer reports. An input the code
/// refuses with an error is a normal outcome, not a finding. The targets share the modules
/// whose descriptors the task codec is fed against and one small segment for the buffers it
/// allocates. Nothing here is reachable from the C ABI. Not thread-safe: libFuzzer runs one
/// input at a time.
package enum Fuzz {
    /// The modules whose descriptors the codec targets use, in `setUp` order.
    nonisolated(unsafe) private(set) static var modules: [Module] = []
    nonisolated(unsafe) private static var seg: SharedSegment?

    /// Loads `vtables` as modules (what ModuleLoader does after dlopen) and creates the
    /// segment. Call once, before the first input.
    ///
    /// - Throws: `ChiError` when a vtable is refused as ModuleLoader would refuse it, or the
    ///   segment cannot be created.
    package static func setUp(modules vtables: [(name: String, vtable: UnsafePointer<chi_module_vtable_t>)])
        throws(ChiError)
    {
        modules = []
        for (name, vt) in vtables {
            modules.append(try Module(name: name, path: "(linked into the fuzz harness)",
                                      vtable: vt.pointee, handle: nil))
        }
        // Unlinked at once: a crashing input leaves nothing in /dev/shm.
        seg = try SharedSegment.create(name: "fuzz_\(getpid())", size: 64 << 20,
                                       layout: .init(workers: 1), anonymous: true)
    }

    /// The segment the codec targets allocate bulk buffers in (64 MiB, already unlinked).
    static var segment: SharedSegment {
        guard let seg else { preconditionFailure("Fuzz.setUp was not called") }
        return seg
    }

    /// The span map behind the allocator `freshAllocator` last made.
    nonisolated(unsafe) private(set) static var spans: SpanMap?

    /// An allocator (the runtime's own, over a fresh span map of the whole heap): what the
    /// previous input allocated is forgotten, so inputs stay independent.
    static func freshAllocator() -> SlabAllocator {
        let s = segment
        let m = SpanMap(heapOff: s.heapOff, heapSize: s.heapSize)
        spans = m
        return SlabAllocator(source: RuntimeSpans(m), heapOff: s.heapOff)
    }

    /// Resolves a bulk pointer as the runtime does for its own tasks: inside one buffer of
    /// the current span map.
    static func resolve(_ p: chi_shm_ptr_t, _ n: UInt64) -> UnsafeMutableRawPointer? {
        guard p.segment == 0, let m = spans, m.bulkOK(p.offset, n, owner: nil) else { return nil }
        return segment.base + Int(p.offset)
    }

    /// Every method of every module, in module order then declaration order: what an input's
    /// selector byte indexes.
    static var allMethods: [UnsafePointer<chi_method_desc_t>] {
        modules.flatMap { m -> [UnsafePointer<chi_method_desc_t>] in
            guard let methods = m.vtable.methods else { return [] }
            return (0..<Int(m.vtable.nmethods)).map { methods + $0 }
        }
    }
}
