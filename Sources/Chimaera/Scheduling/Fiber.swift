import CChimaera

/// A task's execution context: its own stack, so a method can wait for a subtask by
/// switching back to its worker instead of blocking the thread. A fiber never leaves the
/// worker that made it (Swift's exclusivity tracking and C thread-locals are per thread).
///
/// Fiber objects are kept for the worker's life (at most `runtime.max_fibers` of them); what
/// an idle one beyond the cache gives back is its stack, unmapped (`park`) and mapped again
/// when the fiber is next needed (`unpark`). The object cannot be freed anyway: its stack's
/// entry frame holds a reference to it that never ends.
final class Fiber {
    static let stackSize = 256 * 1024

    let ctx = UnsafeMutablePointer<chi_fiber_ctx_t>.allocate(capacity: 1)
    private var stack = chi_fiber_stack_t()
    /// The worker, unretained (see `Ref`).
    let workerRef: Ref<Worker>
    var worker: Worker { workerRef.o }
    /// The task to run next, set by the worker before switching in.
    var record: Ref<TaskRecord>?
    /// The task it runs (its subtasks are one level deeper).
    var running: Ref<TaskRecord>?
    /// Its index in the worker's `allFibers`.
    var index = 0
    /// Set when the fiber finished its task and is free for another.
    var finished = true

    init(worker: Worker) throws(ChiError) {
        workerRef = Ref(worker)
        try unpark()
    }

    /// Whether the fiber has a stack.
    var hasStack: Bool { stack.base != nil }

    /// Maps a stack and makes the fiber start afresh on it.
    func unpark() throws(ChiError) {
        let rc = chi_fiber_stack_alloc(&stack, Self.stackSize)
        guard rc == 0 else { throw ChiError(-rc, "cannot map a fiber stack: \(Sys.errnoText(-rc))") }
        chi_fiber_init(ctx, &stack, fiberEntry, Unmanaged.passUnretained(self).toOpaque())
        finished = true
    }

    /// Unmaps the stack of a fiber that finished its task (it is not running).
    func park() { chi_fiber_stack_free(&stack) }

    /// The fiber's body: run a task, hand control back, repeat. Never returns.
    fileprivate func main() -> Never {
        workerRef.with { w in
            while true {
                if let rec = record {
                    record = nil
                    running = rec
                    rec.with { w.execute($0) }
                    running = nil
                }
                finished = true
                chi_fiber_switch(ctx, w.schedCtx)
            }
        }
    }

    /// Suspends the running fiber until the worker switches back to it.
    func suspend() {
        finished = false
        chi_fiber_switch(ctx, workerRef.with { $0.schedCtx })
    }

    /// The fiber running on this thread, if any.
    static var current: Fiber? {
        guard let w = Worker.current else { return nil }
        return w.currentFiber
    }
}

private let fiberEntry: @convention(c) (UnsafeMutableRawPointer?) -> Void = { arg in
    Unmanaged<Fiber>.fromOpaque(arg!).takeUnretainedValue().main()
}
