import CChimaera
import Glibc

// Container migration (MigrateContainer, chi_container_migrate).
//
// The node that holds the container coordinates. It plugs the container's pool (as an upgrade
// does: new tasks wait, running ones finish), has the module write the container's state
// (migrate_out) into a spool file, streams the file to the destination in pieces, and asks it
// to build the container from them (migrate_in). Only then does the container change hands:
// the destination serves it, the source points its map at the destination, forwards what was
// queued in the container's lanes, frees the old state and tells every other node the new
// placement under the container's next placement version. The held tasks then flow to the
// destination, and requests that still reach the old node are forwarded there. Any failure
// before the destination's commit leaves the container where it was, serving.

/// A migration stream: an unlinked file, written by migrate_out and read by migrate_in, so a
/// big state is never held in memory whole.
final class MigrateStream {
    let fd: Int32
    var written: UInt64 = 0
    var remaining: UInt64 = 0
    let limit: UInt64

    /// Linux's O_TMPFILE (__O_TMPFILE | O_DIRECTORY), which Glibc's Swift overlay lacks.
    static let oTmpFile: Int32 = 0o20200000

    init(limit: UInt64) throws(ChiError) {
        var fd: Int32 = -1
        for dir in ["/var/tmp", "/tmp"] {
            fd = open(dir, Self.oTmpFile | O_RDWR | O_CLOEXEC, 0o600)
            if fd >= 0 { break }
        }
        guard fd >= 0 else { throw ChiError(errno, "cannot make a spool file for a migration: \(Sys.errnoText(errno))") }
        self.fd = fd
        self.limit = limit
    }

    deinit { close(fd) }

    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }
    static func from(_ h: OpaquePointer) -> MigrateStream {
        Unmanaged<MigrateStream>.fromOpaque(UnsafeRawPointer(h)).takeUnretainedValue()
    }

    func write(_ p: UnsafeRawPointer, _ n: Int) -> CInt {
        guard written &+ UInt64(n) <= limit else { return -EFBIG }
        var off = 0
        while off < n {
            let w = pwrite(fd, p + off, n - off, off_t(written) + off_t(off))
            if w < 0 {
                if errno == EINTR { continue }
                return -errno
            }
            off += w
        }
        written &+= UInt64(n)
        return 0
    }

    /// Reads the next piece (migrate_in, or the sender's chunks).
    func read(_ p: UnsafeMutableRawPointer, _ n: Int, at pos: UInt64) -> Int {
        let want = min(UInt64(n), remaining)
        guard want > 0 else { return 0 }
        let r = pread(fd, p, Int(want), off_t(pos))
        if r < 0 { return -Int(errno) }
        remaining -= UInt64(r)
        return r
    }

    /// Rewinds for reading `total` bytes.
    var readPos: UInt64 = 0
    func rewind(total: UInt64) {
        remaining = total
        readPos = 0
    }
}

/// Placements learnt from a catalog for pools not created yet, by pool id.
final class PlacementTable: @unchecked Sendable {
    private var lock = pthread_mutex_t()
    private var byPool: [UInt64: [(container: UInt32, node: UInt32, version: UInt32)]] = [:]
    init() { pthread_mutex_init(&lock, nil) }
    func set(_ id: UInt64, _ m: [(container: UInt32, node: UInt32, version: UInt32)]) {
        pthread_mutex_lock(&lock)
        byPool[id] = m
        pthread_mutex_unlock(&lock)
    }
    func take(_ id: UInt64) -> [(container: UInt32, node: UInt32, version: UInt32)] {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return byPool.removeValue(forKey: id) ?? []
    }
}

/// Incoming migrations on a destination, by id: their spool files until the commit.
final class MigrationTable: @unchecked Sendable {
    static let maxSessions = 4
    /// The most state one migration may bring (the spool file's bound).
    static let maxStateBytes: UInt64 = 4 << 30
    private var lock = pthread_mutex_t()
    private var sessions: [UInt64: (pool: UInt64, container: UInt32, stream: MigrateStream)] = [:]
    private var nextId: UInt64 = 1

    init() { pthread_mutex_init(&lock, nil) }

    func begin(pool: UInt64, container: UInt32) throws(ChiError) -> UInt64 {
        let s = try MigrateStream(limit: Self.maxStateBytes)
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        guard sessions.count < Self.maxSessions else {
            throw ChiError(CInt(CHI_ELIMIT), "\(Self.maxSessions) migrations are already arriving here")
        }
        let id = nextId
        nextId += 1
        sessions[id] = (pool, container, s)
        return id
    }

    func stream(_ id: UInt64) -> (pool: UInt64, container: UInt32, stream: MigrateStream)? {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return sessions[id]
    }

    func end(_ id: UInt64) -> (pool: UInt64, container: UInt32, stream: MigrateStream)? {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return sessions.removeValue(forKey: id)
    }
}

extension Runtime {
    /// A peer's catalog told where containers of an existing pool are: pointers to other
    /// nodes follow a newer placement; a container held here is never given up that way.
    func learnPlacement(_ pool: RuntimePool, _ moved: [(container: UInt32, node: UInt32, version: UInt32)],
                        from peer: UInt32) {
        for m in moved where Int(m.container) < pool.containers.count {
            let c = pool.containers[Int(m.container)]
            guard m.version > c.placementVersion else { continue }
            if c.node == nodeId || m.node == nodeId {
                Log.warn("pool \(pool.name): \(cluster.describe(peer)) places container \(c.id) on node \(m.node) (placement \(m.version)), this node's map says node \(c.node) (placement \(c.placementVersion)); left as it is")
                continue
            }
            c.placementVersion = m.version
            c.setNode(m.node)
        }
    }

    /// The placement a pool about to be created from a catalog gets (createPool reads it).
    func notePlacement(_ id: UInt64, _ moved: [(container: UInt32, node: UInt32, version: UInt32)]) {
        guard !moved.isEmpty else { return }
        placements.set(id, moved)
    }

    /// The pieces a state travels in.
    static let migrateChunk = 4 << 20

    func migrateService(_ t: UnsafeMutablePointer<chi_admin_migrate_container_task_t>, record r: TaskRecord) throws(ChiError) {
        let poolId = t.pointee.pool_id, index = t.pointee.container, to = t.pointee.to_node
        let phase = t.pointee.phase
        guard let pool = pool(poolId) else { throw ChiError(CInt(CHI_ENOPOOL), "no pool with id \(poolId)") }
        guard Int(index) < pool.containers.count else {
            throw ChiError(CInt(CHI_ENOCONTAINER), "pool \(pool.name) has \(pool.containers.count) containers, not \(index + 1)")
        }
        let c = pool.containers[Int(index)]
        if phase != 0 && r.remote == nil {
            throw ChiError(EPERM, "MigrateContainer phase \(phase) is for the runtime's own use between nodes")
        }
        switch phase {
        case 0:
            guard to >= 1 && Int(to) <= cluster.count else {
                throw ChiError(EINVAL, "node \(to) is not in the cluster (nodes 1...\(cluster.count))")
            }
            if c.node == to { return }
            if c.node != nodeId {
                // The holder coordinates; a request that came from another node is not passed on.
                guard r.remote == nil else {
                    throw ChiError(CInt(CHI_ENOCONTAINER), "container \(index) of pool \(pool.name) is not on \(cluster.describe(nodeId))")
                }
                let holder = c.node
                var pause: UInt64 = 0, bytes: UInt64 = 0
                let res = adminOnNodes([holder], method: UInt32(CHI_ADMIN_MIGRATE_CONTAINER),
                                       type: chi_admin_migrate_container_task_t.self, bulk: nil) { x, _ in
                    Self.fillMigrate(x, pool: poolId, container: index, to: to, phase: 0)
                } read: { x in
                    pause = x.pointee.pause_ns
                    bytes = x.pointee.state_bytes
                }
                if let x = res.first, x.rc < 0 {
                    throw ChiError(-x.rc, x.message ?? ChiError.describe(x.rc))
                }
                t.pointee.pause_ns = pause
                t.pointee.state_bytes = bytes
                return
            }
            let (pause, bytes) = try migrateOut(pool, c, to: to)
            t.pointee.pause_ns = pause
            t.pointee.state_bytes = bytes
        case 1:
            guard c.node != nodeId else {
                throw ChiError(EEXIST, "container \(index) of pool \(pool.name) is already on \(cluster.describe(nodeId))")
            }
            guard t.pointee.total <= MigrationTable.maxStateBytes else {
                throw ChiError(EFBIG, "a state of \(t.pointee.total) bytes is more than a migration may bring (\(MigrationTable.maxStateBytes))")
            }
            t.pointee.migration_id = try migrations.begin(pool: poolId, container: index)
        case 2:
            guard let s = migrations.stream(t.pointee.migration_id), s.pool == poolId, s.container == index else {
                throw ChiError(ENOENT, "no migration \(t.pointee.migration_id) of that container arriving here")
            }
            let n = t.pointee.data_size
            guard t.pointee.offset == s.stream.written, n > 0, n <= UInt64(Self.migrateChunk) else {
                throw ChiError(EINVAL, "a piece at \(t.pointee.offset) (\(n) bytes) where \(s.stream.written) was expected")
            }
            guard let p = resolveBulk(t.pointee.data, n, owner: r.bulkOwner) else {
                throw ChiError(EFAULT, "the piece's data is not a buffer of the sender")
            }
            let rc = s.stream.write(p, Int(n))
            if rc < 0 { throw ChiError(-rc, "cannot spool a migration piece: \(ChiError.describe(rc))") }
        case 3:
            guard let s = migrations.end(t.pointee.migration_id), s.pool == poolId, s.container == index else {
                throw ChiError(ENOENT, "no migration \(t.pointee.migration_id) of that container arriving here")
            }
            guard s.stream.written == t.pointee.total else {
                throw ChiError(EIO, "\(s.stream.written) of \(t.pointee.total) bytes of the state arrived")
            }
            try migrateIn(pool, c, s.stream, version: t.pointee.version, placement: UInt32(truncatingIfNeeded: t.pointee.offset))
        case 4:
            _ = migrations.end(t.pointee.migration_id)
        case 5:
            let v = UInt32(truncatingIfNeeded: t.pointee.offset)
            if v > c.placementVersion {
                c.placementVersion = v
                c.setNode(to)
                Log.info("pool \(pool.name): container \(index) is on \(cluster.describe(to)) now (placement \(v))")
            }
        default:
            throw ChiError(EINVAL, "MigrateContainer phase \(phase) is not 0...5")
        }
    }

    private static func fillMigrate(_ x: UnsafeMutablePointer<chi_admin_migrate_container_task_t>, pool: UInt64,
                                    container: UInt32, to: UInt32, phase: UInt32, id: UInt64 = 0) {
        x.pointee.pool_id = pool
        x.pointee.container = container
        x.pointee.to_node = to
        x.pointee.phase = phase
        x.pointee.migration_id = id
    }

    /// The source's part: plug, write out, stream, commit there, hand over. Returns the pause
    /// and the state's size.
    private func migrateOut(_ pool: RuntimePool, _ c: Container, to: UInt32) throws(ChiError) -> (UInt64, UInt64) {
        let mod = pool.module
        guard let out = mod.vtable.migrate_out, mod.vtable.migrate_in != nil else {
            throw ChiError(ENOTSUP, "module \(mod.name) version \(mod.version) has no migrate_out/migrate_in hooks")
        }
        guard upgrades.claim(mod.name) else {
            throw ChiError(EBUSY, "module \(mod.name) is being upgraded or one of its containers moved")
        }
        defer { upgrades.release(mod.name) }
        let what = "container \(c.id) of pool \(pool.name)"
        let pluggedAt = try plugAndDrain([pool], what: what)
        var sessionId: UInt64 = 0
        func abandon(_ e: ChiError) -> ChiError {
            if sessionId != 0 {
                _ = adminOnNodes([to], method: UInt32(CHI_ADMIN_MIGRATE_CONTAINER),
                                 type: chi_admin_migrate_container_task_t.self, bulk: nil) { x, _ in
                    Self.fillMigrate(x, pool: pool.id, container: c.id, to: to, phase: 4, id: sessionId)
                }
            }
            unplug([pool])
            Log.warn("pool \(pool.name): \(what) stays on \(cluster.describe(nodeId)): \(e.message)")
            return e
        }
        let stream: MigrateStream
        do throws(ChiError) {
            stream = try MigrateStream(limit: MigrationTable.maxStateBytes)
        } catch {
            throw abandon(error)
        }
        let rc = out(c.handle, c.state, stream.handle)
        if rc < 0 {
            throw abandon(ChiError(-rc, "module \(mod.name): migrate_out of \(what) failed: \(ChiError.describe(rc))"))
        }
        let total = stream.written
        // Begin, the pieces, the commit: each waits for the destination's answer.
        func call(_ phase: UInt32, bulk: UnsafeRawBufferPointer? = nil, offset: UInt64 = 0,
                  version: UInt32 = 0) -> ChiError? {
            let res = adminOnNodes([to], method: UInt32(CHI_ADMIN_MIGRATE_CONTAINER),
                                   type: chi_admin_migrate_container_task_t.self, bulk: bulk) { x, ptr in
                Self.fillMigrate(x, pool: pool.id, container: c.id, to: to, phase: phase, id: sessionId)
                x.pointee.total = total
                x.pointee.offset = offset
                x.pointee.version = version
                if let ptr, let bulk {
                    x.pointee.data = ptr
                    x.pointee.data_size = UInt64(bulk.count)
                }
            } read: { x in
                if phase == 1 { sessionId = x.pointee.migration_id }
            }
            if let x = res.first, x.rc < 0 {
                return ChiError(-x.rc, "MigrateContainer on \(cluster.describe(to)): \(x.message ?? ChiError.describe(x.rc))")
            }
            return nil
        }
        if let e = call(1) { throw abandon(e) }
        var buf = [UInt8](repeating: 0, count: min(Self.migrateChunk, max(1, Int(total))))
        stream.rewind(total: total)
        var pos: UInt64 = 0
        while pos < total {
            let n = buf.withUnsafeMutableBytes { stream.read($0.baseAddress!, $0.count, at: pos) }
            if n <= 0 { throw abandon(ChiError(EIO, "cannot read the spooled state back")) }
            let e = buf.withUnsafeBytes { call(2, bulk: UnsafeRawBufferPointer(rebasing: $0[0..<n]), offset: pos) }
            if let e { throw abandon(e) }
            pos += UInt64(n)
        }
        let placement = c.placementVersion &+ 1
        if let e = call(3, offset: UInt64(placement), version: mod.version) {
            sessionId = 0 // a failed commit ends the session there
            throw abandon(e)
        }
        // The destination serves it now: point here at it, forward what waited in its lanes,
        // and take its pollers off the workers (nothing of it is in flight: it was drained).
        c.placementVersion = placement
        c.setNode(to)
        let lanes = c.lanes
        let pollers = c.pollers
        c.pollers = []
        let answered = askWorkers({ w in
            for l in lanes where l.queueOwnerId == w.id {
                for r in l.popAll() { r.with { w.dispatch($0, to: c) } }
            }
            w.pollers.removeAll { q in pollers.contains { $0 === q } }
            return false
        }, deadline: chi_now_ns() &+ Self.upgradeDrainNs)
        if let i = pool.local.firstIndex(where: { $0 === c }) { pool.local.remove(at: i) }
        let oldState = stateLock.withLock { () -> UnsafeMutableRawPointer? in
            defer { c.state = nil }
            return c.state
        }
        unplug([pool])
        let pause = chi_now_ns() &- pluggedAt
        if answered == nil && !pollers.isEmpty {
            // A worker that has not answered may still call a poller with the old state.
            Log.warn("pool \(pool.name): container \(c.id)'s old state is kept: a worker did not drop its pollers in time")
        } else if let destroy = mod.vtable.destroy, oldState != nil {
            destroy(c.handle, oldState)
        }
        let others = cluster.others.filter { $0 != to }
        if !others.isEmpty {
            let res = adminOnNodes(others, method: UInt32(CHI_ADMIN_MIGRATE_CONTAINER),
                                   type: chi_admin_migrate_container_task_t.self, bulk: nil) { x, _ in
                Self.fillMigrate(x, pool: pool.id, container: c.id, to: to, phase: 5)
                x.pointee.offset = UInt64(placement)
            }
            // A node that did not hear it forwards through this one's map meanwhile.
            for x in res where x.rc < 0 {
                Log.warn("pool \(pool.name): node \(x.node) did not take container \(c.id)'s new placement: \(x.message ?? ChiError.describe(x.rc))")
            }
        }
        Log.info("pool \(pool.name): container \(c.id) moved from \(cluster.describe(nodeId)) to \(cluster.describe(to)): \(total) bytes of state, paused \(pause / 1000) us")
        return (pause, total)
    }

    /// The destination's commit: build the container from the spooled state and serve it.
    private func migrateIn(_ pool: RuntimePool, _ c: Container, _ s: MigrateStream, version: UInt32,
                           placement: UInt32) throws(ChiError) {
        let mod = pool.module
        guard let build = mod.vtable.migrate_in else {
            throw ChiError(ENOTSUP, "module \(mod.name) version \(mod.version) here has no migrate_in hook")
        }
        _ = try plugAndDrain([pool], what: "pool \(pool.name) (a container arriving)")
        s.rewind(total: s.written)
        c.rebuilding = !c.lanes.isEmpty // lanes left from an earlier stay are reused
        c.collectingPollers = true
        c.pendingPollers = []
        var state: UnsafeMutableRawPointer?
        let rc = build(c.handle, s.handle, version, &state)
        c.rebuilding = false
        c.collectingPollers = false
        let pollers = c.pendingPollers
        c.pendingPollers = []
        if rc < 0 {
            unplug([pool])
            throw ChiError(-rc, "module \(mod.name): migrate_in of container \(c.id) of pool \(pool.name) failed: \(ChiError.describe(rc))")
        }
        if c.lanes.isEmpty {
            do throws(ChiError) {
                try c.addLanes(group: 0, count: 1, prio: UInt32(CHI_PRIO_LOW_LATENCY))
            } catch {
                if let destroy = mod.vtable.destroy, state != nil { destroy(c.handle, state) }
                unplug([pool])
                throw error
            }
        }
        stateLock.withLock { c.state = state }
        c.pollers = pollers
        for p in pollers {
            var owners: [Worker] = []
            for l in c.lanes where !owners.contains(where: { $0 === l.worker }) { owners.append(l.worker) }
            for w in owners { w.post(.addPoller, p) }
        }
        let at = pool.local.firstIndex { $0.id > c.id } ?? pool.local.count
        pool.local.insert(c, at: at)
        c.placementVersion = placement
        c.setNode(nodeId)
        unplug([pool])
        Log.info("pool \(pool.name): container \(c.id) arrived on \(cluster.describe(nodeId)) (\(s.written) bytes of state, placement \(placement))")
    }
}
