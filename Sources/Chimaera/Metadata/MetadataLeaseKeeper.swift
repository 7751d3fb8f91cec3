import CChimaera
import Glibc

/// Keeps one node's liveness lease alive from a thread of its own, in either mode.
///
/// It renews every `intervalMs` (a third of the TTL unless given). When the store says the
/// lease is gone, or no renewal has succeeded for a whole TTL (the store has expired it, or
/// soon will), it calls `onLost` once, on its thread, and stops: the node is then dead to
/// the others and must register again as a new incarnation. Not guaranteed: that the lease
/// survives a pause of this process longer than the TTL (that is the point of a lease).
package final class MetadataLeaseKeeper: @unchecked Sendable {
    package let store: any MetadataStore
    package let lease: MetadataLease
    package let intervalMs: Int
    private let onLost: @Sendable (MetadataError) -> Void
    private let m = Mutex()
    private var stopping = false
    private var thread = pthread_t()
    private var running = false

    package init(store: any MetadataStore, lease: MetadataLease, intervalMs: Int? = nil,
                 onLost: @escaping @Sendable (MetadataError) -> Void) {
        self.store = store
        self.lease = lease
        self.intervalMs = max(10, intervalMs ?? lease.ttlSeconds * 1000 / 3)
        self.onLost = onLost
    }

    /// Starts the renewing thread.
    package func start() throws(MetadataError) {
        let arg = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let k = Unmanaged<MetadataLeaseKeeper>.fromOpaque(arg!).takeRetainedValue()
            k.run()
            return nil
        }, arg)
        guard rc == 0 else {
            Unmanaged<MetadataLeaseKeeper>.fromOpaque(arg).release()
            throw .unavailable("cannot start the lease thread: \(Sys.errnoText(rc))")
        }
        m.withLock { running = true }
    }

    /// Stops renewing and waits for the thread (at most one request timeout); the lease
    /// then runs out by itself unless `revoke`, which ends it at once.
    package func stop(revoke: Bool = false) {
        let join = m.withLock { () -> Bool in
            defer { stopping = true }
            return running && !stopping
        }
        if join {
            if pthread_equal(pthread_self(), thread) == 0 { pthread_join(thread, nil) } else { pthread_detach(thread) }
        }
        if revoke { try? store.revoke(lease) }
    }

    private var isStopping: Bool { m.withLock { stopping } }

    private func run() {
        var lastOk = chi_now_ns()
        let ttlNs = UInt64(lease.ttlSeconds) * 1_000_000_000
        while true {
            // Sleep in short steps so stop() returns quickly.
            let wake = chi_now_ns() + UInt64(intervalMs) * 1_000_000
            while chi_now_ns() < wake {
                if isStopping { return }
                usleep(20_000)
            }
            if isStopping { return }
            do throws(MetadataError) {
                _ = try store.keepAlive(lease)
                lastOk = chi_now_ns()
            } catch .notFound(let what) {
                if !isStopping { onLost(.notFound(what)) }
                return
            } catch {
                if chi_now_ns() - lastOk >= ttlNs {
                    if !isStopping { onLost(error) }
                    return
                }
            }
        }
    }
}
