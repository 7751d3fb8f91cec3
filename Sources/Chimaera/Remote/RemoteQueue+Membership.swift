import CChimaera
import Glibc
import NIOCore

/// The membership protocol (Sources/Chimaera/Membership) on the real connections: its
/// messages travel as `.membership` frames on the same authenticated connections as tasks,
/// its timers run on the network thread, and its view decides which nodes tasks fail fast
/// for. Network thread, unless noted.
extension RemoteQueue {
    /// Feeds the state machine's timers; scheduled by `start`.
    func membershipTick() {
        run(swim.tick(now: chi_now_ns()))
    }

    /// A `.membership` frame arrived from the node at the other end of `c`.
    ///
    /// - Throws: `FrameError.malformed` for a body that does not decode within the cluster's
    ///   bounds, or that claims to come from another node than the authenticated one (the
    ///   connection is then closed).
    func handleMembership(_ body: inout ByteBuffer, from c: Connection) throws {
        let m = try SwimCodec.decode(&body, nodes: map.count)
        guard m.from == c.peerNode else {
            throw FrameError.malformed("membership message from node \(c.peerNode) claims to be from node \(m.from)")
        }
        if case .sync(reply: true) = m.kind { peer(m.from).viewSynced = true }
        run(swim.receive(m, now: chi_now_ns()))
    }

    /// Sends what a step of the state machine asked for and acts on its changes.
    func run(_ out: SwimOutput) {
        for (to, m) in out.messages {
            var b = ByteBuffer.frame(.membership, capacity: 32 + 13 * m.updates.count)
            SwimCodec.encode(m, into: &b)
            b.endFrame()
            send(b, to: peer(to))
        }
        guard !out.changes.isEmpty else { return }
        let leaderBefore = metadataLeader()
        let now = chi_now_ns()
        for ch in out.changes {
            let i = Int(ch.node) - 1
            chi_store64(memberSince + i, now)
            chi_store32(memberState + i, UInt32(ch.to.rawValue))
            let msg = "membership: \(map.describe(ch.node)) is \(ch.to) (was \(ch.from), incarnation \(ch.incarnation)), view version \(swim.version)"
            if ch.to == .alive { Log.info(msg) } else { Log.warn(msg) }
            // Requests in flight to a dead node will not be answered: fail them now, not at
            // their deadline. The connection stays: a node that comes back reuses it.
            if (ch.to == .dead || ch.to == .left) && ch.node != map.selfId {
                let p = peer(ch.node)
                let lost = p.lock.withLock { () -> [Peer.Pending] in
                    let l = Array(p.pending.values)
                    p.pending.removeAll()
                    return l
                }
                for e in lost { fail(e, deadMessage(ch.node, now: now) ?? "\(map.describe(ch.node)) is \(ch.to)") }
            }
            // A node back from the dead (a pause, a healed partition) may have missed catalog
            // changes, and its connection may never have dropped: both sides exchange
            // catalogs, tombstones included, so what was destroyed meanwhile stays destroyed.
            if ch.to == .alive && (ch.from == .dead || ch.from == .suspected) && ch.node != map.selfId {
                let p = peer(ch.node)
                send(catalogFrame(), to: p)
                var req = ByteBuffer.frame(.catalogRequest, capacity: 0)
                req.endFrame()
                send(req, to: p)
            }
        }
        // A node that has just become the catalog's leader asks every live node for its
        // catalog: it continues from the highest id (and the tombstones) any of them saw.
        if metadataLeader() == map.selfId && leaderBefore != map.selfId {
            Log.info("membership: \(map.describe(map.selfId)) now leads the pool catalog (was \(map.describe(leaderBefore)))")
            for p in peers where p.id != map.selfId && deadMessage(p.id) == nil {
                var req = ByteBuffer.frame(.catalogRequest, capacity: 0)
                req.endFrame()
                send(req, to: p)
            }
        }
    }

    /// The node that orders the catalog in the embedded mode: the lowest-numbered node this
    /// node's view does not hold dead or left (suspected still leads: it may only be slow).
    /// Any thread.
    func metadataLeader() -> UInt32 {
        for n in 1...UInt32(map.count) where n == map.selfId || deadMessage(n) == nil { return n }
        return map.selfId
    }

    /// Why a task for `node` fails at once: the view says the node is dead or left. Nil when
    /// it may be used (alive or suspected). Any thread (reads the published state).
    func deadMessage(_ node: UInt32, now: UInt64 = chi_now_ns()) -> String? {
        let i = Int(node) - 1
        guard let s = MemberState(rawValue: UInt8(truncatingIfNeeded: chi_load32(memberState + i))),
              s == .dead || s == .left
        else { return nil }
        let tenths = (now &- min(chi_load64(memberSince + i), now)) / 100_000_000
        let how = s == .dead ? "was declared dead" : "left the cluster"
        return "\(map.describe(node)) \(how) \(tenths / 10).\(tenths % 10) s ago (membership view)"
    }

    /// Each member as this node sees it and the view version, for statistics. Any thread
    /// (asks the network thread; nil if it does not answer within a second).
    func membershipSnapshot() -> (version: UInt64, members: [Member])? {
        try? loop.submit { [self] in (swim.version, swim.members) }.wait()
    }

    /// Writes the `membership` object of the statistics: the view version and, per node,
    /// its state, incarnation and since when (wall-clock ms, and how long ago).
    func writeMembership(_ j: inout JSONWriter) {
        guard let snap = membershipSnapshot() else { return }
        let mono = chi_now_ns()
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let wallMs = Int(ts.tv_sec) * 1000 + Int(ts.tv_nsec) / 1_000_000
        j.key("membership"); j.open()
        j.key("version"); j.int(Int(truncatingIfNeeded: snap.version))
        j.key("nodes"); j.openArray()
        for m in snap.members {
            let agoMs = Int((mono &- min(m.sinceNs, mono)) / 1_000_000)
            j.open()
            j.key("node"); j.int(Int(m.node))
            j.key("state"); j.string(m.state.description)
            j.key("incarnation"); j.int(Int(truncatingIfNeeded: m.incarnation))
            j.key("since_ms"); j.int(wallMs - agoMs)
            j.key("for_ms"); j.int(agoMs)
            j.close()
        }
        j.closeArray()
        j.close()
    }
}
