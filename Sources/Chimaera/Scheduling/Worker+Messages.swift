import CChimaera
import Glibc

/// Messages between workers: the inbox other threads post to, the client ingress rings a
/// worker drains, client slots it attaches and detaches, and cancellations.
extension Worker {
    /// Sends `object` to this worker. Spins while the inbox is full (bounded by the tasks in
    /// flight, which the ingress rings bound). Records and fibers travel unretained (their
    /// owners keep them alive); pools and pollers retained.
    func post(_ kind: Message, _ object: AnyObject) {
        let retained = kind == .purge || kind == .addPoller || kind == .call || kind == .remoteSubmit
            || kind == .cancel || kind.rawValue >= Message.moveLane.rawValue
        let p = retained ? Unmanaged.passRetained(object).toOpaque() : Unmanaged.passUnretained(object).toOpaque()
        let bits = UInt64(UInt(bitPattern: p)) | kind.rawValue
        while !inbox.push(bits) { chi_cpu_relax() }
        if kind != .recycle { wake() }
    }

    func drainInbox() -> Bool {
        var did = false
        while let bits = inbox.popSingle() {
            did = true
            let kind = Message(rawValue: bits & Self.messageMask)!
            let p = UnsafeRawPointer(bitPattern: UInt(bits & ~Self.messageMask))!
            switch kind {
            case .enqueue:
                Ref(Unmanaged<TaskRecord>.fromOpaque(p)).with { enqueue($0) }
            case .resume:
                ready.append(Ref(Unmanaged<Fiber>.fromOpaque(p)))
            case .purge:
                let pool = Unmanaged<RuntimePool>.fromOpaque(p).takeRetainedValue()
                purge(pool)
            case .call:
                Unmanaged<WorkerCall>.fromOpaque(p).takeRetainedValue().body(self)
            case .addPoller:
                pollers.append(Unmanaged<Poller>.fromOpaque(p).takeRetainedValue())
            case .remoteDone:
                complete(Unmanaged<TaskRecord>.fromOpaque(p).takeUnretainedValue())
            case .remoteSubmit:
                let inc = Unmanaged<RemoteIncoming>.fromOpaque(p).takeRetainedValue()
                remoteSpinUntil = chi_now_ns() &+ 10_000_000
                allocRecord(inc.task, off: 0).with { r in
                    r.remote = inc
                    r.bulkOwner = SpanMap.runtimeOwner
                    route(r)
                }
            case .recycle:
                freeRecord(Unmanaged<TaskRecord>.fromOpaque(p).takeUnretainedValue())
            case .attachClient:
                attach(Unmanaged<ClientSlot>.fromOpaque(p).takeUnretainedValue())
            case .detachClient:
                detach(Unmanaged<ClientSlot>.fromOpaque(p).takeUnretainedValue())
            case .cancel:
                cancel(Unmanaged<CancelRequest>.fromOpaque(p).takeRetainedValue())
            case .internalSubmit:
                let pt = Unmanaged<PrivateTask>.fromOpaque(p).takeUnretainedValue()
                submitInternal(pt, depth: pt.depth)
            case .moveLane:
                startMove(Unmanaged<LaneMove>.fromOpaque(p).takeRetainedValue())
            case .laneBarrier:
                answerBarrier(Unmanaged<LaneMove>.fromOpaque(p).takeRetainedValue())
            case .laneBarrierAck:
                barrierAnswered(Unmanaged<LaneMove>.fromOpaque(p).takeRetainedValue())
            case .adoptLane:
                adopt(Unmanaged<LaneMove>.fromOpaque(p).takeRetainedValue())
            }
        }
        return did
    }

    /// Drains the client rings. A client with `max_inflight_per_client` tasks in flight is
    /// left in its ring until some complete: it waits there (back-pressure), nothing is
    /// refused. The count is re-summed only when a ring's budget runs out.
    func drainIngress() -> Bool {
        var did = false
        for i in ringBuf.indices {
            if ringBuf[i].ring.isEmpty { continue }
            if ringBuf[i].budget == 0 {
                let inflight = ringBuf[i].slot.with { $0.inflight }
                let room = Int64(limits.maxInflightPerClient) - inflight
                if room <= 0 { continue }
                ringBuf[i].budget = UInt64(room + Int64(ringBuf[i].shares) - 1) / UInt64(ringBuf[i].shares)
            }
            var n = 0
            let e = ringBuf[i]
            // In batches: every task of a batch is asked for (prefetched) before the first is
            // copied, so the copies do not wait for their lines one after another.
            withUnsafeTemporaryAllocation(of: UInt64.self, capacity: Self.acceptBatch) { batch in
                while n < 256 && UInt64(n) < e.budget {
                    var k = 0
                    while k < Self.acceptBatch && UInt64(n + k) < e.budget, let v = e.ring.popSingle() {
                        let p = segBase + Int(truncatingIfNeeded: v & ~CHI_RING_TAG_MASK)
                        chi_prefetch(p)
                        chi_prefetch(p + 64)
                        chi_prefetch_w(p + 128)
                        batch[k] = v
                        k += 1
                    }
                    for j in 0..<k { accept(batch[j], e) }
                    n += k
                    if k < Self.acceptBatch { break }
                }
            }
            ringBuf[i].budget -= UInt64(n)
            if n > 0 { did = true }
        }
        return did
    }

    /// Starts draining the rings `slot` gave this worker.
    func attach(_ slot: ClientSlot) {
        let rings = slot.rings
        let mine = slot.ringWorkers.filter { $0 == id }.count
        for (q, w) in slot.ringWorkers.enumerated() where w == id {
            clientRings.append(ClientRing(ring: rings[q], slot: Ref(slot), owner: slot.owner,
                                          accepted: slot.accepted + 8 * q, shares: UInt64(rings.count / max(1, mine)),
                                          budget: 0))
        }
    }

    /// Forgets a client that went: its rings are no longer read (what is in them is
    /// dropped with them), its periodic tasks stop. Tasks already accepted run to their end.
    func detach(_ slot: ClientSlot) {
        clientRings.removeAll { $0.slot.is(slot) }
        for r in timers.removeAll(where: { $0.slotRef?.is(slot) ?? false }) {
            complete(r, rc: -CInt(CHI_ESTOPPED))
        }
        _ = chi_add32(slot.detachAcks, 1)
    }

    /// Cancels a client's periodic task: at once if it waits for its next run, else when it
    /// is rearmed.
    func cancel(_ c: CancelRequest) {
        let gone = timers.removeAll { $0.slotRef.map { $0.with { $0.owner } } == c.owner && $0.shmOff == c.off }
        if gone.isEmpty {
            if pendingCancels.count >= 64 { pendingCancels.removeFirst() }
            pendingCancels.append((c.owner, c.off))
            return
        }
        for r in gone { complete(r, rc: -ECANCELED) }
    }

    /// Whether a periodic task being rearmed was cancelled meanwhile (and forgets the request).
    func takeCancel(_ r: TaskRecord) -> Bool {
        guard !pendingCancels.isEmpty, let owner = r.slotRef?.with({ $0.owner }) else { return false }
        guard let i = pendingCancels.firstIndex(where: { $0.owner == owner && $0.off == r.shmOff }) else { return false }
        pendingCancels.remove(at: i)
        return true
    }
}
