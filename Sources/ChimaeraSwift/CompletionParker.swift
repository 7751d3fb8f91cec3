import CChimaeraABI
import Glibc

/// Resumes the Swift tasks parked on tasks that outlived the awaiting side's poll.
///
/// One thread per client, started at the first park. While tasks are parked it sweeps their
/// completion words and resumes every one it finds done in one batch, outside its lock. When a
/// sweep finds none it spins briefly, then sleeps in `chi_task_wait` on the oldest parked task
/// (the runtime's completion wakes it at once) for a slice that grows from 50 us to 1 ms, so a
/// task parked behind a long one waits at most one slice. With nothing parked it sleeps on a
/// condition variable. NOT guaranteed: resumption order.
final class CompletionParker: @unchecked Sendable {
    /// How a parked task ended: `rc` is 0 (done; its status is in the task) or the wait's
    /// error; `message` is the task's failure message when the parker's own wait took it.
    struct Outcome: Sendable {
        var rc: Int32
        var message: String?
    }

    typealias Waiter = (task: UnsafeMutablePointer<chi_task_t>, resume: UnsafeContinuation<Outcome, Never>)

    private let client: OpaquePointer
    private var lock = pthread_mutex_t()
    private var cond = pthread_cond_t()
    /// Parked since the thread last took them (guarded by `lock`).
    private var incoming: [Waiter] = []
    private var thread: pthread_t?
    private var stopping = false

    init(client: OpaquePointer) {
        self.client = client
        pthread_mutex_init(&lock, nil)
        pthread_cond_init(&cond, nil)
    }

    deinit {
        pthread_cond_destroy(&cond)
        pthread_mutex_destroy(&lock)
    }

    /// Parks `c` until `t` completes. Never blocks beyond the lock.
    func park(_ t: UnsafeMutablePointer<chi_task_t>, _ c: UnsafeContinuation<Outcome, Never>) {
        pthread_mutex_lock(&lock)
        if stopping {
            pthread_mutex_unlock(&lock)
            c.resume(returning: Outcome(rc: -Int32(CHI_ESTOPPED), message: "the client was closed while the task was awaited"))
            return
        }
        if thread == nil {
            var th = pthread_t()
            let me = Unmanaged.passRetained(self)
            let rc = pthread_create(&th, nil, { arg in
                let p = Unmanaged<CompletionParker>.fromOpaque(arg!).takeRetainedValue()
                p.loop()
                return nil
            }, me.toOpaque())
            guard rc == 0 else {
                me.release()
                pthread_mutex_unlock(&lock)
                c.resume(returning: Outcome(rc: -rc, message: "cannot start the thread that resumes awaited tasks: \(String(cString: strerror(rc)))"))
                return
            }
            thread = th
        }
        incoming.append((t, c))
        pthread_cond_signal(&cond)
        pthread_mutex_unlock(&lock)
    }

    /// Stops the thread; tasks still parked resume with `CHI_ESTOPPED`. Blocks until it exits.
    func stop() {
        pthread_mutex_lock(&lock)
        stopping = true
        let th = thread
        pthread_cond_signal(&cond)
        pthread_mutex_unlock(&lock)
        if let th { pthread_join(th, nil) }
    }

    private func loop() {
        var parked: [Waiter] = []
        var idle = 0
        while true {
            pthread_mutex_lock(&lock)
            while parked.isEmpty && incoming.isEmpty && !stopping { pthread_cond_wait(&cond, &lock) }
            parked += incoming
            incoming.removeAll(keepingCapacity: true)
            let stop = stopping
            pthread_mutex_unlock(&lock)
            if stop {
                let why = Outcome(rc: -Int32(CHI_ESTOPPED), message: "the client was closed while the task was awaited")
                for w in parked { w.resume.resume(returning: why) }
                return
            }
            var done: [Waiter] = []
            parked.removeAll { w in
                guard chi_task_is_done(w.task) else { return false }
                done.append(w)
                return true
            }
            for w in done { w.resume.resume(returning: Outcome(rc: 0, message: nil)) }
            if !done.isEmpty || parked.isEmpty {
                idle = 0
                continue
            }
            idle += 1
            if idle < 64 {
                sched_yield()
                continue
            }
            // Sleep on the oldest until it completes or the slice ends, then sweep again.
            let slice = Int64(min(1_000_000, 50_000 << min(idle - 64, 5)))
            let oldest = parked[0]
            let rc = chi_task_wait(client, oldest.task, slice)
            if rc == -ETIMEDOUT { continue }
            parked.removeFirst()
            if rc < 0 {
                // The runtime is gone: every parked task fails the same way.
                let why = Outcome(rc: rc, message: String(cString: chi_last_error()))
                oldest.resume.resume(returning: why)
                for w in parked { w.resume.resume(returning: why) }
                parked.removeAll()
                continue
            }
            // This wait took the task's failure message, if any, into this thread's
            // chi_last_error: hand it over.
            let message = oldest.task.pointee.rc < 0 ? String(cString: chi_last_error()) : nil
            oldest.resume.resume(returning: Outcome(rc: 0, message: message))
            idle = 0
        }
    }
}
