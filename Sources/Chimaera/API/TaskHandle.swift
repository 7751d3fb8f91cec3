import CChimaera
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

    deinit { try? client.core.deleteTask(task) }

    /// The task struct itself, in shared memory.
    public var params: UnsafeMutablePointer<Layout> {
        UnsafeMutableRawPointer(task).assumingMemoryBound(to: Layout.self)
    }

    /// The header (method, pool, domain query, flags, status).
    public var header: UnsafeMutablePointer<chi_task_t> { task }

    /// Whether the task has completed.
    public var isDone: Bool { chi_load32(task.donePtr) == UInt32(CHI_TASK_DONE) }

    /// Makes the task periodic (it reruns every `ns` until its pool is destroyed).
    public func setPeriod(ns: UInt64) { chi_task_set_period_ns(task, ns) }

    /// Hands the task to the runtime.
    public func submit() throws(ChimaeraError) {
        try api { () throws(ChiError) in try client.core.submit(task) }
    }

    /// Blocks until the task completes (at most `timeoutNs`, < 0 forever); throws the task's
    /// failure status too.
    public func wait(timeoutNs: Int64 = -1) throws(ChimaeraError) {
        try api { () throws(ChiError) in try client.core.wait(task, timeoutNs: timeoutNs) }
        try checkStatus()
    }

    /// Suspends the calling Swift task (not its thread) until the task completes; throws its
    /// failure status.
    public func completion() async throws(ChimaeraError) {
        if !isDone {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                client.watcher.watch(task, c)
            }
        }
        try checkStatus()
    }

    private func checkStatus() throws(ChimaeraError) {
        let rc = task.pointee.rc
        if rc < 0 { throw ChimaeraError(status: rc, message: client.core.takeErrorMessage(task)) }
    }
}

/// A thread that watches the completion words of tasks awaited asynchronously and resumes
/// their continuations: the awaiting Swift tasks hold no thread. It sleeps on a condition
/// variable while nothing is awaited, and polls with a growing pause while something is.
final class CompletionWatcher: @unchecked Sendable {
    private var lock = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var waiting: [(UnsafeMutablePointer<chi_task_t>, CheckedContinuation<Void, Never>)] = []
    private var thread: pthread_t?
    private var stopping = false

    init() {
        pthread_mutex_init(&lock, nil)
        pthread_cond_init(&cond, nil)
    }

    func watch(_ t: UnsafeMutablePointer<chi_task_t>, _ c: CheckedContinuation<Void, Never>) {
        pthread_mutex_lock(&lock)
        waiting.append((t, c))
        if thread == nil {
            var th = pthread_t()
            let me = Unmanaged.passRetained(self).toOpaque()
            pthread_create(&th, nil, { arg in
                let w = Unmanaged<CompletionWatcher>.fromOpaque(arg!).takeRetainedValue()
                w.loop()
                return nil
            }, me)
            thread = th
        }
        pthread_cond_signal(&cond)
        pthread_mutex_unlock(&lock)
    }

    func stop() {
        pthread_mutex_lock(&lock)
        stopping = true
        let th = thread
        pthread_cond_signal(&cond)
        pthread_mutex_unlock(&lock)
        if let th { pthread_join(th, nil) }
    }

    private func loop() {
        var idlePolls = 0
        while true {
            pthread_mutex_lock(&lock)
            while waiting.isEmpty && !stopping { pthread_cond_wait(&cond, &lock) }
            if stopping && waiting.isEmpty {
                pthread_mutex_unlock(&lock)
                return
            }
            var done: [CheckedContinuation<Void, Never>] = []
            waiting.removeAll { entry in
                guard chi_load32(entry.0.donePtr) == UInt32(CHI_TASK_DONE) || stopping else { return false }
                done.append(entry.1)
                return true
            }
            pthread_mutex_unlock(&lock)
            for c in done { c.resume() }
            if done.isEmpty {
                idlePolls += 1
                // Spin a little, then back off to at most a millisecond between polls.
                if idlePolls > 64 { usleep(UInt32(min(1000, 10 * (idlePolls - 64)))) } else { sched_yield() }
            } else {
                idlePolls = 0
            }
        }
    }
}
