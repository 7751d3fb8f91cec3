import CChimaera
import Glibc

/// The runtime's end of `cluster.metadata: etcd://...`: the node's liveness lease, the pool
/// catalog read from the store at start-up and followed through its watch.
///
/// Pool ids come from the store alone (create-if-absent by name, so concurrent creators get
/// one id); a destroy writes the tombstone there first. Store calls never run on a worker:
/// the services hand them to a thread of their own (`offWorker`) and the fiber yields.
final class RuntimeMetadata: @unchecked Sendable {
    let store: any MetadataStore
    private let m = Mutex()
    private var keeper: MetadataLeaseKeeper?
    private var watch: MetadataWatch?
    private var stopping = false

    init(store: any MetadataStore) {
        self.store = store
    }

    /// Revokes the lease and ends the watch. Idempotent.
    func stop() {
        let (k, w) = m.withLock { () -> (MetadataLeaseKeeper?, MetadataWatch?) in
            stopping = true
            defer { keeper = nil; watch = nil }
            return (keeper, watch)
        }
        w?.cancel()
        k?.stop(revoke: true)
    }

    fileprivate func set(keeper k: MetadataLeaseKeeper) { m.withLock { keeper = k } }

    /// Installs `w` unless the runtime is stopping (then cancels it).
    fileprivate func set(watch w: MetadataWatch) {
        let keep = m.withLock { () -> Bool in
            if stopping { return false }
            watch = w
            return true
        }
        if !keep { w.cancel() }
    }

    fileprivate var isStopping: Bool { m.withLock { stopping } }
}

extension Runtime {
    /// How long a node's lease lives without renewal.
    static let metadataLeaseSeconds = 5

    /// With `cluster.metadata: etcd://...`: registers this node, brings the local catalog in
    /// line with the store's (pools created, tombstones applied) and follows the store's
    /// watch. Nothing in the embedded mode. Main thread, after the network started.
    func startMetadata() throws(ChiError) {
        let found: EtcdStore?
        do throws(MetadataError) {
            found = try EtcdStore.forConfig(config.cluster.metadata, timeoutMs: config.cluster.timeoutMs)
        } catch {
            throw ChiError(CInt(CHI_ECONFIG), "cluster.metadata: \(error)")
        }
        guard let store = found, let rq = remote else { return }
        let md = RuntimeMetadata(store: store)
        metadata = md
        let h = cluster.host(nodeId)
        do throws(MetadataError) {
            let lease = try store.registerNode(nodeId, address: "\(h.host):\(h.port)", ttlSeconds: Self.metadataLeaseSeconds)
            let desc = cluster.describe(nodeId)
            let keeper = MetadataLeaseKeeper(store: store, lease: lease) { e in
                Log.warn("metadata: \(desc) lost its liveness lease: \(e)")
            }
            try keeper.start()
            md.set(keeper: keeper)
            let rev = try followStore(md, rq)
            Log.info("remote: pool catalog from etcd at revision \(rev)")
        } catch {
            metadata = nil
            md.stop()
            throw error.chiError
        }
        // The pools the store listed are created on workers: let them be there before serving.
        let deadline = chi_now_ns() + 10_000_000_000
        while chi_load32(rq.catalogJobs) != 0 && chi_now_ns() < deadline { usleep(2000) }
    }

    /// Reads the store's catalog, applies it, and watches from the revision read.
    private func followStore(_ md: RuntimeMetadata, _ rq: RemoteQueue) throws(MetadataError) -> Int64 {
        let (records, rev) = try md.store.pools()
        for r in records { applyCatalog(r, rq) }
        let w = try md.store.watch(fromRevision: rev) { [weak self] ev in
            guard let self, case .pool(let r) = ev.change else { return }
            self.applyCatalog(r, rq)
        } onError: { [weak self] e in
            Log.warn("metadata: the catalog watch ended (\(e)); reading the catalog again")
            guard let self else { return }
            detachedThread { self.rewatch(md, rq) }
        }
        md.set(watch: w)
        return rev
    }

    /// Re-reads and watches again after the watch failed, once a second until it works.
    private func rewatch(_ md: RuntimeMetadata, _ rq: RemoteQueue) {
        while !md.isStopping && !isStopping {
            do throws(MetadataError) {
                _ = try followStore(md, rq)
                return
            } catch {
                Log.warn("metadata: cannot follow the catalog yet: \(error)")
                sleep(1)
            }
        }
    }

    /// One catalog entry as the store holds it: a live pool this node lacks is created (from
    /// a worker), a tombstone destroys the local copy and retires the id. Any thread.
    private func applyCatalog(_ r: PoolRecord, _ rq: RemoteQueue) {
        guard r.id != Self.adminPoolId else { return }
        if r.destroyed {
            if noteTombstone(r.id, name: r.name) { rq.destroyFromCatalog(id: r.id) }
            return
        }
        guard pool(r.id) == nil, !isTombstone(r.id) else { return }
        rq.createFromCatalog(id: r.id, module: r.spec.module, name: r.name,
                             perNode: UInt32(r.spec.containersPerNode), params: r.spec.params, from: nodeId)
    }

    /// Creates pool `spec` in the store (or finds the live one of that name). From a fiber.
    func storeCreatePool(_ md: RuntimeMetadata, _ spec: PoolSpec) throws(ChiError) -> PoolRecord {
        let got = offWorker { () -> Result<PoolRecord, MetadataError> in
            do throws(MetadataError) {
                return .success(try md.store.createPool(spec).record)
            } catch {
                return .failure(error)
            }
        }
        switch got {
        case .success(let r): return r
        case .failure(let e): throw e.chiError
        }
    }

    /// Turns pool `id` into a tombstone in the store. From a fiber.
    /// - Returns: its name; nil if the store holds no live pool with that id.
    func storeDestroyPool(_ md: RuntimeMetadata, _ id: UInt64) throws(ChiError) -> String? {
        let got = offWorker { () -> Result<String?, MetadataError> in
            for _ in 0..<8 {
                do throws(MetadataError) {
                    guard let r = try md.store.pool(id: id), r.id == id, !r.destroyed else { return .success(nil) }
                    _ = try md.store.destroyPool(named: r.name, expectedVersion: r.version)
                    return .success(r.name)
                } catch {
                    switch error {
                    case .conflict: continue
                    case .notFound, .destroyed: return .success(nil)
                    default: return .failure(error)
                    }
                }
            }
            return .failure(.conflict(current: 0))
        }
        switch got {
        case .success(let n): return n
        case .failure(let e): throw e.chiError
        }
    }

    /// Runs `body` on a thread of its own while the calling fiber yields (a plain thread just
    /// waits): a blocking store call never holds a worker.
    func offWorker<T>(_ body: @escaping () -> T) -> T {
        let job = OffWorkerJob<T>(body)
        guard detachedThread({ job.run() }) else { return body() }
        while chi_load32(job.done) == 0 { yieldCurrent() }
        return job.result!
    }
}

private final class OffWorkerJob<T>: @unchecked Sendable {
    let body: () -> T
    var result: T?
    let done = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)

    init(_ body: @escaping () -> T) {
        self.body = body
        done.initialize(to: 0)
    }

    deinit { done.deallocate() }

    func run() {
        result = body()
        chi_store32(done, 1)
    }
}

private final class ThreadBody: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Starts a detached thread running `body`; false if none could be started.
@discardableResult
func detachedThread(_ body: @escaping () -> Void) -> Bool {
    let arg = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var t = pthread_t()
    let rc = pthread_create(&t, nil, { arg in
        Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue().run()
        return nil
    }, arg)
    guard rc == 0 else {
        Unmanaged<ThreadBody>.fromOpaque(arg).release()
        return false
    }
    pthread_detach(t)
    return true
}
