import CChimaera
import Glibc

// Hot module upgrade (UpgradeModule, chi_module_upgrade).
//
// Every pool of the module is plugged: its gate (RuntimePool.gate) goes to `nested`, so new
// client tasks wait in the workers that route them (Worker+Plug.swift) and lanes run only
// subtasks, letting what runs finish in the old code. Once no fiber of any worker is inside a
// task of those pools, the gate closes (nothing of the pools starts or is routed) and the new
// version's `upgrade` hook builds each container's new state from the old. Commit swaps code
// and state, hands the new pollers to the workers and opens the gate; the workers then route
// what they held, in order. The old code is never unloaded and the old states are freed by the
// old `destroy` after the swap; an abort frees the new states with the new `destroy` and
// opens the gate on the old code and state, untouched.
//
// In a cluster the node a client asked coordinates two phases: every node prepares (loads,
// plugs, drains, builds the new states), and only if all did does every node commit;
// otherwise every prepared node aborts. A prepared node that hears nothing for 30 s aborts on
// its own.

/// Upgrades under way, by module, and prepared ones awaiting their commit (from another node).
final class UpgradeTable: @unchecked Sendable {
    private var lock = pthread_mutex_t()
    private var busy: Set<String> = []
    private var parked: [UInt64: PreparedUpgrade] = [:]
    private var nextId: UInt64 = 1

    init() { pthread_mutex_init(&lock, nil) }

    /// Marks `module` as being upgraded; false if it already is.
    func claim(_ module: String) -> Bool {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return busy.insert(module).inserted
    }

    func release(_ module: String) {
        pthread_mutex_lock(&lock)
        busy.remove(module)
        pthread_mutex_unlock(&lock)
    }

    func isBusy(_ module: String) -> Bool {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return busy.contains(module)
    }

    /// Keeps a prepared upgrade until its commit or abort arrives; returns its id.
    func park(_ p: PreparedUpgrade) -> UInt64 {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        let id = nextId
        nextId += 1
        parked[id] = p
        return id
    }

    /// Takes a parked upgrade (once: a commit and the watchdog's abort cannot both have it).
    func take(_ id: UInt64) -> PreparedUpgrade? {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return parked.removeValue(forKey: id)
    }
}

/// One node's upgrade of one module, prepared: every container plugged and drained, the new
/// states built, nothing swapped yet.
final class PreparedUpgrade: @unchecked Sendable {
    let name: String
    let old: Module
    let new: Module
    let pools: [RuntimePool]
    var newStates: [(container: Container, state: UnsafeMutableRawPointer?, pollers: [Poller])] = []
    /// When the pools were plugged.
    var pluggedAt: UInt64 = 0

    init(name: String, old: Module, new: Module, pools: [RuntimePool]) {
        self.name = name
        self.old = old
        self.new = new
        self.pools = pools
    }
}

/// What an upgrade did, for the caller's report.
struct UpgradeOutcome {
    var oldVersion: UInt32 = 0
    var newVersion: UInt32 = 0
    /// Per container: pool, container id, node, pause in ns.
    var pauses: [(pool: String, container: UInt32, node: UInt32, ns: UInt64)] = []

    var pauseMax: UInt64 { pauses.map(\.ns).max() ?? 0 }

    func json(module: String, limit: Int) -> String {
        var s = "{\"module\":\"\(module)\",\"old_version\":\(oldVersion),\"new_version\":\(newVersion)"
        s += ",\"containers\":\(pauses.count),\"pause_us_max\":\(Double(pauseMax) / 1000),\"pauses\":["
        var first = true
        for p in pauses {
            let e = "{\"pool\":\"\(p.pool)\",\"container\":\(p.container),\"node\":\(p.node),\"pause_us\":\(Double(p.ns) / 1000)}"
            // The report has a fixed room in the task: what does not fit is summarised.
            if s.utf8.count + e.utf8.count + 32 > limit { s += (first ? "" : ",") + "\"...\""; break }
            s += (first ? "" : ",") + e
            first = false
        }
        return s + "]}"
    }
}

extension Runtime {
    static let upgradeDrainNs: UInt64 = 10_000_000_000
    static let upgradeParkNs: UInt64 = 30_000_000_000

    /// The admin method. Phase 0: a client's request (all nodes, two phases); 1, 2, 3: one
    /// node's share of another node's request (prepare, commit, abort).
    func upgradeService(_ t: UnsafeMutablePointer<chi_admin_upgrade_module_task_t>, record r: TaskRecord) throws(ChiError) {
        // Read once, into runtime memory (the task is the runtime's copy; still, once).
        let name = withUnsafeBytes(of: &t.pointee.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let path = withUnsafeBytes(of: &t.pointee.path) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let flags = t.pointee.flags
        let phase = t.pointee.phase
        var out = UpgradeOutcome()
        switch phase {
        case 0:
            out = try upgradeEverywhere(name, path: path, flags: flags)
        case 1, 2, 3:
            guard r.remote != nil else {
                throw ChiError(EPERM, "UpgradeModule phase \(phase) is for the runtime's own use between nodes")
            }
            if phase == 1 {
                let p = try prepareUpgrade(name, path: path, flags: flags)
                let id = upgrades.park(p)
                t.pointee.upgrade_id = id
                watchPrepared(id)
                out.oldVersion = p.old.version
                out.newVersion = p.new.version
            } else {
                guard let p = upgrades.take(t.pointee.upgrade_id) else {
                    throw ChiError(ENOENT, "no prepared upgrade \(t.pointee.upgrade_id) on \(cluster.describe(nodeId)) (it timed out?)")
                }
                out.oldVersion = p.old.version
                out.newVersion = p.new.version
                if phase == 2 { out.pauses = commitUpgrade(p) } else { abortUpgrade(p, why: "the coordinator aborted") }
            }
        default:
            throw ChiError(EINVAL, "UpgradeModule phase \(phase) is not 0...3")
        }
        t.pointee.old_version = out.oldVersion
        t.pointee.new_version = out.newVersion
        t.pointee.containers = UInt32(out.pauses.count)
        t.pointee.pause_ns_max = out.pauseMax
        let json = out.json(module: name, limit: Int(CHI_UPGRADE_REPORT_MAX))
        withUnsafeMutableBytes(of: &t.pointee.report) { b in
            let bytes = json.utf8.prefix(b.count - 1)
            b.copyBytes(from: bytes)
            b[bytes.count] = 0
        }
    }

    /// A client's upgrade: this node alone, or every node in two phases.
    private func upgradeEverywhere(_ name: String, path: String, flags: UInt32) throws(ChiError) -> UpgradeOutcome {
        let local = try prepareUpgrade(name, path: path, flags: flags)
        var out = UpgradeOutcome(oldVersion: local.old.version, newVersion: local.new.version)
        guard cluster.isMultiNode else {
            out.pauses = commitUpgrade(local)
            return out
        }
        func fill(_ t: UnsafeMutablePointer<chi_admin_upgrade_module_task_t>, phase: UInt32, id: UInt64) {
            withUnsafeMutableBytes(of: &t.pointee.name) { $0.copyBytes(from: name.utf8.prefix(Int(CHI_NAME_MAX) - 1)) }
            withUnsafeMutableBytes(of: &t.pointee.path) { $0.copyBytes(from: path.utf8.prefix(Int(CHI_PATH_MAX) - 1)) }
            t.pointee.flags = flags
            t.pointee.phase = phase
            t.pointee.upgrade_id = id
        }
        var prepared: [(node: UInt32, id: UInt64)] = []
        var failure: ChiError?
        for node in cluster.others {
            var id: UInt64 = 0
            let res = adminOnNodes([node], method: UInt32(CHI_ADMIN_UPGRADE_MODULE),
                                   type: chi_admin_upgrade_module_task_t.self, bulk: nil) { t, _ in
                fill(t, phase: 1, id: 0)
            } read: { t in id = t.pointee.upgrade_id }
            if let x = res.first, x.rc < 0 {
                failure = ChiError(-x.rc, "UpgradeModule \(name) on node \(node): \(x.message ?? ChiError.describe(x.rc))")
                break
            }
            prepared.append((node, id))
        }
        if let failure {
            for p in prepared {
                _ = adminOnNodes([p.node], method: UInt32(CHI_ADMIN_UPGRADE_MODULE),
                                 type: chi_admin_upgrade_module_task_t.self, bulk: nil) { t, _ in
                    fill(t, phase: 3, id: p.id)
                }
            }
            abortUpgrade(local, why: failure.message)
            throw failure
        }
        out.pauses = commitUpgrade(local)
        var lost: [String] = []
        for p in prepared {
            var n: UInt32 = 0
            var pause: UInt64 = 0
            let res = adminOnNodes([p.node], method: UInt32(CHI_ADMIN_UPGRADE_MODULE),
                                   type: chi_admin_upgrade_module_task_t.self, bulk: nil) { t, _ in
                fill(t, phase: 2, id: p.id)
            } read: { t in
                n = t.pointee.containers
                pause = t.pointee.pause_ns_max
            }
            if let x = res.first, x.rc < 0 {
                lost.append("node \(p.node): \(x.message ?? ChiError.describe(x.rc))")
                continue
            }
            // Another node reports its longest pause; its containers are listed under it.
            for c in 0..<n { out.pauses.append(("", c, p.node, pause)) }
        }
        if !lost.isEmpty {
            // Every node prepared, so none refused; a commit that did not arrive leaves that node
            // on the old code until its watchdog aborts. Say so rather than pretend.
            throw ChiError(CInt(CHI_ENODE), "UpgradeModule \(name): committed here, but the commit did not reach \(lost.joined(separator: "; "))")
        }
        return out
    }

    /// Aborts a parked upgrade that no commit reached in time.
    private func watchPrepared(_ id: UInt64) {
        let runtime = Unmanaged.passRetained(self)
        var th = pthread_t()
        let box = Unmanaged.passRetained(WatchArgs(runtime: runtime, id: id)).toOpaque()
        let rc = pthread_create(&th, nil, { arg in
            let a = Unmanaged<WatchArgs>.fromOpaque(arg!).takeRetainedValue()
            let rt = a.runtime.takeRetainedValue()
            let deadline = chi_now_ns() &+ Runtime.upgradeParkNs
            while chi_now_ns() < deadline && !rt.isStopping { usleep(50_000) }
            if let p = rt.upgrades.take(a.id) {
                rt.abortUpgrade(p, why: "no commit arrived within \(Runtime.upgradeParkNs / 1_000_000_000) s")
            }
            return nil
        }, box)
        if rc == 0 { pthread_detach(th) } else {
            Unmanaged<WatchArgs>.fromOpaque(box).release()
            runtime.release()
        }
    }

    /// Loads, checks, plugs, drains and builds the new states: everything but the swap.
    func prepareUpgrade(_ name: String, path: String, flags: UInt32) throws(ChiError) -> PreparedUpgrade {
        guard name != String(cString: CHI_ADMIN_MODULE_NAME) else {
            throw ChiError(EPERM, "the admin module cannot be upgraded in place; restart the runtime")
        }
        guard let old = loader.loaded(name) else {
            throw ChiError(CInt(CHI_ENOMODULE), "module \(name) is not loaded on \(cluster.describe(nodeId)): register it first")
        }
        guard old.worch == nil else {
            throw ChiError(EINVAL, "module \(name) is a work orchestrator; switch policies with SetWorkOrchestrator")
        }
        guard upgrades.claim(name) else {
            throw ChiError(EBUSY, "module \(name) is already being upgraded")
        }
        var claimed = true
        defer { if claimed { upgrades.release(name) } }
        guard let file = path.isEmpty ? loader.find(name) : path else {
            throw ChiError(CInt(CHI_ENOMODULE), "module \(name): no lib\(name).so on the search path")
        }
        let new = try loader.loadCandidate(name, path: file)
        // Refusals before any hook ran: the candidate is unloaded.
        guard new.version > old.version || flags & UInt32(CHI_UPGRADE_FORCE) != 0 else {
            new.close()
            throw ChiError(CInt(CHI_EVERSION), "module \(name): \(file) is version \(new.version), not newer than the loaded \(old.version) (force to accept it)")
        }
        let recreate = flags & UInt32(CHI_UPGRADE_RECREATE) != 0
        guard new.vtable.upgrade != nil || recreate else {
            new.close()
            throw ChiError(ENOTSUP, "module \(name) version \(new.version) has no upgrade hook; ask for a fresh create (recreate) to lose the containers' state")
        }
        guard recreate || new.vtable.create != nil || new.vtable.upgrade != nil else {
            new.close()
            throw ChiError(EINVAL, "module \(name) version \(new.version) has neither create nor upgrade")
        }
        let pools = livePools().filter { $0.moduleRef.is(old) }
        let p = PreparedUpgrade(name: name, old: old, new: new, pools: pools)
        loader.keep(new)
        p.pluggedAt = try plugAndDrain(pools, what: "module \(name)")
        // The new states, built in the new code from the old states (read-only).
        for pool in pools {
            for c in pool.local {
                c.rebuilding = true
                c.collectingPollers = true
                c.pendingPollers = []
                var state: UnsafeMutableRawPointer?
                var rc: CInt
                if let up = new.vtable.upgrade, !recreate {
                    rc = up(c.handle, c.state, old.version, &state)
                } else if let create = new.vtable.create {
                    rc = pool.createParams.withUnsafeBytes { b in
                        create(c.handle, b.baseAddress, UInt32(b.count), &state)
                    }
                } else {
                    rc = 0
                }
                c.rebuilding = false
                c.collectingPollers = false
                let pollers = c.pendingPollers
                c.pendingPollers = []
                if rc < 0 {
                    if let destroy = new.vtable.destroy, state != nil { destroy(c.handle, state) }
                    let why = "module \(name) version \(new.version): upgrade of container \(c.id) of pool \"\(pool.name)\" on \(cluster.describe(nodeId)) failed: \(ChiError.describe(rc))"
                    abortUpgrade(p, why: why, release: false)
                    throw ChiError(-rc, why)
                }
                p.newStates.append((c, state, pollers))
            }
        }
        claimed = false
        return p
    }

    /// Plugs `pools` and waits until none of their tasks runs; leaves them closed and returns
    /// when they were plugged. On a timeout they are opened again.
    func plugAndDrain(_ pools: [RuntimePool], what: String) throws(ChiError) -> UInt64 {
        let pluggedAt = chi_now_ns()
        let deadline = pluggedAt &+ Self.upgradeDrainNs
        setGates(pools, RuntimePool.Gate.nested)
        // After the barrier no worker is half-way through routing a task past the open gate.
        while true {
            guard let running = askWorkers({ w in pools.contains { w.runsTask(of: $0) } }, deadline: deadline) else {
                break
            }
            if running {
                if chi_now_ns() >= deadline { break }
                yieldCurrent()
                continue
            }
            setGates(pools, RuntimePool.Gate.closed)
            // A subtask may have started between the answer and the close: ask again.
            guard let again = askWorkers({ w in pools.contains { w.runsTask(of: $0) } }, deadline: deadline) else {
                break
            }
            if !again { return pluggedAt }
            setGates(pools, RuntimePool.Gate.nested)
        }
        unplug(pools)
        throw ChiError(ETIMEDOUT, "\(what): tasks of its pools still ran after \(Self.upgradeDrainNs / 1_000_000_000) s plugged; nothing was changed")
    }

    /// Swaps code and state, hands over the pollers, unplugs; the old states are freed after.
    /// Returns each container's pause.
    func commitUpgrade(_ p: PreparedUpgrade) -> [(pool: String, container: UInt32, node: UInt32, ns: UInt64)] {
        var oldStates: [(Container, UnsafeMutableRawPointer?)] = []
        var hadPollers = false
        stateLock.withLock {
            for (c, state, pollers) in p.newStates {
                oldStates.append((c, c.state))
                hadPollers = hadPollers || !c.pollers.isEmpty
                c.state = state
                c.pollers = pollers
            }
            for pool in p.pools { pool.setModule(p.new) }
        }
        loader.replace(p.name, with: p.new)
        // The old pollers go, then the new ones come: each worker's messages are in order.
        let pools = p.pools
        let drop = WorkerCall { w in w.pollers.removeAll { q in pools.contains { $0 === q.pool } } }
        for w in workers { w.post(.call, drop) }
        for (c, _, pollers) in p.newStates where !pollers.isEmpty {
            var owners: [Worker] = []
            for l in c.lanes where !owners.contains(where: { $0 === l.worker }) { owners.append(l.worker) }
            for w in owners { for q in pollers { w.post(.addPoller, q) } }
        }
        unplug(p.pools)
        let end = chi_now_ns()
        // A worker may be calling an old poller until it has taken the drop: wait for every
        // worker to pass a barrier after it before the old states go.
        let safe = !hadPollers || askWorkers({ _ in false }, deadline: chi_now_ns() &+ Self.upgradeDrainNs) != nil
        if let destroy = p.old.vtable.destroy, safe {
            for (c, s) in oldStates where s != nil { destroy(c.handle, s) }
        } else if !safe {
            Log.warn("module \(p.name): the old version's states are kept: a worker did not drop their pollers in time")
        }
        upgrades.release(p.name)
        let pause = end &- p.pluggedAt
        Log.info("module \(p.name) upgraded from version \(p.old.version) to \(p.new.version) on \(cluster.describe(nodeId)): \(p.newStates.count) containers of \(p.pools.count) pools, paused \(pause / 1000) us")
        return p.newStates.map { ($0.container.pool.name, $0.container.id, nodeId, pause) }
    }

    /// Drops the new states and opens the pools on the old code and state.
    func abortUpgrade(_ p: PreparedUpgrade, why: String, release: Bool = true) {
        if let destroy = p.new.vtable.destroy {
            for (c, s, _) in p.newStates where s != nil { destroy(c.handle, s) }
        }
        p.newStates = []
        unplug(p.pools)
        if release { upgrades.release(p.name) }
        Log.warn("module \(p.name): upgrade to version \(p.new.version) abandoned on \(cluster.describe(nodeId)), version \(p.old.version) serves on: \(why)")
    }

    func setGates(_ pools: [RuntimePool], _ g: UInt32) {
        for pool in pools { chi_store32(pool.gate, g) }
    }

    /// Opens the gates and has every worker route what it held.
    func unplug(_ pools: [RuntimePool]) {
        setGates(pools, RuntimePool.Gate.open)
        let release = WorkerCall { $0.releaseHeld() }
        for w in workers { w.post(.call, release) }
    }

    /// Runs `query` on every worker's thread and answers whether any said yes; nil if not all
    /// answered by `deadline`. Doubles as a barrier: every worker has finished what it was
    /// doing when the call was posted.
    func askWorkers(_ query: @escaping (Worker) -> Bool, deadline: UInt64) -> Bool? {
        let tally = Tally()
        let call = WorkerCall { w in
            if query(w) { _ = chi_add32(tally.yes, 1) }
            _ = chi_add32(tally.answered, 1)
        }
        for w in workers { w.post(.call, call) }
        while chi_load32(tally.answered) < UInt32(workers.count) {
            if chi_now_ns() >= deadline { return nil }
            yieldCurrent()
        }
        return chi_load32(tally.yes) != 0
    }
}

private final class WatchArgs {
    let runtime: Unmanaged<Runtime>
    let id: UInt64
    init(runtime: Unmanaged<Runtime>, id: UInt64) {
        self.runtime = runtime
        self.id = id
    }
}

/// Answers collected from the workers (kept alive by the call that writes them).
private final class Tally {
    let answered = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    let yes = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    init() {
        answered.initialize(to: 0)
        yes.initialize(to: 0)
    }
    deinit {
        answered.deallocate()
        yes.deallocate()
    }
}
