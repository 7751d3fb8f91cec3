import CChimaera
import Glibc
import NIOCore

/// Requests from other nodes, replies to this node's requests, and the pool catalogs that
/// let a node that (re)joins create the pools it lacks. Network thread, unless noted.
extension RemoteQueue {
    // MARK: Requests from other nodes

    /// A request arrived: build the task in this node's segment and hand it to the worker of
    /// its container. Problems that concern the task (no such pool, full segment) are
    /// answered with a status; a body that does not parse closes the connection.
    func handleRequest(_ body: inout ByteBuffer, from c: Connection) throws {
        let h = try TaskCodec.readRequestHeader(&body)
        HopTrace.note("received", tls: tls != nil, origin: c.peerNode, dest: map.selfId, reqId: h.reqId)
        func reject(_ rc: CInt, _ msg: String) {
            send(TaskCodec.encodeReject(reqId: h.reqId, rc: -rc, message: "\(map.describe(map.selfId)): \(msg)"),
                 to: peer(c.peerNode))
        }
        guard let pool = runtime.pool(h.poolId) else {
            return reject(CInt(CHI_ENOPOOL), "no pool with id \(h.poolId)")
        }
        guard let m = pool.module.method(h.method) else {
            return reject(CInt(CHI_ENOMETHOD), "module \(pool.module.name) has no method \(h.method)")
        }
        guard h.taskSize == m.pointee.task_size else {
            return reject(CInt(CHI_EBADTASK), "method \(h.method) of \(pool.module.name) has a \(m.pointee.task_size)-byte task here, \(h.taskSize) there: module versions differ")
        }
        // A container that moved away is forwarded to where this node's map says it is, unless
        // that is the sender (two maps that disagree must not bounce a task between them). A
        // primary's copy for a backup goes to this node's backup of the container.
        let replica = h.isReplica
        guard Int(h.container) < pool.containers.count,
              replica ? pool.containers[Int(h.container)].shadow != nil
                  : pool.containers[Int(h.container)].node == map.selfId || pool.containers[Int(h.container)].node != c.peerNode
        else {
            return reject(CInt(CHI_ENOCONTAINER), "container \(h.container) of pool \(pool.name) is not here")
        }
        let size = UInt64(m.pointee.task_size)
        guard let block = runtime.sharedTasks.take(Int(size)) else {
            return reject(CInt(CHI_EBADTASK), "a task of \(size) bytes exceeds runtime.max_task_size here")
        }
        let raw = UnsafeMutableRawPointer(block.task)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: Int(size))
        let bulks: [(field: Int, off: UInt64, size: UInt64)]
        do {
            let held = chi_load64(c.bulkBytes)
            bulks = try TaskCodec.decodeRequestFields(&body, into: raw, m, segment: runtime.segment, slab: runtime.slab,
                                                      maxBulk: maxBulk, budget: connectionBudget &- min(held, connectionBudget),
                                                      replica: replica)
        } catch let e as ChiError {
            PrivateTaskPool.give(block)
            if e.code == EMSGSIZE || e.code == ENOBUFS { count(.refusedBulk) }
            return reject(e.code, e.message)
        } catch {
            PrivateTaskPool.give(block)
            throw error
        }
        let t = raw.assumingMemoryBound(to: chi_task_t.self)
        t.pointee.size = UInt32(size)
        t.pointee.method = h.method
        t.pointee.pool_id = h.poolId
        t.pointee.task_id = h.reqId
        t.pointee.dom_query = chi_dq_direct_id(UInt32(CHI_SUBDOMAIN_GLOBAL_CONTAINERS), UInt64(h.container))
        t.pointee.prio = h.prio
        t.pointee.flags = h.flags & ~UInt32(CHI_TASK_PERIODIC | CHI_TASK_FIRE_AND_FORGET)
        t.pointee.lane_hash = h.laneHash
        let inc = RemoteIncoming(conn: c, reqId: h.reqId, block: block, bulks: bulks)
        inc.seq = h.seq
        if !bulks.isEmpty { _ = chi_add64(c.bulkBytes, inc.bulkTotal) }
        let n = chi_add64(c.inflight, 1) &+ 1
        if n >= Self.maxInflight { c.setReading(false) }
        let target = pool.containers[Int(h.container)]
        submit(inc, container: replica ? target.shadow! : target)
    }

    /// Hands a request to the worker that owns its container's first lane (any worker
    /// routes it correctly; this one usually saves a hop).
    func submit(_ inc: RemoteIncoming, container: Container) {
        let w = container.lanes.first?.worker ?? runtime.workers[0]
        w.post(.remoteSubmit, inc)
    }

    /// A reply arrived: write the outputs into the original task and let its worker finish it.
    func handleReply(_ body: inout ByteBuffer, from c: Connection) throws {
        let p = peer(c.peerNode)
        let h = try TaskCodec.readReplyHeader(&body)
        HopTrace.note("replied", tls: tls != nil, origin: map.selfId, dest: p.id, reqId: h.reqId)
        guard let e = p.lock.withLock({ p.pending.removeValue(forKey: h.reqId) }) else {
            return // it timed out already
        }
        let r = e.record
        var rc = CInt(h.rc)
        // A backup's reply carries its status only: the task keeps the primary's outputs.
        if let m = r.method, !r.backupInFlight, !(rc < 0 && body.readableBytes == 0) {
            do {
                let owner = r.bulkOwner
                try TaskCodec.decodeReplyFields(&body, into: r.task, m) { runtime.resolveBulk($0, $1, owner: owner) }
            } catch {
                rc = -error.code
                r.errorMessage = "reply from \(map.describe(p.id)): \(error.message)"
            }
        }
        if rc < 0 && !h.message.isEmpty && r.errorMessage == nil { r.errorMessage = h.message }
        r.task.pointee.rc = rc
        finish(r, worker: e.worker)
    }

    /// Completes a record whose reply arrived. A plain task is finished here, on the network
    /// thread, which saves waking its worker on the way back; copies of a broadcast and
    /// periodic tasks go back to their worker, which owns their bookkeeping.
    func finish(_ r: TaskRecord, worker: Int) {
        let w = runtime.workers[worker]
        guard r.parent == nil, r.remote == nil, !r.isPeriodic, !r.backupInFlight, let pool = r.pool else {
            w.post(.remoteDone, r)
            return
        }
        pool.inflightAdd(pool.networkSlot, -1)
        runtime.finish(r, thread: runtime.workers.count)
        w.post(.recycle, r)
    }

    // MARK: Catalog

    /// The pools of this node (all but admin), for a peer that (re)joins.
    func catalogFrame() -> ByteBuffer {
        var b = ByteBuffer.frame(.catalog, capacity: 256)
        let pools = runtime.livePools().filter { $0.id != Runtime.adminPoolId }
        b.writeInteger(UInt32(pools.count))
        for p in pools {
            b.writeInteger(p.id)
            // The replica count in the high 16 bits, as the admin task carries it.
            b.writeInteger(UInt32(p.containersPerNode | (p.replicas << 16)))
            for s in [p.module.name, p.name] {
                b.writeInteger(UInt16(s.utf8.count))
                b.writeString(s)
            }
            b.writeInteger(UInt32(p.createParams.count))
            b.writeBytes(p.createParams)
            // Containers that moved (MigrateContainer): where they are, under which version.
            let moved = p.containers.filter { $0.placementVersion > 0 }
            b.writeInteger(UInt32(moved.count))
            for c in moved {
                b.writeInteger(c.id)
                b.writeInteger(c.node)
                b.writeInteger(c.placementVersion)
            }
        }
        // Then the tombstones (destroyed pools), which a reader of an older catalog ignores.
        let gone = runtime.tombstoneList()
        b.writeInteger(UInt32(gone.count))
        for t in gone {
            b.writeInteger(t.id)
            b.writeInteger(UInt16(t.name.utf8.count))
            b.writeString(t.name)
        }
        b.endFrame()
        return b
    }


    /// Creates the pools a peer has and this node lacks, each through a CreatePool task on
    /// the local admin container (module hooks run on workers, never on this thread). A pool
    /// either side knows as destroyed (a tombstone) is not created, and a tombstone the peer
    /// sends destroys this node's copy: a stale catalog never brings a destroyed pool back.
    /// With etcd (`cluster.metadata`) pools come from the store alone.
    func mergeCatalog(_ body: inout ByteBuffer, from c: Connection) throws {
        let p = peer(c.peerNode)
        let n: UInt32 = try body.readInt("pool count")
        guard n <= 65536 else { throw FrameError.malformed("catalog of \(n) pools") }
        var entries: [(id: UInt64, cpn: UInt32, names: [String], params: [UInt8],
                       moved: [(container: UInt32, node: UInt32, version: UInt32)])] = []
        for _ in 0..<n {
            let id: UInt64 = try body.readInt("pool id")
            let cpn: UInt32 = try body.readInt("containers per node")
            var names: [String] = []
            for what in ["module", "pool name"] {
                let len: UInt16 = try body.readInt("\(what) length")
                let s = try body.readExactly(Int(len), what)
                names.append(String(decoding: s.readableBytesView, as: UTF8.self))
            }
            let plen: UInt32 = try body.readInt("parameter length")
            let params = Array(try body.readExactly(Int(plen), "parameters").readableBytesView)
            let nmoved: UInt32 = try body.readInt("moved containers")
            guard nmoved <= 1 << 20 else { throw FrameError.malformed("catalog with \(nmoved) moved containers") }
            var moved: [(container: UInt32, node: UInt32, version: UInt32)] = []
            for _ in 0..<nmoved {
                let c: UInt32 = try body.readInt("container"), n: UInt32 = try body.readInt("node")
                let v: UInt32 = try body.readInt("placement version")
                guard n >= 1 && Int(n) <= map.count else { throw FrameError.malformed("container \(c) placed on node \(n)") }
                moved.append((c, n, v))
            }
            entries.append((id, cpn, names, params, moved))
        }
        if body.readableBytes > 0 {
            let nt: UInt32 = try body.readInt("tombstone count")
            guard nt <= 1 << 20 else { throw FrameError.malformed("catalog with \(nt) tombstones") }
            for _ in 0..<nt {
                let id: UInt64 = try body.readInt("tombstone id")
                let len: UInt16 = try body.readInt("tombstone name length")
                let s = try body.readExactly(Int(len), "tombstone name")
                let name = String(decoding: s.readableBytesView, as: UTF8.self)
                if runtime.noteTombstone(id, name: name) {
                    Log.info("remote: pool \"\(name)\" (id \(id)) was destroyed while this node was away (\(map.describe(p.id))'s catalog); destroying it here")
                    destroyFromCatalog(id: id)
                }
            }
        }
        for e in entries {
            if let pool = runtime.pool(e.id) {
                runtime.learnPlacement(pool, e.moved, from: p.id)
                continue
            }
            guard runtime.config.cluster.metadata == .embedded, !runtime.isTombstone(e.id) else { continue }
            runtime.notePlacement(e.id, e.moved)
            createFromCatalog(id: e.id, module: e.names[0], name: e.names[1], perNode: e.cpn, params: e.params, from: p.id)
        }
        p.synced = true
    }

    /// Destroys pool `id` on this node only, through a DestroyPool task on the local admin
    /// container (the destroy waits for tasks to drain: a worker's job, not this thread's).
    /// Any thread.
    func destroyFromCatalog(id: UInt64) {
        let size = MemoryLayout<chi_admin_destroy_pool_task_t>.size
        guard let block = runtime.sharedTasks.take(size) else { return }
        let raw = UnsafeMutableRawPointer(block.task)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        let t = raw.assumingMemoryBound(to: chi_admin_destroy_pool_task_t.self)
        t.pointee.pool_id = id
        t.pointee.hdr.size = UInt32(size)
        t.pointee.hdr.method = UInt32(CHI_ADMIN_DESTROY_POOL)
        t.pointee.hdr.pool_id = Runtime.adminPoolId
        t.pointee.hdr.dom_query = chi_dq_local_id(UInt32(CHI_SUBDOMAIN_LOCAL_CONTAINERS), 0)
        guard let admin = runtime.pool(Runtime.adminPoolId)?.local.first else {
            PrivateTaskPool.give(block)
            return
        }
        // Start-up waits for it as for the creates: a node serves without the destroyed pool.
        _ = chi_add32(catalogJobs, 1)
        let inc = RemoteIncoming(conn: nil, reqId: 0, block: block, bulks: []) { [self] rc, msg in
            if rc < 0 && -rc != CInt(CHI_ENOPOOL) {
                Log.warn("remote: destroying pool \(id), destroyed elsewhere: \(msg ?? ChiError.describe(rc))")
            }
            _ = chi_sub32(self.catalogJobs, 1)
        }
        submit(inc, container: admin)
    }

    func createFromCatalog(id: UInt64, module: String, name: String, perNode: UInt32,
                                   params: [UInt8], from node: UInt32) {
        let size = MemoryLayout<chi_admin_create_pool_task_t>.size
        guard id > 0, id < UInt64(Runtime.maxPools),
              module.utf8.count < Int(CHI_NAME_MAX), name.utf8.count < Int(CHI_NAME_MAX),
              let block = runtime.sharedTasks.take(size)
        else { return }
        let raw = UnsafeMutableRawPointer(block.task)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        let t = raw.assumingMemoryBound(to: chi_admin_create_pool_task_t.self)
        var bulks: [(field: Int, off: UInt64, size: UInt64)] = []
        if !params.isEmpty {
            guard let poff = try? runtime.slab.allocate(UInt64(params.count), kind: UInt32(CHI_MEM_BUFFER)) else {
                PrivateTaskPool.give(block)
                return
            }
            (runtime.segment.base + Int(poff)).copyMemory(from: params, byteCount: params.count)
            t.pointee.params = chi_shm_ptr_t(segment: 0, reserved: 0, offset: poff)
            t.pointee.params_size = UInt32(params.count)
            bulks.append((4, poff, UInt64(params.count)))
        }
        withUnsafeMutableBytes(of: &t.pointee.module) { $0.copyBytes(from: module.utf8) }
        withUnsafeMutableBytes(of: &t.pointee.name) { $0.copyBytes(from: name.utf8) }
        t.pointee.containers_per_node = perNode
        t.pointee.pool_id = id
        t.pointee.hdr.size = UInt32(size)
        t.pointee.hdr.method = UInt32(CHI_ADMIN_CREATE_POOL)
        t.pointee.hdr.pool_id = Runtime.adminPoolId
        t.pointee.hdr.dom_query = chi_dq_local_id(UInt32(CHI_SUBDOMAIN_LOCAL_CONTAINERS), 0)
        _ = chi_add32(catalogJobs, 1)
        count(.catalogPools)
        let desc = map.describe(node)
        let inc = RemoteIncoming(conn: nil, reqId: 0, block: block, bulks: bulks) { [self] rc, msg in
            if rc < 0 { Log.warn("remote: pool \"\(name)\" (id \(id)) from \(desc)'s catalog: \(msg ?? ChiError.describe(rc))") }
            _ = chi_sub32(self.catalogJobs, 1)
        }
        guard let admin = runtime.pool(Runtime.adminPoolId)?.local.first else { return }
        submit(inc, container: admin)
    }

    // MARK: Statistics

    /// Each peer's state, for statistics and `chimaera cluster status`.
    func peerStates() -> [(id: UInt32, host: String, state: String, pending: Int, reason: String)] {
        peers.map { p in
            if p.id == map.selfId { return (p.id, "\(p.host.host):\(p.host.port)", "self", 0, "") }
            return p.lock.withLock {
                let s: String
                switch p.state {
                case .idle: s = "idle"
                case .connecting: s = "connecting"
                case .up: s = "up"
                case .down: s = "down"
                }
                return (p.id, "\(p.host.host):\(p.host.port)", s, p.pending.count, p.state == .down ? p.downReason : "")
            }
        }
    }
}
