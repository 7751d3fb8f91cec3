import CChimaera
import CNuma
import Glibc

/// One runtime: the segment, the workers, the modules and the pools. Runs in the daemon, or
/// inside a client process in embedded mode.
package final class Runtime: @unchecked Sendable {
    package let config: RuntimeConfig
    package let segment: SharedSegment
    /// Who owns each span of the heap (private to the runtime).
    let spans: SpanMap
    /// The runtime's own buffers in the segment (bulk data of requests from other nodes,
    /// buffers module code allocates).
    let slab: SlabAllocator
    /// Clients, their rings and their memory.
    private(set) var registry: ClientRegistry!
    /// Moves lanes between workers by load (the work-orchestration policy).
    private(set) var orchestrator: Orchestrator!
    /// Private tasks for threads that are not workers (the network thread, callers of the
    /// internal client outside a worker).
    let sharedTasks: PrivateTaskPool
    let loader: ModuleLoader
    /// Hot upgrades under way, by module (Runtime+Upgrade.swift).
    let upgrades = UpgradeTable()
    /// Containers arriving from other nodes (Runtime+Migrate.swift).
    let migrations = MigrationTable()
    let placements = PlacementTable()
    private(set) var workers: [Worker] = []
    /// The workers, unretained, by id (read on the task path: no array retain).
    private var workerRefs: UnsafeMutablePointer<Ref<Worker>>!

    /// Worker `i`, unretained.
    @inline(__always)
    func workerRef(_ i: Int) -> Ref<Worker> { workerRefs[i] }
    /// The nodes of the cluster and which one this is (a single node is node 1).
    package let cluster: ClusterMap
    /// This node's id (the physical-node sub-domain).
    let nodeId: UInt32
    /// The transport to the other nodes; nil on a single node.
    package private(set) var remote: RemoteQueue?
    let startNs = chi_now_ns()
    /// 1 once a stop was requested; the main thread futex-waits on it.
    package let stopFlag = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)

    static let maxPools = 1 << 16
    static let adminPoolId = UInt64(CHI_ADMIN_POOL_ID)
    /// Live pools by id, as unretained object pointers (0 = none); read without a lock.
    private let poolSlots = UnsafeMutablePointer<UInt64>.allocate(capacity: maxPools)
    private var poolsByName: [String: RuntimePool] = [:]
    /// Destroyed pools stay alive until no worker can still hold one it read before (see
    /// `reclaimRetired`); then their ids are free again.
    private var retired: [(pool: RuntimePool, at: UInt64, passes: [UInt64])] = []
    private var freeIds: [UInt64] = []
    private var nextPoolId: UInt64 = 2
    /// Destroyed pools of a cluster, by id (the catalog's tombstones): their ids are never
    /// handed out again, and no peer's catalog brings them back (Runtime+Metadata.swift).
    private var tombstones: [UInt64: String] = [:]
    /// The metadata authority when `cluster.metadata` names etcd; nil in the embedded mode.
    var metadata: RuntimeMetadata?
    static let retireGraceNs: UInt64 = 1_000_000_000
    private var lock = pthread_mutex_t()
    /// Held while a container's state pointer is replaced (create, migrate, upgrade, destroy)
    /// or its pool's module swapped, and by `chimaera status` while it asks the module how
    /// big a state is: a state is never measured while it is freed, nor by another version's
    /// code. Never held across a hook that runs tasks.
    let stateLock = Mutex()
    private let laneCursor = UnsafeMutablePointer<UInt64>.allocate(capacity: 2)
    private var started = false
    private var stopped = false
    private let anonymous: Bool
    /// The client handed to module code for subtasks (set by the C exports layer).
    package var internalClient: RuntimeClient?

    /// Creates the segment and workers; `start()` brings them up.
    package init(config: RuntimeConfig, segmentName: String, anonymous: Bool = false) throws(ChiError) {
        self.config = config
        Log.level = config.logLevel
        // A detached daemon's stderr is its log file (chimaera start --log-file): rotated by size.
        if !anonymous, let f = getenv("CHIMAERA_LOG_FILE"), f.pointee != 0 {
            Log.useFile(String(cString: f), maxBytes: config.logMaxBytes, keep: config.logKeep)
        }
        let envNode = getenv("CHIMAERA_NODE_ID").flatMap { Int(String(cString: $0)) }
        cluster = try ClusterMap.resolve(config.cluster, override: envNode)
        nodeId = cluster.selfId
        let nLL = config.lowLatencyWorkers
        let nHL = config.highLatencyWorkers
        let nWorkers = max(1, nLL + nHL)
        segment = try SharedSegment.create(
            name: segmentName, size: config.shmSize, layout: .init(workers: nWorkers),
            anonymous: anonymous)
        self.anonymous = anonymous
        spans = SpanMap(heapOff: segment.heapOff, heapSize: segment.heapSize)
        slab = SlabAllocator(source: RuntimeSpans(spans), heapOff: segment.heapOff)
        sharedTasks = PrivateTaskPool(maxTaskSize: config.limits.maxTaskSize + PrivateTask.prefix, owner: nil)
        loader = ModuleLoader(configPaths: config.modulePath)
        stopFlag.initialize(to: 0)
        poolSlots.initialize(repeating: 0, count: Self.maxPools)
        laneCursor.initialize(repeating: 0, count: 2)
        var attr = pthread_mutexattr_t()
        pthread_mutexattr_init(&attr)
        pthread_mutexattr_settype(&attr, Int32(PTHREAD_MUTEX_RECURSIVE))
        pthread_mutex_init(&lock, &attr)
        pthread_mutexattr_destroy(&attr)

        let spin = UInt64(config.workerSpinUs) * 1000
        for i in 0..<nWorkers {
            let kind: Worker.Kind = i < nLL || nLL + nHL == 0 ? .lowLatency : .highLatency
            workers.append(Worker(id: i, kind: kind, runtime: self, doorbell: segment.doorbell(i),
                                  spinNs: spin, spans: spans))
        }
        workerRefs = .allocate(capacity: workers.count)
        for (i, w) in workers.enumerated() { (workerRefs + i).initialize(to: Ref(w)) }
        orchestrator = Orchestrator(runtime: self)
        registry = ClientRegistry(runtime: self, segment: segment, maxClients: config.limits.maxClients,
                                  queueDepth: config.queueDepth, quota: UInt64(config.limits.maxClientMemory))
        if config.pinWorkers { planPinning() }
        placeSegment()
    }

    /// On a multi-node machine, binds the segment's memory to the node of the first pinned
    /// low-latency worker, where the task path reads it. A one-node machine needs nothing.
    private func placeSegment() {
        guard numa_available() >= 0, numa_max_node() > 0,
              let cpu = workers.first(where: { $0.cpu >= 0 })?.cpu else { return }
        let node = numa_node_of_cpu(cpu)
        if node >= 0 { numa_tonode_memory(segment.base, segment.size, node) }
    }

    /// Low-latency workers own a core each, counted down from the last CPU so that CPU 0 is
    /// left to clients and the kernel; high-latency workers float.
    private func planPinning() {
        let ncpu = numa_available() >= 0 ? Int(numa_num_task_cpus()) : Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        guard ncpu > 1 else { return }
        var next = ncpu - 1
        for w in workers where w.kind == .lowLatency {
            if next < 1 { break }
            w.cpu = Int32(next)
            if next < 32 { segment.header.pointee.pinned_cpus |= 1 << UInt32(next) }
            next -= 1
        }
    }

    /// Loads the admin module, creates the admin pool and the configured modules, starts the
    /// workers and marks the segment ready.
    package func start() throws(ChiError) {
        precondition(!started)
        started = true
        let admin = try createPool(module: CHI_ADMIN_MODULE_NAME, name: "admin",
                                   containersPerNode: 1, params: nil, id: Self.adminPoolId)
        precondition(admin == Self.adminPoolId)
        for m in config.modules { _ = try loader.load(m) }
        _ = Clock.nsPerTick
        try orchestrator.use(config.workOrchestrator)
        for w in workers { try w.start() }
        try orchestrator.start()
        // Clients register here; an embedded runtime (an unlinked segment) takes only its
        // own process's clients, by a call.
        try registry.start(socketPath: anonymous ? nil : SharedSegment.socketPath(segment.name))
        if cluster.isMultiNode {
            let rq = RemoteQueue(runtime: self, map: cluster, config: config.cluster)
            remote = rq
            do {
                try rq.start()
            } catch {
                remote = nil
                throw error
            }
            try startMetadata()
        }
        segment.publishReady()
    }

    package var isStopping: Bool { chi_load32_relaxed(stopFlag) != 0 }

    /// Asks the runtime to stop; `waitForStop` returns. Async-signal-safe in effect.
    package func requestStop() {
        chi_store32(stopFlag, 1)
        _ = chi_futex_wake(stopFlag, Int32.max)
    }

    /// Blocks the calling thread until a stop is requested.
    package func waitForStop() {
        while chi_load32(stopFlag) == 0 { _ = chi_futex_wait(stopFlag, 0, -1) }
    }

    /// Stops the workers, fails what is still queued with CHI_ESTOPPED, destroys the pools
    /// and removes the segment. Idempotent; call from a non-worker thread.
    package func shutdown() {
        if stopped { return }
        stopped = true
        requestStop()
        chi_store32(&segment.header.pointee.state, CHI_SEG_STOPPING)
        registry.stop()
        orchestrator.stop()
        // Requests from other nodes get their replies out first (at most a second), then the
        // network closes: what is still in flight to other nodes fails on the workers.
        metadata?.stop()
        if let rq = remote {
            // Frames a worker batched in the pass that ran the stop (a broadcast StopRuntime's
            // copies for the other nodes, say) go out at the end of that pass: let it end.
            usleep(20_000)
            rq.quiesce(maxNs: 1_000_000_000)
            rq.shutdown()
            let deadline = chi_now_ns() + 500_000_000
            while workers.contains(where: { !$0.inbox.isEmpty }) && chi_now_ns() < deadline { usleep(1000) }
        }
        for w in workers { w.stop() }
        for w in workers where started { w.join() }
        for w in workers { w.abandonAll() }
        pthread_mutex_lock(&lock)
        let pools = Array(poolsByName.values)
        pthread_mutex_unlock(&lock)
        for p in pools { destroyContainers(p) }
        segment.unlink()
        // The internal client refers back to this runtime: break the cycle.
        internalClient = nil
    }

    // MARK: Pools

    /// The live pool `id`, unretained (pools are never freed while the runtime runs).
    @inline(__always)
    func poolRef(_ id: UInt64) -> Ref<RuntimePool>? {
        guard id > 0 && id < UInt64(Self.maxPools) else { return nil }
        let bits = chi_load64(poolSlots + Int(id))
        guard bits != 0, let p = UnsafeRawPointer(bitPattern: UInt(bits)) else { return nil }
        return Ref(Unmanaged<RuntimePool>.fromOpaque(p).takeUnretainedValue())
    }

    @inline(__always)
    func pool(_ id: UInt64) -> RuntimePool? {
        guard id > 0 && id < UInt64(Self.maxPools) else { return nil }
        let bits = chi_load64(poolSlots + Int(id))
        guard bits != 0, let p = UnsafeRawPointer(bitPattern: UInt(bits)) else { return nil }
        return Unmanaged<RuntimePool>.fromOpaque(p).takeUnretainedValue()
    }

    /// The worker a new lane of priority `prio` goes to (round-robin within its class).
    func workerFor(prio: UInt32) -> Worker {
        let wantLow = prio == UInt32(CHI_PRIO_LOW_LATENCY)
        var candidates = workers.filter { ($0.kind == .lowLatency) == wantLow }
        if candidates.isEmpty { candidates = workers }
        let i = chi_add64(laneCursor + (wantLow ? 0 : 1), 1)
        return candidates[Int(i % UInt64(candidates.count))]
    }

    /// Creates a pool, or returns the id of the one already named `name`.
    package func createPool(module: String, name: String, containersPerNode: Int,
                    params: UnsafeRawBufferPointer?, id fixedId: UInt64? = nil) throws(ChiError) -> UInt64
    {
        guard !name.isEmpty, name.utf8.count < Int(CHI_NAME_MAX) else {
            throw ChiError(EINVAL, "pool name must be 1 to \(CHI_NAME_MAX - 1) bytes")
        }
        // The replica count rides in the high 16 bits of the admin task's containers_per_node
        // (RuntimeClient.createPool), so every path that carries the count carries it too.
        let replicas = max(1, containersPerNode >> 16)
        let containersPerNode = containersPerNode & 0xFFFF
        guard containersPerNode >= 0, containersPerNode <= 4096 else {
            throw ChiError(EINVAL, "containers per node must be 0...4096, got \(containersPerNode)")
        }
        guard replicas <= cluster.count else {
            throw ChiError(EINVAL, "pool \"\(name)\": \(replicas) replicas need \(replicas) distinct nodes; the cluster has \(cluster.count)")
        }
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        if let p = poolsByName[name] {
            guard p.module.name == module else {
                throw ChiError(EEXIST, "pool \"\(name)\" exists with module \(p.module.name), not \(module)")
            }
            return p.id
        }
        guard !upgrades.isBusy(module) else {
            throw ChiError(EBUSY, "module \(module) is being upgraded; create the pool when the upgrade ends")
        }
        let mod = try loader.load(module)
        reclaimRetired()
        // Ids of destroyed pools come back once reclaimed; the lowest first, so a node that
        // assigns ids (node 1 in a cluster) hands out the same ones as before a restart.
        // In a cluster an id is never reused: a destroyed pool's id stays its tombstone.
        let recycled = fixedId == nil && !freeIds.isEmpty && !cluster.isMultiNode
        if recycled { freeIds.sort(by: >) }
        let id = fixedId ?? (recycled ? freeIds.last! : nextPoolId)
        guard id < UInt64(Self.maxPools) else {
            throw ChiError(CInt(CHI_ELIMIT), "the runtime holds \(poolsByName.count) pools, the most it can (\(Self.maxPools - 2))")
        }
        if fixedId != nil, pool(id) != nil {
            throw ChiError(EEXIST, "\(cluster.describe(nodeId)) already has a pool with id \(id)")
        }
        if let gone = tombstones[id] {
            throw ChiError(CInt(CHI_ENOPOOL), "pool \"\(gone)\" (id \(id)) was destroyed; its id is not reused")
        }
        let pool = RuntimePool(id: id, name: name, module: mod, workers: workers.count)
        let perNode = max(1, containersPerNode)
        pool.containersPerNode = perNode
        pool.replicas = replicas
        pool.clusterNodes = cluster.count
        if let params { pool.createParams = Array(params) }
        // Containers are numbered node by node; only this node's get state and lanes. All
        // exist before the first create hook runs (chi_container_count is the pool's size).
        for i in 0..<(perNode * cluster.count) {
            let node = ClusterMap.node(ofContainer: i, perNode: perNode)
            let c = Container(pool: pool, id: UInt32(i), node: node, runtime: self)
            c.backups = pool.backupNodes(of: node)
            pool.containers.append(c)
        }
        // A pool rebuilt from a peer's catalog keeps the places its containers moved to.
        if fixedId != nil {
            for m in placements.take(id) where Int(m.container) < pool.containers.count {
                let c = pool.containers[Int(m.container)]
                c.setNode(m.node)
                c.placementVersion = m.version
                if m.node == nodeId {
                    Log.warn("pool \(name): container \(c.id) had moved to this node, whose state is gone with its restart; it starts afresh")
                }
            }
        }
        for c in pool.containers where c.node == nodeId {
            let i = Int(c.id)
            pool.local.append(c)
            if let create = mod.vtable.create {
                var state: UnsafeMutableRawPointer?
                let rc = create(c.handle, params?.baseAddress, UInt32(params?.count ?? 0), &state)
                if rc < 0 {
                    pool.local.removeLast()
                    destroyContainers(pool)
                    throw ChiError(-rc, "module \(module): create of container \(i) of pool \"\(name)\" failed: \(ChiError.describe(rc))")
                }
                stateLock.withLock { c.state = state }
            }
            if c.lanes.isEmpty {
                try c.addLanes(group: 0, count: 1, prio: UInt32(CHI_PRIO_LOW_LATENCY))
            }
        }
        try createBackups(pool, params: params)
        if recycled {
            freeIds.removeLast()
        } else if fixedId == nil {
            nextPoolId += 1
        } else if id >= nextPoolId && id != Self.adminPoolId {
            nextPoolId = id + 1
        } else {
            freeIds.removeAll { $0 == id }
        }
        for c in pool.local + pool.containers.compactMap(\.shadow) where !c.pollers.isEmpty {
            var owners: [Worker] = []
            for l in c.lanes where !owners.contains(where: { $0 === l.worker }) { owners.append(l.worker) }
            for w in owners { for p in c.pollers { w.post(.addPoller, p) } }
        }
        poolsByName[name] = pool
        chi_store64(poolSlots + Int(id), UInt64(UInt(bitPattern: Unmanaged.passUnretained(pool).toOpaque())))
        return id
    }

    /// Every live pool, by id.
    func livePools() -> [RuntimePool] {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return poolsByName.values.sorted { $0.id < $1.id }
    }

    /// Calls `body` for each live pool under the runtime's lock, in no particular order and
    /// without allocating (the orchestrator's tick uses it while tasks run). `body` must not
    /// create or destroy pools.
    func forEachLivePool(_ body: (RuntimePool) -> Void) {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        for p in poolsByName.values { body(p) }
    }

    /// Switches the work-orchestration policy (SetWorkOrchestrator).
    package func setWorkOrchestrator(_ name: String) throws(ChiError) { try orchestrator.use(name) }

    /// Fills `info` for pool `id`, or when it is 0 the pool named `name` (one dictionary or
    /// slot lookup). Throws CHI_ENOPOOL naming what was asked for.
    package func poolInfo(id: UInt64, name: String?, into info: UnsafeMutablePointer<chi_pool_info_t>) throws(ChiError) {
        let p: RuntimePool? = id != 0 ? pool(id) : name.flatMap { n in
            pthread_mutex_lock(&lock)
            defer { pthread_mutex_unlock(&lock) }
            return poolsByName[n]
        }
        guard let p else {
            throw ChiError(CInt(CHI_ENOPOOL), id != 0 ? "no pool with id \(id)" : "no pool named \"\(name ?? "")\"")
        }
        let size = info.pointee.size
        var out = chi_pool_info_t()
        out.size = UInt32(MemoryLayout<chi_pool_info_t>.size)
        out.id = p.id
        out.containers = UInt32(p.containers.count)
        out.containers_per_node = UInt32(p.containersPerNode)
        out.nodes = UInt32(cluster.count)
        withUnsafeMutableBytes(of: &out.name) { $0.copyBytes(from: p.name.utf8.prefix($0.count - 1)) }
        withUnsafeMutableBytes(of: &out.module) { $0.copyBytes(from: p.module.name.utf8.prefix($0.count - 1)) }
        // An older caller's smaller struct gets what fits.
        withUnsafeBytes(of: &out) { src in
            UnsafeMutableRawPointer(info).copyMemory(from: src.baseAddress!, byteCount: min(Int(size), src.count))
        }
        info.pointee.size = size
    }

    /// The id of the pool named `name`.
    func findPool(_ name: String) -> UInt64? {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return poolsByName[name]?.id
    }

    /// Destroys a pool: new tasks fail with CHI_ENOPOOL, periodic ones complete with
    /// CHI_ESTOPPED, queued ones drain (up to 5 s), then the destroy hooks run.
    package func destroyPool(_ id: UInt64) throws(ChiError) {
        guard id != Self.adminPoolId else { throw ChiError(EPERM, "the admin pool cannot be destroyed") }
        pthread_mutex_lock(&lock)
        guard let p = pool(id) else {
            pthread_mutex_unlock(&lock)
            throw ChiError(CInt(CHI_ENOPOOL), "no pool with id \(id)")
        }
        guard chi_load32(p.gate) == RuntimePool.Gate.open else {
            pthread_mutex_unlock(&lock)
            throw ChiError(EBUSY, "pool \"\(p.name)\" is being upgraded; destroy it when the upgrade ends")
        }
        chi_store32(p.destroyed, 1)
        chi_store64(poolSlots + Int(id), 0)
        poolsByName[p.name] = nil
        if cluster.isMultiNode { tombstones[id] = p.name }
        pthread_mutex_unlock(&lock)
        // First the periodic tasks go, then the queued and suspended ones drain (pollers still
        // run, so tasks waiting on I/O complete), and only then the pollers: dropping them
        // earlier would strand tasks suspended in I/O.
        for w in workers { w.post(.purge, p) }
        let deadline = chi_now_ns() + 10_000_000_000
        while (p.inflight > 0 || chi_load32(p.purgeAcks) < UInt32(workers.count))
            && chi_now_ns() < deadline
        {
            yieldCurrent()
        }
        let dropPollers = WorkerCall { w in
            w.pollers.removeAll { $0.pool === p }
            _ = chi_add32(p.purgeAcks, 1)
        }
        for w in workers { w.post(.call, dropPollers) }
        while chi_load32(p.purgeAcks) < UInt32(2 * workers.count) && chi_now_ns() < deadline {
            yieldCurrent()
        }
        destroyContainers(p)
        pthread_mutex_lock(&lock)
        retired.append((p, chi_now_ns(), workers.map { $0.passes }))
        pthread_mutex_unlock(&lock)
    }

    /// Forgets destroyed pools that nothing can reach any more, and frees their ids: a
    /// second after the destroy ended, once every worker has run a pass of its loop (or
    /// slept) since, so none is inside a task of the pool or holds its slot's old value.
    /// Caller holds `lock`.
    private func reclaimRetired() {
        guard !retired.isEmpty else { return }
        let now = chi_now_ns()
        retired.removeAll { e in
            guard now &- e.at >= Self.retireGraceNs else { return false }
            for (i, w) in workers.enumerated() where w.passes == e.passes[i] && chi_load32(w.doorbellSleeping) == 0 {
                return false
            }
            if e.pool.id != Self.adminPoolId && pool(e.pool.id) == nil && !cluster.isMultiNode {
                freeIds.append(e.pool.id)
            }
            return true
        }
    }

    /// Builds this node's backup copies of the pool's containers (a replicated pool): each
    /// from the create parameters, as the primary was.
    private func createBackups(_ pool: RuntimePool, params: UnsafeRawBufferPointer?) throws(ChiError) {
        guard pool.replicas > 1 else { return }
        for c in pool.containers where c.backups.contains(nodeId) {
            let b = Container(pool: pool, id: c.id, node: nodeId, runtime: self)
            b.order = BackupOrder()
            c.shadow = b
            if let create = pool.module.vtable.create {
                var state: UnsafeMutableRawPointer?
                let rc = create(b.handle, params?.baseAddress, UInt32(params?.count ?? 0), &state)
                if rc < 0 {
                    c.shadow = nil
                    destroyContainers(pool)
                    throw ChiError(-rc, "module \(pool.module.name): create of the backup of container \(c.id) of pool \"\(pool.name)\" failed: \(ChiError.describe(rc))")
                }
                stateLock.withLock { b.state = state }
            }
            if b.lanes.isEmpty {
                try b.addLanes(group: 0, count: 1, prio: UInt32(CHI_PRIO_LOW_LATENCY))
            }
        }
    }

    /// Records that pool `id` (`name`) was destroyed somewhere in the cluster: the id is
    /// retired here too. Returns whether this node still holds it live (the caller destroys it).
    func noteTombstone(_ id: UInt64, name: String) -> Bool {
        guard id != Self.adminPoolId, id < UInt64(Self.maxPools) else { return false }
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        tombstones[id] = name
        if id >= nextPoolId { nextPoolId = id + 1 }
        return pool(id) != nil
    }

    /// Whether pool `id` was destroyed (a tombstone this node knows).
    func isTombstone(_ id: UInt64) -> Bool {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return tombstones[id] != nil
    }

    /// The tombstones this node knows, by id.
    func tombstoneList() -> [(id: UInt64, name: String)] {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return tombstones.map { ($0.key, $0.value) }.sorted { $0.id < $1.id }
    }

    private func destroyContainers(_ p: RuntimePool) {
        guard let destroy = p.module.vtable.destroy else { return }
        for c in p.containers {
            if let b = c.shadow {
                let state = stateLock.withLock { () -> UnsafeMutableRawPointer? in
                    defer { b.state = nil }
                    return b.state
                }
                if state != nil { destroy(b.handle, state) }
            }
            let state = stateLock.withLock { () -> UnsafeMutableRawPointer? in
                defer { c.state = nil }
                return c.state
            }
            if state != nil { destroy(c.handle, state) }
        }
    }

    /// Waits (yielding the fiber) until every task queued before the call has started, at
    /// most 10 s: first the client rings and worker inboxes must move past where they were,
    /// then the lanes must have run what they held by then. Tasks queued later (a steady
    /// stream of them included) are not waited for.
    package func flush() {
        let deadline = chi_now_ns() &+ 10_000_000_000
        let queues = registry.ringPositions() + workers.map { (ring: $0.inbox, at: $0.inbox.enqueuePosition, slot: ClientSlot?.none) }
        func drained() -> Bool {
            queues.allSatisfy { q in
                if let s = q.slot, !s.isLive { return true }
                return Int64(bitPattern: q.ring.dequeuePosition &- q.at) >= 0
            }
        }
        // A sleeping worker may hold messages posted without a wake (records going home).
        for w in workers { w.wake() }
        while !drained() && chi_now_ns() < deadline { yieldCurrent() }
        pthread_mutex_lock(&lock)
        var lanes: [(Lane, UInt64)] = []
        for p in poolsByName.values {
            for c in p.local { for l in c.lanes { lanes.append((l, l.tasksRun &+ UInt64(l.load))) } }
        }
        pthread_mutex_unlock(&lock)
        while !lanes.allSatisfy({ Int64(bitPattern: $0.0.tasksRun &- $0.1) >= 0 }) && chi_now_ns() < deadline {
            yieldCurrent()
        }
    }

    /// Lets other work run: on a fiber, requeue it behind the worker's other work; on a plain
    /// thread, sleep briefly.
    func yieldCurrent() {
        if let w = Worker.current, let f = w.currentFiber {
            w.ready.append(Ref(f))
            f.suspend()
        } else {
            usleep(200)
        }
    }

    // MARK: Completion

    /// Ends a task: copies a client task's results back into its shared memory and wakes its
    /// waiter (or hands a fire-and-forget task back to its client to free); wakes the fiber
    /// or thread waiting for an internal task. `thread` is the caller's worker id, or the
    /// network thread's slot. Replies to other nodes are the caller's business.
    @inline(__always)
    func finish(_ r: TaskRecord, thread: Int) {
        let t = r.task
        if let sref = r.slotRef, let shm = r.shm {
            sref.with { slot in
                if t.pointee.flags & UInt32(CHI_TASK_FIRE_AND_FORGET) != 0 {
                    if !(slot.returned?.push(r.shmOff) ?? false) { _ = chi_add64(slot.returnedDropped, 1) }
                } else {
                    let hdr = MemoryLayout<chi_task_t>.size
                    if r.copyBack {
                        let n = Int(t.pointee.size) - hdr
                        if n > 0 { (UnsafeMutableRawPointer(shm) + hdr).copyMemory(from: UnsafeRawPointer(t) + hdr, byteCount: n) }
                        shm.pointee.runs = t.pointee.runs
                    }
                    let rc = t.pointee.rc
                    shm.pointee.rc = rc
                    if rc < 0, let msg = r.errorMessage {
                        shm.pointee.reserved.2 = slot.leaveMessage(msg, taskId: t.pointee.task_id)
                    }
                    if chi_xchg32(shm.donePtr, DoneWord.done) == DoneWord.sleeper {
                        _ = chi_futex_wake(shm.donePtr, Int32.max)
                    }
                }
                // After the last write to the client's memory: once every accepted task is
                // counted, a client that went can be reclaimed.
                slot.countCompleted(thread)
            }
            return
        }
        if let b = r.blockRef, !r.ownsBlock {
            b.with { Runtime.finishPrivate($0, message: t.pointee.rc < 0 ? r.errorMessage : nil) }
        }
    }

    /// Completes an internal task: its message, its completion word, its waiter (fiber or
    /// thread). A fire-and-forget one goes back to its pool.
    static func finishPrivate(_ pt: PrivateTask, message: String?) {
        if let message { pt.message = message }
        let faf = pt.task.pointee.flags & UInt32(CHI_TASK_FIRE_AND_FORGET) != 0
        // The waiter stored itself before announcing itself in the word: read it after.
        let old = chi_xchg32(pt.state, DoneWord.done)
        if old == DoneWord.fiber, let f = pt.waiter {
            f.with { f in
                f.workerRef.with { w in
                    if Unmanaged.passUnretained(w).toOpaque() == chi_tls_worker() {
                        w.ready.append(Ref(f))
                    } else {
                        w.post(.resume, f)
                    }
                }
            }
        } else if old == DoneWord.sleeper {
            _ = chi_futex_wake(pt.state, Int32.max)
        }
        if faf { PrivateTaskPool.give(pt) }
    }

    /// Shows a client the outcome of one run of its periodic task (status, runs, outputs).
    func publishRun(_ r: TaskRecord) {
        guard let shm = r.shm, r.copyBack else { return }
        let t = r.task
        let hdr = MemoryLayout<chi_task_t>.size
        let n = Int(t.pointee.size) - hdr
        if n > 0 { (UnsafeMutableRawPointer(shm) + hdr).copyMemory(from: UnsafeRawPointer(t) + hdr, byteCount: n) }
        shm.pointee.rc = t.pointee.rc
        chi_store32(&shm.pointee.runs, t.pointee.runs)
    }

    /// The address of bulk range `[p, p + len)` if it lies inside one buffer that `owner`
    /// holds (0: code inside the runtime, any live buffer), else nil.
    @inline(__always)
    func resolveBulk(_ p: chi_shm_ptr_t, _ len: UInt64, owner: UInt16) -> UnsafeMutableRawPointer? {
        guard p.segment == 0, spans.bulkOK(p.offset, len, owner: owner == 0 ? nil : owner) else { return nil }
        return segment.base + Int(p.offset)
    }
}

/// chi_ffi_call's bulk resolver: the check of the task behind the run context.
let resolveBulkForFFI: chi_bulk_resolve_fn = { rctx, p, len in
    guard let rctx else { return nil }
    return ModuleServices.shmPointer(OpaquePointer(rctx), p, len)
}
