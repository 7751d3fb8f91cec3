import CChimaera
import Glibc

/// Runs the work-orchestration policy (a module with `worch` hooks, chimaera/worch.h).
///
/// While any worker is awake it wakes every `period`, takes a snapshot of the workers' and
/// lanes' load, asks the policy for lane moves and sends each to the lane's owner, which
/// carries it out by messages (Worker+Lanes). When every worker sleeps it sleeps too, until a
/// worker wakes: an idle runtime costs nothing here. When several ticks in a row move
/// nothing, the period doubles (up to 16 times), so a balanced runtime with many lanes spends
/// little on looking. It also asks the policy where a new client's rings go.
final class Orchestrator: @unchecked Sendable {
    private let runtimeRef: Ref<Runtime>
    private var runtime: Runtime { runtimeRef.o }
    /// Every call into the policy holds it (the registry thread asks too).
    private let lock = Mutex()
    private(set) var module: Module?
    private var ops = chi_worch_ops_t()
    private var state: UnsafeMutableRawPointer?
    private var thread = pthread_t()
    private var running = false
    private let stopFlag = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    /// Bumped (and futex-woken, when `sleeping`) by a worker that wakes from sleep.
    let activity = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    let sleeping = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    /// What the previous snapshot saw, for the deltas.
    private var prevWorkers: [(busy: UInt64, tasks: UInt64)] = []
    private var prevLanes: [ObjectIdentifier: (busy: UInt64, tasks: UInt64)] = [:]
    private var lastNs: UInt64 = 0
    private var workerLoads: [chi_worker_load_t] = []
    private var laneLoads: [chi_lane_load_t] = []
    private var laneObjects: [Lane] = []
    private var moves: [chi_lane_move_t] = []
    private var idleTicks = 0
    /// Statistics.
    private(set) var ticks: UInt64 = 0
    private(set) var movesAsked: UInt64 = 0

    init(runtime: Runtime) {
        runtimeRef = Ref(runtime)
        stopFlag.initialize(to: 0)
        activity.initialize(to: 0)
        sleeping.initialize(to: 0)
    }

    /// The policy's name.
    var policy: String { lock.withLock { module?.name ?? "none" } }

    /// Switches to the policy module `name` (loaded like any module). Throws, keeping the
    /// current policy, when it cannot be loaded or is not a work orchestrator.
    func use(_ name: String) throws(ChiError) {
        let rt = runtime
        let m = try rt.loader.load(name)
        guard let w = m.worch else {
            throw ChiError(EINVAL, "module \(name) (\(m.path)) is not a work orchestrator: its vtable has no worch hooks")
        }
        var o = chi_worch_ops_t()
        let n = min(Int(w.pointee.size), MemoryLayout<chi_worch_ops_t>.size)
        guard n >= MemoryLayout<chi_worch_ops_t>.offset(of: \.plan)! else {
            throw ChiError(CInt(CHI_EABI), "work orchestrator \(name): its hooks table of \(w.pointee.size) bytes is too small")
        }
        withUnsafeMutableBytes(of: &o) { $0.copyMemory(from: UnsafeRawBufferPointer(start: w, count: n)) }
        let kinds = rt.workers.map { UInt32($0.kind == .lowLatency ? CHI_WORKER_LOW_LATENCY : CHI_WORKER_HIGH_LATENCY) }
        let made = kinds.withUnsafeBufferPointer { o.create?(UInt32(kinds.count), $0.baseAddress) }
        lock.withLock {
            if let d = ops.destroy { d(state) }
            module = m
            ops = o
            state = made
            idleTicks = 0
        }
        Log.debug("work orchestrator: \(name) (\(m.path))")
        wake()
    }

    /// How long between two looks while there is load.
    private var periodNs: UInt64 {
        let ms = UInt64(lock.withLock { ops.period_ms == 0 ? 5 : ops.period_ms })
        return ms * 1_000_000 << UInt64(min(idleTicks / 8, 4))
    }

    // MARK: Thread

    func start() throws(ChiError) {
        let arg = Unmanaged.passUnretained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            Unmanaged<Orchestrator>.fromOpaque(arg!).takeUnretainedValue().loop()
            return nil
        }, arg)
        guard rc == 0 else { throw ChiError(rc, "cannot start the orchestrator thread: \(Sys.errnoText(rc))") }
        running = true
    }

    func stop() {
        guard running else { return }
        running = false
        chi_store32(stopFlag, 1)
        wake()
        pthread_join(thread, nil)
        lock.withLock {
            if let d = ops.destroy { d(state) }
            ops = chi_worch_ops_t()
            state = nil
        }
    }

    private func wake() {
        _ = chi_add32(activity, 1)
        _ = chi_futex_wake(activity, 1)
    }

    /// Called by a worker that woke from sleep: ends the orchestrator's own sleep.
    @inline(__always)
    func workerWoke() {
        if chi_load32_relaxed(sleeping) != 0 {
            _ = chi_add32(activity, 1)
            _ = chi_futex_wake(activity, 1)
        }
    }

    private var everyWorkerAsleep: Bool {
        runtime.workers.allSatisfy { chi_load32($0.doorbellSleeping) != 0 }
    }

    private func loop() {
        chi_thread_name("chi-orchestrate")
        while chi_load32(stopFlag) == 0 {
            if everyWorkerAsleep {
                let seen = chi_load32(activity)
                chi_store32(sleeping, 1)
                chi_fence()
                if everyWorkerAsleep && chi_load32(stopFlag) == 0 {
                    _ = chi_futex_wait(activity, seen, 1_000_000_000)
                }
                chi_store32(sleeping, 0)
                lastNs = 0 // the time asleep is not load
                continue
            }
            var ts = timespec(tv_sec: Int(periodNs / 1_000_000_000), tv_nsec: Int(periodNs % 1_000_000_000))
            nanosleep(&ts, nil)
            if chi_load32(stopFlag) != 0 { break }
            tick()
        }
    }

    // MARK: One look

    private func tick() {
        let rt = runtime
        let now = chi_now_ns()
        let interval = lastNs == 0 ? 0 : now &- lastNs
        lastNs = now
        if prevWorkers.count != rt.workers.count {
            prevWorkers = Array(repeating: (0, 0), count: rt.workers.count)
        }
        workerLoads.removeAll(keepingCapacity: true)
        for w in rt.workers {
            let busy = UInt64(Clock.ns(ticks: w.busyTicks)), tasks = w.tasksRun
            let p = prevWorkers[w.id]
            prevWorkers[w.id] = (busy, tasks)
            var l = chi_worker_load_t()
            l.id = UInt32(w.id)
            l.kind = w.kind == .lowLatency ? CHI_WORKER_LOW_LATENCY : CHI_WORKER_HIGH_LATENCY
            l.busy_ns = busy &- p.busy
            l.tasks_run = tasks &- p.tasks
            l.asleep = chi_load32(w.doorbellSleeping)
            workerLoads.append(l)
        }
        laneLoads.removeAll(keepingCapacity: true)
        laneObjects.removeAll(keepingCapacity: true)
        rt.forEachLivePool { pool in
            for c in pool.local {
                for lane in c.lanes {
                    let busy = UInt64(Clock.ns(ticks: lane.busyTicks)), tasks = lane.tasksRun
                    let key = ObjectIdentifier(lane)
                    let p = prevLanes[key] ?? (busy, tasks)
                    prevLanes[key] = (busy, tasks)
                    var l = chi_lane_load_t()
                    l.pool_id = pool.id
                    l.container = c.id
                    l.lane = UInt32(lane.index)
                    l.worker = UInt32(lane.ownerId)
                    l.prio = lane.prio
                    l.busy_ns = busy &- p.busy
                    l.tasks_run = tasks &- p.tasks
                    l.queued = UInt32(clamping: lane.load)
                    l.moving = lane.ownerId != lane.queueOwnerId || lane.moving ? 1 : 0
                    let w = lane.ownerId
                    workerLoads[w].lanes += 1
                    workerLoads[w].queued &+= l.queued
                    laneLoads.append(l)
                    laneObjects.append(lane)
                }
            }
        }
        if prevLanes.count > 2 * laneLoads.count + 64 {
            // Lanes of destroyed pools: forget them.
            let live = Set(laneObjects.map { ObjectIdentifier($0) })
            prevLanes = prevLanes.filter { live.contains($0.key) }
        }
        guard interval > 0 else { return }
        ticks &+= 1
        let asked = plan(now: now, interval: interval)
        idleTicks = asked > 0 ? 0 : idleTicks + 1
        for m in moves.prefix(asked) {
            let i = Int(m.lane), to = Int(m.to_worker)
            guard i < laneObjects.count, to < rt.workers.count else { continue }
            let lane = laneObjects[i]
            let from = lane.ownerId
            guard from != to, from == lane.queueOwnerId, !lane.moving else { continue }
            movesAsked &+= 1
            rt.workers[from].post(.moveLane, LaneMove(lane: lane, to: to))
        }
    }

    /// Calls the policy's plan; returns how many moves it wrote into `moves`.
    private func plan(now: UInt64, interval: UInt64) -> Int {
        let cap = max(16, laneLoads.count)
        if moves.count < cap { moves = Array(repeating: chi_lane_move_t(), count: cap) }
        return lock.withLock {
            guard let p = ops.plan else { return 0 }
            return workerLoads.withUnsafeBufferPointer { ws in
                laneLoads.withUnsafeBufferPointer { ls in
                    var snap = chi_worch_snapshot_t()
                    snap.size = UInt32(MemoryLayout<chi_worch_snapshot_t>.size)
                    snap.nworkers = UInt32(ws.count)
                    snap.now_ns = now
                    snap.interval_ns = interval
                    snap.workers = ws.baseAddress
                    snap.lanes = ls.baseAddress
                    snap.nlanes = UInt32(ls.count)
                    let n = moves.withUnsafeMutableBufferPointer { p(state, &snap, $0.baseAddress, UInt32(cap)) }
                    return n < 0 ? 0 : min(Int(n), cap)
                }
            }
        }
    }

    /// The workers for a new client's `nrings` rings, as the policy chooses (nil: the default).
    func placeClient(slot: Int, nrings: Int) -> [Int]? {
        let rt = runtime
        var ws = rt.workers.map { w -> chi_worker_load_t in
            var l = chi_worker_load_t()
            l.id = UInt32(w.id)
            l.kind = w.kind == .lowLatency ? CHI_WORKER_LOW_LATENCY : CHI_WORKER_HIGH_LATENCY
            l.asleep = chi_load32(w.doorbellSleeping)
            return l
        }
        return lock.withLock { () -> [Int]? in
            guard let place = ops.place_client else { return nil }
            var out = [UInt32](repeating: 0, count: nrings)
            let rc = ws.withUnsafeMutableBufferPointer { wp in
                var snap = chi_worch_snapshot_t()
                snap.size = UInt32(MemoryLayout<chi_worch_snapshot_t>.size)
                snap.nworkers = UInt32(wp.count)
                snap.now_ns = chi_now_ns()
                snap.workers = UnsafePointer(wp.baseAddress)
                return out.withUnsafeMutableBufferPointer { place(state, &snap, UInt32(slot), UInt32(nrings), $0.baseAddress) }
            }
            guard rc == 0, out.allSatisfy({ Int($0) < rt.workers.count }) else { return nil }
            return out.map { Int($0) }
        }
    }
}
