/// The membership protocol's timing and bounds (`cluster.membership.*` in the config).
package struct SwimConfig: Sendable, Equatable {
    /// How often this node probes one member (`probe_interval_ms`).
    package var probeIntervalNs: UInt64 = 200_000_000
    /// How long a direct probe may go unanswered before `indirectProbes` other members are
    /// asked to probe the target (`probe_timeout_ms`); the rest of the interval is theirs.
    package var probeTimeoutNs: UInt64 = 100_000_000
    /// How many members relay an indirect probe (`indirect_probes`, SWIM's k).
    package var indirectProbes = 2
    /// How long a member stays suspected before it is declared dead (`suspicion_timeout_ms`).
    package var suspicionTimeoutNs: UInt64 = 1_500_000_000
    /// The most updates one message piggybacks (`gossip_per_message`).
    package var gossipPerMessage = 6
    /// Each update is piggybacked this many times log2(nodes + 1) (`retransmit_mult`).
    package var retransmitMult = 3
    /// The least time between two full syncs asked of one member when views differ.
    package var syncIntervalNs: UInt64 = 1_000_000_000
    /// How often a dead member is pinged anyway, so a node that was cut off (stopped,
    /// partitioned) and came back learns it was declared dead and refutes it.
    package var reconnectIntervalNs: UInt64 = 1_000_000_000

    package init() {}
}

/// A change of a member's state as this node sees it.
package struct MemberChange: Equatable, Sendable {
    package var node: UInt32
    package var from: MemberState
    package var to: MemberState
    package var incarnation: UInt64
}

/// What one step of the state machine asks for: messages to send, and the changes it made.
package struct SwimOutput: Sendable {
    package var messages: [(to: UInt32, message: SwimMessage)] = []
    package var changes: [MemberChange] = []
}

/// SWIM failure detection and membership (Das et al., 2002, with memberlist's suspicion and
/// incarnation numbers) as a pure state machine: it reads no clock and touches no socket.
/// The owner feeds it messages (`receive`), timer ticks (`tick`) and the time, and sends
/// what it returns. One owner thread; not thread-safe.
///
/// Each probe interval it pings one member (round-robin over a shuffled order). Without an
/// ack within `probeTimeoutNs`, k other alive members are asked to ping it; without any ack by
/// the end of the interval the member is suspected. A suspected member that does not refute
/// within `suspicionTimeoutNs` is declared dead. A node that hears itself suspected or dead
/// refutes by raising its incarnation. Updates travel piggybacked on probes and acks, each a
/// bounded number of times; a message whose view version differs from the receiver's makes
/// it ask for a full sync (rate-limited), so every node ends with the same view.
///
/// The view version is the sum of every member's `MemberUpdate.key`: it only grows, and two
/// nodes with the same records have the same version. NOT guaranteed: two different views
/// could in principle sum to the same version; compare the records to be sure.
package struct Swim {
    package let selfId: UInt32
    package let nodes: Int
    package let config: SwimConfig
    /// Indexed by node id - 1.
    package private(set) var members: [Member]
    package private(set) var version: UInt64 = 0
    /// Set by `leave`: this node no longer refutes anything.
    package private(set) var leaving = false

    struct Probe {
        var target: UInt32
        var seq: UInt64
        var sentNs: UInt64
        var indirectSent: Bool
    }

    struct Relay {
        var requester: UInt32
        var seq: UInt64
        var expiresNs: UInt64
    }

    struct Gossip {
        var update: MemberUpdate
        var transmits: Int
    }

    private var seq: UInt64 = 0
    private var rng: SplitMix64
    private var probe: Probe?
    private var nextProbeNs: UInt64
    private var order: [UInt32] = []
    private var orderIndex = 0
    private var relays: [UInt64: Relay] = [:]
    /// Updates still to piggyback, one per member (the newest), with how often they went.
    private var gossip: [UInt32: Gossip] = [:]
    private var lastSyncNs: [UInt64]
    private var nextReconnectNs: UInt64
    private var out = SwimOutput()

    /// A view where every node is alive at incarnation 0 (what the host list says).
    package init(selfId: UInt32, nodes: Int, config: SwimConfig = SwimConfig(), now: UInt64, seed: UInt64 = 0) {
        precondition(nodes >= 1 && selfId >= 1 && Int(selfId) <= nodes)
        self.selfId = selfId
        self.nodes = nodes
        self.config = config
        members = (1...UInt32(nodes)).map { Member(node: $0, incarnation: 0, state: .alive, sinceNs: now) }
        rng = SplitMix64(seed: seed ^ UInt64(selfId) &* 0x9E37_79B9_7F4A_7C15)
        nextProbeNs = now &+ config.probeIntervalNs
        nextReconnectNs = now &+ config.reconnectIntervalNs
        lastSyncNs = Array(repeating: 0, count: nodes)
    }

    package func member(_ node: UInt32) -> Member { members[Int(node) - 1] }

    /// How many times an update is piggybacked before it is dropped from the queue.
    package var retransmitLimit: Int {
        var log2 = 0
        while (1 << log2) < nodes + 1 { log2 += 1 }
        return max(1, config.retransmitMult * log2)
    }

    // MARK: Inputs

    /// Asks one member for its view (its connection just came up).
    package mutating func sync(with node: UInt32, now: UInt64) -> SwimOutput {
        queueSync(with: node, now: now)
        return take()
    }

    private mutating func queueSync(with node: UInt32, now: UInt64) {
        guard node != selfId else { return }
        lastSyncNs[Int(node) - 1] = now
        send(SwimMessage(.sync(reply: false), from: selfId, version: version, updates: members.map(\.update)), to: node)
    }

    /// Leaves the cluster cleanly: this node is `left` from now on, and tells every member.
    package mutating func leave(now: UInt64) -> SwimOutput {
        guard !leaving else { return take() }
        leaving = true
        let me = member(selfId)
        set(MemberUpdate(node: selfId, incarnation: me.incarnation, state: .left), now: now)
        let u = member(selfId).update
        for n in others() { send(SwimMessage(.announce, from: selfId, version: version, updates: [u]), to: n) }
        return take()
    }

    /// Advances the timers to `now`: probe rounds, indirect probes, suspicion timeouts.
    package mutating func tick(now: UInt64) -> SwimOutput {
        if var p = probe {
            if !p.indirectSent && now &- p.sentNs >= config.probeTimeoutNs {
                p.indirectSent = true
                probe = p
                let helpers = shuffled(others().filter { $0 != p.target && member($0).state == .alive })
                for h in helpers.prefix(config.indirectProbes) {
                    send(message(.pingReq(seq: p.seq, target: p.target), to: h), to: h)
                }
            }
            if now &- p.sentNs >= config.probeIntervalNs {
                probe = nil
                let m = member(p.target)
                if m.state == .alive {
                    set(MemberUpdate(node: p.target, incarnation: m.incarnation, state: .suspected), now: now)
                }
            }
        }
        if probe == nil && now >= nextProbeNs {
            nextProbeNs = now &+ config.probeIntervalNs
            if let target = nextTarget() {
                seq &+= 1
                probe = Probe(target: target, seq: seq, sentNs: now, indirectSent: false)
                send(message(.ping(seq: seq), to: target), to: target)
            }
        }
        for m in members where m.node != selfId && m.state == .suspected
            && now &- m.sinceNs >= config.suspicionTimeoutNs {
            set(MemberUpdate(node: m.node, incarnation: m.incarnation, state: .dead), now: now)
        }
        relays = relays.filter { $0.value.expiresNs > now }
        if now >= nextReconnectNs {
            nextReconnectNs = now &+ config.reconnectIntervalNs
            let dead = others().filter { member($0).state == .dead }
            if !dead.isEmpty {
                let n = dead[Int(rng.next() % UInt64(dead.count))]
                seq &+= 1
                send(message(.ping(seq: seq), to: n), to: n)
            }
        }
        return take()
    }

    /// Handles a message from node `m.from` (the caller checked it is the authenticated
    /// sender and that the message decoded within bounds).
    package mutating func receive(_ m: SwimMessage, now: UInt64) -> SwimOutput {
        guard m.from != selfId, m.from >= 1, Int(m.from) <= nodes else { return take() }
        for u in m.updates { apply(u, now: now) }
        switch m.kind {
        case .ping(let s):
            send(message(.ack(seq: s), to: m.from), to: m.from)
        case .ack(let s):
            if let p = probe, p.seq == s {
                probe = nil
            } else if let r = relays.removeValue(forKey: s) {
                send(message(.ack(seq: r.seq), to: r.requester), to: r.requester)
            }
        case .pingReq(let s, let target):
            seq &+= 1
            relays[seq] = Relay(requester: m.from, seq: s, expiresNs: now &+ config.probeIntervalNs)
            send(message(.ping(seq: seq), to: target), to: target)
        case .sync(let reply):
            if !reply {
                lastSyncNs[Int(m.from) - 1] = now
                send(SwimMessage(.sync(reply: true), from: selfId, version: version, updates: members.map(\.update)),
                     to: m.from)
            }
        case .announce:
            break
        }
        if m.version != version && now &- lastSyncNs[Int(m.from) - 1] >= config.syncIntervalNs {
            queueSync(with: m.from, now: now)
        }
        return take()
    }

    // MARK: The view

    /// Applies a claim from gossip or a sync.
    private mutating func apply(_ u: MemberUpdate, now: UInt64) {
        if u.node == selfId {
            guard !leaving else { return }
            let me = member(selfId)
            // Someone thinks this node is not alive (or knows a later life of it): refute.
            if (u.state != .alive && u.incarnation >= me.incarnation) || u.incarnation > me.incarnation {
                refute(above: u.incarnation, now: now)
            }
            return
        }
        if u.key > member(u.node).update.key { set(u, now: now) }
    }

    /// Raises this node's incarnation above `inc` and tells every member at once (a
    /// refutation cannot wait for gossip: the suspicion timeout is running).
    private mutating func refute(above inc: UInt64, now: UInt64) {
        set(MemberUpdate(node: selfId, incarnation: min(inc &+ 1, SwimCodec.maxIncarnation), state: .alive), now: now)
        let u = member(selfId).update
        for n in others() { send(SwimMessage(.announce, from: selfId, version: version, updates: [u]), to: n) }
    }

    private mutating func set(_ u: MemberUpdate, now: UInt64) {
        let i = Int(u.node) - 1
        let old = members[i]
        version = version &- old.update.key &+ u.key
        members[i].incarnation = u.incarnation
        if old.state != u.state {
            members[i].state = u.state
            members[i].sinceNs = now
            out.changes.append(MemberChange(node: u.node, from: old.state, to: u.state, incarnation: u.incarnation))
        } else if old.incarnation != u.incarnation {
            members[i].sinceNs = now
        }
        gossip[u.node] = Gossip(update: u, transmits: 0)
    }

    // MARK: Messages

    /// A message to `to` with piggybacked updates: first what this node thinks of `to` when
    /// that is not "alive" (so it can refute), then the least-sent queued updates.
    private mutating func message(_ kind: SwimMessage.Kind, to: UInt32) -> SwimMessage {
        var ups: [MemberUpdate] = []
        let budget = max(0, min(config.gossipPerMessage, SwimCodec.maxGossip, nodes))
        let target = member(to)
        if target.state != .alive && budget > 0 { ups.append(target.update) }
        if ups.count < budget && !gossip.isEmpty {
            let picks = gossip.values.filter { $0.update.node != to || target.state == .alive }
                .sorted { ($0.transmits, $0.update.node) < ($1.transmits, $1.update.node) }
                .prefix(budget - ups.count)
            let limit = retransmitLimit
            for g in picks {
                ups.append(g.update)
                let n = g.transmits + 1
                if n >= limit { gossip[g.update.node] = nil } else { gossip[g.update.node]!.transmits = n }
            }
        }
        return SwimMessage(kind, from: selfId, version: version, updates: ups)
    }

    private mutating func send(_ m: SwimMessage, to: UInt32) {
        out.messages.append((to, m))
    }

    private mutating func take() -> SwimOutput {
        defer { out = SwimOutput() }
        return out
    }

    private func others() -> [UInt32] { (1...UInt32(nodes)).filter { $0 != selfId } }

    /// The next member to probe: round-robin over a shuffled order of the others, skipping
    /// dead and left ones; a new order each round.
    private mutating func nextTarget() -> UInt32? {
        for _ in 0..<(2 * nodes) {
            if orderIndex >= order.count {
                order = shuffled(others())
                orderIndex = 0
                if order.isEmpty { return nil }
            }
            let n = order[orderIndex]
            orderIndex += 1
            let s = member(n).state
            if s == .alive || s == .suspected { return n }
        }
        return nil
    }

    private mutating func shuffled(_ a: [UInt32]) -> [UInt32] {
        var a = a
        if a.count > 1 {
            for i in stride(from: a.count - 1, to: 0, by: -1) {
                let j = Int(rng.next() % UInt64(i + 1))
                a.swapAt(i, j)
            }
        }
        return a
    }
}

/// A small seedable generator (SplitMix64), so tests replay the same probe order.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
