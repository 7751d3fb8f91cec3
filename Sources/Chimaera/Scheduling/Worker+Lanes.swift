import CChimaera

/// A lane's queue, and its hand-off to another worker.
///
/// A lane moves by messages, as seastar moves work between shards: nothing is shared under a
/// lock, and the task path pays one extra load. The old owner A, told to move lane L to B:
///
/// 1. sends L's future tasks to B (`ownerId = B`) and stops running L, keeping its queue;
/// 2. sends a barrier through every other worker's inbox: each answers A. A worker answers
///    after everything it dispatched before, since its messages to A arrive in order, and
///    dispatches to B afterwards, since it read the new owner before answering. So once every
///    answer is in, nothing of L is on its way to A any more;
/// 3. hands the queue to B (`queueOwnerId = B`, then `.adoptLane`).
///
/// B keeps what reached it before it got the queue in `inbound` and appends it after the
/// queue: every source's tasks still start in the order it sent them. Tasks suspended in a
/// fiber on A finish on A (fibers never change threads).
extension Worker {
    /// Queues a task on its lane: on this worker if it holds the lane's queue, aside if the
    /// lane is on its way here, else on the worker that owns the lane now.
    @inline(__always)
    func enqueue(_ r: TaskRecord) {
        r.laneRef!.with { lane in
            let q = lane.queueOwnerId
            if q == id {
                // What reached this worker before it got the queue goes first (only the new
                // owner has `inbound`; during the move the old one still holds the queue).
                if lane.inboundCount > 0 && lane.ownerId == id { lane.takeInbound() }
                lane.push(r)
                if !lane.isActive && !lane.moving {
                    lane.isActive = true
                    activeLanes.append(Ref(lane))
                }
                return
            }
            let o = lane.ownerId
            if o == id {
                lane.inbound.push(r)
                lane.inboundCount += 1
                return
            }
            runtime.workerRef(o).with { $0.post(.enqueue, r) }
        }
    }

    /// Starts moving `m.lane` to `m.to` (on the lane's current owner).
    func startMove(_ m: LaneMove) {
        let lane = m.lane
        guard lane.queueOwnerId == id, lane.ownerId == id, !lane.moving, m.to != id,
              m.to >= 0, m.to < runtime.workers.count else { return }
        lane.moving = true
        if lane.isActive {
            lane.isActive = false
            activeLanes.removeAll { $0.is(lane) }
        }
        chi_store32(lane.ownerWord, UInt32(m.to))
        m.from = id
        m.acks = runtime.workers.count - 1
        movingLanes.append(m)
        for w in runtime.workers where w.id != id { w.post(.laneBarrier, m) }
    }

    /// Answers a barrier: everything this worker sent the lane's old owner is ahead of this.
    func answerBarrier(_ m: LaneMove) {
        runtime.workers[m.from].post(.laneBarrierAck, m)
    }

    /// One more worker answered; with all of them, the queue goes to the new owner.
    func barrierAnswered(_ m: LaneMove) {
        m.acks -= 1
        guard m.acks == 0 else { return }
        movingLanes.removeAll { $0 === m }
        chi_store32(m.lane.queueOwnerWord, UInt32(m.to))
        runtime.workers[m.to].post(.adoptLane, m)
    }

    /// Takes the queue of a lane that moved here, and what arrived for it meanwhile.
    func adopt(_ m: LaneMove) {
        let lane = m.lane
        if lane.inboundCount > 0 { lane.takeInbound() }
        lane.moving = false
        lane.moves &+= 1
        lane.lastMoveNs = chi_now_ns()
        lanesAdopted &+= 1
        // Pollers follow their container's lanes: tasks that start here reap their I/O here.
        let c = lane.container
        for p in c.pollers where !pollers.contains(where: { $0 === p }) { pollers.append(p) }
        if lane.load > 0 && !lane.isActive {
            lane.isActive = true
            activeLanes.append(Ref(lane))
        }
    }
}

/// A lane on its way from one worker to another (sent retained, as one object, through the
/// steps of the move).
final class LaneMove {
    let lane: Lane
    let to: Int
    var from = -1
    /// Barrier answers still due (the old owner's count).
    var acks = 0

    init(lane: Lane, to: Int) {
        self.lane = lane
        self.to = to
    }
}
