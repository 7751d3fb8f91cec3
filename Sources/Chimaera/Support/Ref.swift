/// An unretained reference, storable in arrays and fields: the task path keeps objects alive
/// through one owning collection (a worker's `allRecords`, `allFibers`; a container's lanes)
/// and moves them between queues with no reference counting.
///
/// Reading `o` gives a strong reference, and the compiler retains it for as long as the
/// local lives (an `unowned(unsafe)` field or local does the same: Swift 6.3 copies it on
/// every load). The task path uses `with` instead, which lends the object to a closure with
/// no retain or release; `o` is for the cold paths.
struct Ref<T: AnyObject> {
    let u: Unmanaged<T>

    @inline(__always)
    init(_ o: T) { u = .passUnretained(o) }

    @inline(__always)
    init(_ u: Unmanaged<T>) { self.u = u }

    /// The object, retained by the caller for as long as it uses it.
    var o: T {
        @inline(__always) get { u.takeUnretainedValue() }
    }

    /// Runs `body` on the object, borrowed: no reference counting. The object must outlive
    /// the call, which the owning collection guarantees.
    @inline(__always)
    func with<R>(_ body: (T) throws -> R) rethrows -> R {
        try u._withUnsafeGuaranteedRef(body)
    }

    /// Whether both refer to the same object (no reference counting, unlike `===` on `o`).
    @inline(__always)
    static func === (a: Ref, b: Ref) -> Bool { a.u.toOpaque() == b.u.toOpaque() }

    /// Whether this refers to `b`.
    @inline(__always)
    func `is`(_ b: T) -> Bool { u.toOpaque() == Unmanaged.passUnretained(b).toOpaque() }
}
