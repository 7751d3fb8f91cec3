import CChimaera

/// A closure for a worker to run on its own thread, between tasks (the `.call` message): how
/// the runtime changes what only a worker may touch (its pollers, its held tasks) and how it
/// learns that every worker has passed a point (a barrier).
final class WorkerCall {
    let body: (Worker) -> Void
    init(_ body: @escaping (Worker) -> Void) { self.body = body }
}

/// A replica step held while its pool's gate is closed (see `Worker.heldSteps`).
enum HeldStep {
    case aggregate(Ref<TaskRecord>)
    case redispatch(Ref<TaskRecord>, Ref<Container>)
}

/// Tasks held back while their pool is plugged for a hot upgrade (Runtime+Upgrade.swift).
///
/// A worker that routes a client's task (depth 0) of a plugged pool keeps it, in arrival
/// order, instead of queueing it on a lane; once the pool opens again, the worker routes what
/// it holds, oldest first, before anything newer (while it holds tasks of a pool, new client
/// tasks of that pool wait behind them, so a client's tasks keep their order). Subtasks pass a
/// gate that is only nested, so that the tasks already running can finish; other pools'
/// tasks are never held.
extension Worker {
    /// Whether `r`, about to be routed to `pool`, must wait.
    @inline(__always)
    func mustHold(_ r: TaskRecord, _ pool: RuntimePool) -> Bool {
        let g = chi_load32(pool.gate)
        if g == RuntimePool.Gate.open && heldCount == 0 { return false }
        if g == RuntimePool.Gate.closed { return true }
        if r.depth != 0 { return false }
        return g != RuntimePool.Gate.open || heldPools.contains(pool.id)
    }

    func hold(_ r: TaskRecord) {
        held.push(r)
        heldCount += 1
        let id = r.task.pointee.pool_id
        if !heldPools.contains(id) { heldPools.append(id) }
    }

    /// Routes the held tasks of pools that opened again, in the order they came; the rest
    /// (a pool still plugged) stay held, still in order.
    func releaseHeld() {
        releaseHeldSteps()
        guard heldCount > 0 else { return }
        var keep = RecordQueue()
        var kept = 0
        var out: [Ref<TaskRecord>] = []
        while let r = held.pop() { out.append(r) }
        heldCount = 0
        let pools = heldPools
        heldPools.removeAll()
        var stillGated: [UInt64] = []
        for id in pools {
            let gated = rt.with { $0.poolRef(id) }.map { p in
                p.with { chi_load32($0.gate) != RuntimePool.Gate.open }
            } ?? false
            if gated { stillGated.append(id) }
        }
        for ref in out {
            ref.with { r in
                if stillGated.contains(r.task.pointee.pool_id) {
                    keep.push(r)
                    kept += 1
                } else {
                    route(r)
                }
            }
        }
        held = keep
        heldCount = kept
        heldPools = stillGated
    }

    /// Runs the replica steps held for pools that opened again, in the order they were held.
    private func releaseHeldSteps() {
        guard !heldSteps.isEmpty else { return }
        let steps = heldSteps
        heldSteps.removeAll()
        for s in steps {
            switch s {
            case .aggregate(let p):
                if p.with({ chi_load32($0.pool!.gate) }) == RuntimePool.Gate.closed {
                    heldSteps.append(s)
                } else {
                    p.with { finishReplicas($0) }
                }
            case .redispatch(let r, let c):
                if c.with({ c in c.poolRef.with { chi_load32($0.gate) } }) == RuntimePool.Gate.closed {
                    heldSteps.append(s)
                } else {
                    r.with { r in c.with { dispatch(r, to: $0) } }
                }
            }
        }
    }

    /// At shutdown: what is still held ends with CHI_ESTOPPED.
    func failHeld() {
        while let r = held.pop() {
            r.with { fail($0, CInt(CHI_ESTOPPED)) }
        }
        heldCount = 0
        heldPools.removeAll()
        let steps = heldSteps
        heldSteps.removeAll()
        for s in steps {
            switch s {
            case .aggregate(let p):
                p.with { p in
                    p.dropReplicas()
                    complete(p, rc: -CInt(CHI_ESTOPPED))
                }
            case .redispatch(let r, _):
                // No further container is tried: the retry ends the original task.
                r.with { r in
                    r.parentRef?.with { $0.targetIndex = $0.targets?.count ?? 0 }
                    complete(r, rc: -CInt(CHI_ESTOPPED))
                }
            }
        }
    }

    /// Whether a fiber of this worker runs (or waits inside) a task of `pool`.
    func runsTask(of pool: RuntimePool) -> Bool {
        for f in allFibers {
            if let r = f.running, r.with({ $0.poolRef.map { $0.is(pool) } ?? false }) { return true }
        }
        return false
    }
}
