import CChimaeraABI
import Glibc

/// A task in shared memory with the layout `Layout` (a C struct that starts with `chi_task_t`).
///
/// Fill its parameters through `params`, then `submit()` and `wait()` (blocking) or
/// `await completion()` (suspending). The task is freed when the handle goes away; one still in
/// flight then is left to the runtime (not freed).
public final class TaskHandle<Layout>: @unchecked Sendable {
    public let client: Client
    let task: UnsafeMutablePointer<chi_task_t>

    init(client: Client, task: UnsafeMutablePointer<chi_task_t>) {
        self.client = client
        self.task = task
    }

    deinit {
        if let h = client.handle { _ = chi_task_del(h, task) }
    }

    /// The task struct itself, in shared memory.
    public var params: UnsafeMutablePointer<Layout> {
        UnsafeMutableRawPointer(task).assumingMemoryBound(to: Layout.self)
    }

    /// The header (method, pool, domain query, flags, status).
    public var header: UnsafeMutablePointer<chi_task_t> { task }

    /// Whether the task has completed. Never blocks.
    public var isDone: Bool { chi_task_is_done(task) }

    /// Makes the task periodic (it reruns every `ns` until its pool is destroyed).
    public func setPeriod(ns: UInt64) { chi_task_set_period_ns(task, ns) }

    /// Hands the task to the runtime.
    public func submit() throws(ChimaeraError) {
        try check(chi_task_submit(try client.live(), task))
    }

    /// Blocks until the task completes (at most `timeoutNs`, < 0 forever); throws the task's
    /// failure status too.
    public func wait(timeoutNs: Int64 = -1) throws(ChimaeraError) {
        try check(chi_task_wait(try client.live(), task, timeoutNs))
        try checkStatus(message: nil)
    }

    /// Suspends the calling Swift task until the task completes; throws its failure status.
    ///
    /// The awaiting thread first polls the completion word for `client.awaitSpinNs` (through
    /// `chi_task_wait` with that timeout, which also steps off a worker's CPU): a short task
    /// completes then with no suspension and no thread hand-off. Only a task still running
    /// after that is parked, and the client's parker thread resumes it (see
    /// `CompletionParker`), so a slow task holds no thread of the cooperative pool. It runs on
    /// the caller's executor: awaiting from the main actor polls there, with no hop.
    nonisolated(nonsending)
    public func completion() async throws(ChimaeraError) {
        let h = try client.live()
        let spin = client.awaitSpinNs
        let rc: Int32
        if spin > 0 {
            rc = chi_task_wait(h, task, spin)
        } else {
            // A zero-timeout wait still polls a few dozen times: with no poll wanted, look once.
            rc = chi_task_is_done(task) ? chi_task_wait(h, task, 0) : -ETIMEDOUT
        }
        if rc != -ETIMEDOUT {
            try check(rc)
            try checkStatus(message: nil)
            return
        }
        let parked = await withUnsafeContinuation { (c: UnsafeContinuation<CompletionParker.Outcome, Never>) in
            client.parker.park(task, c)
        }
        if parked.rc < 0 {
            throw ChimaeraError(code: parked.rc, message: parked.message ?? ChimaeraError.describe(parked.rc))
        }
        if task.pointee.rc < 0 && parked.message == nil {
            // The runtime's message is still in the task: a zero-timeout wait on this thread
            // moves it to chi_last_error.
            _ = chi_task_wait(h, task, 0)
        }
        try checkStatus(message: parked.message)
    }

    /// Throws the task's failure status with `message`, else the calling thread's
    /// `chi_last_error` (set by the `chi_task_wait` that saw the task done).
    private func checkStatus(message: String?) throws(ChimaeraError) {
        let rc = task.pointee.rc
        guard rc < 0 else { return }
        let last = message ?? String(cString: chi_last_error())
        throw ChimaeraError(code: rc, message: last.isEmpty ? ChimaeraError.describe(rc) : last)
    }
}
