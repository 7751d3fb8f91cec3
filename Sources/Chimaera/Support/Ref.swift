/// An unowned(unsafe) reference, storable in arrays: the task path keeps objects alive through
/// one owning collection (a worker's `allRecords`, `allFibers`; a container's lanes) and moves
/// them between queues with no reference counting.
struct Ref<T: AnyObject> {
    unowned(unsafe) let o: T

    @inline(__always)
    init(_ o: T) { self.o = o }
}
