import NIOCore
import Testing

@testable import Chimaera

/// A few SWIM state machines wired together by a simulated network with a manual clock:
/// links can be cut, nodes paused (their inbound messages wait, as in a stopped process's
/// socket buffers) and resumed. Every message goes through the wire codec.
private struct Net {
    var nodes: [Swim]
    var now: UInt64 = 0
    var inFlight: [(at: UInt64, from: UInt32, to: UInt32, bytes: ByteBuffer)] = []
    /// (from, to) links that drop everything.
    var cut: Set<[UInt32]> = []
    var paused: Set<UInt32> = []
    var held: [UInt32: [(UInt32, ByteBuffer)]] = [:]
    /// Every change any node made: (observer, change).
    var changes: [(UInt32, MemberChange)] = []
    var latencyNs: UInt64 = 1_000_000

    init(_ n: Int, config: SwimConfig = SwimConfig()) {
        nodes = (1...n).map { Swim(selfId: UInt32($0), nodes: n, config: config, now: 0, seed: 42) }
    }

    func node(_ id: UInt32) -> Swim { nodes[Int(id) - 1] }

    mutating func emit(_ out: SwimOutput, from: UInt32) {
        for c in out.changes { changes.append((from, c)) }
        for (to, m) in out.messages where !cut.contains([from, to]) {
            var b = ByteBufferAllocator().buffer(capacity: 64)
            SwimCodec.encode(m, into: &b)
            inFlight.append((now + latencyNs, from, to, b))
        }
    }

    mutating func receive(_ to: UInt32, _ bytes: ByteBuffer) {
        var b = bytes
        let m = try! SwimCodec.decode(&b, nodes: nodes.count)
        let out = nodes[Int(to) - 1].receive(m, now: now)
        emit(out, from: to)
    }

    mutating func run(forMs ms: UInt64, stepMs: UInt64 = 5) {
        let end = now + ms * 1_000_000
        while now < end {
            now += stepMs * 1_000_000
            let due = inFlight.filter { $0.at <= now }
            inFlight.removeAll { $0.at <= now }
            for d in due {
                if paused.contains(d.to) { held[d.to, default: []].append((d.from, d.bytes)) } else { receive(d.to, d.bytes) }
            }
            for i in nodes.indices where !paused.contains(UInt32(i + 1)) {
                let out = nodes[i].tick(now: now)
                emit(out, from: UInt32(i + 1))
            }
        }
    }

    mutating func resume(_ id: UInt32) {
        paused.remove(id)
        for (_, b) in held.removeValue(forKey: id) ?? [] { receive(id, b) }
    }

    func state(of n: UInt32, at observer: UInt32) -> MemberState { node(observer).member(n).state }

    func everyoneSeesAllAlive() -> Bool {
        nodes.allSatisfy { s in s.members.allSatisfy { $0.state == .alive } }
            && Set(nodes.map(\.version)).count == 1
            && Set(nodes.map { $0.members.map(\.update) }).count == 1
    }

    func declared(_ n: UInt32, _ s: MemberState) -> [UInt32] {
        changes.filter { $0.1.node == n && $0.1.to == s }.map(\.0)
    }
}

extension MemberUpdate: Hashable {
    public func hash(into h: inout Hasher) {
        h.combine(node)
        h.combine(incarnation)
        h.combine(state.rawValue)
    }
}

@Suite struct SwimTests {
    @Test func threeHealthyNodesStayAliveWithOneVersion() {
        var net = Net(3)
        net.run(forMs: 3000)
        #expect(net.everyoneSeesAllAlive())
        #expect(net.changes.isEmpty)
    }

    @Test func aSilentNodeIsSuspectedThenDeclaredDeadByEveryone() {
        var net = Net(3)
        net.run(forMs: 500)
        net.paused.insert(3)
        net.run(forMs: 400 + 1500 + 600)
        #expect(net.state(of: 3, at: 1) == .dead && net.state(of: 3, at: 2) == .dead)
        #expect(Set(net.declared(3, .suspected)).isSubset(of: [1, 2]) && !net.declared(3, .suspected).isEmpty)
        #expect(net.node(1).version == net.node(2).version)
        // Not before the suspicion timeout ran out.
        #expect(net.declared(3, .dead).count >= 1)
    }

    @Test func oneBrokenLinkDoesNotMakeAnyoneSuspectedThanksToIndirectProbes() {
        var net = Net(3)
        net.cut = [[1, 3], [3, 1]]
        net.run(forMs: 5000)
        #expect(net.changes.filter { $0.1.to != .alive }.isEmpty, "\(net.changes)")
        #expect(net.everyoneSeesAllAlive())
    }

    @Test func withoutIndirectProbesTheSameBrokenLinkDoesSuspect() {
        var cfg = SwimConfig()
        cfg.indirectProbes = 0
        var net = Net(3, config: cfg)
        net.cut = [[1, 3], [3, 1]]
        net.run(forMs: 3000)
        // The indirect path is what kept the previous test quiet.
        #expect(!net.changes.filter { $0.1.to == .suspected }.isEmpty)
    }

    @Test func aShortPauseIsRefutedWithAHigherIncarnationAndNeverDead() {
        var net = Net(3)
        net.run(forMs: 500)
        net.paused.insert(3)
        net.run(forMs: 1000)
        #expect(!net.declared(3, .suspected).isEmpty)
        net.resume(3)
        net.run(forMs: 2000)
        #expect(net.declared(3, .dead).isEmpty)
        #expect(net.everyoneSeesAllAlive())
        #expect(net.node(1).member(3).incarnation >= 1 && net.node(3).member(3).incarnation >= 1)
    }

    @Test func aDeadNodeThatComesBackRejoinsAlive() {
        var net = Net(3)
        net.run(forMs: 500)
        net.paused.insert(3)
        net.run(forMs: 4000)
        #expect(net.state(of: 3, at: 1) == .dead && net.state(of: 3, at: 2) == .dead)
        net.resume(3)
        net.run(forMs: 3000)
        #expect(net.everyoneSeesAllAlive())
        #expect(net.node(2).member(3).incarnation >= 1)
    }

    @Test func aPartitionHealsIntoOneView() {
        var net = Net(4)
        net.run(forMs: 300)
        for a: UInt32 in [1, 2] { for b: UInt32 in [3, 4] { net.cut.formUnion([[a, b], [b, a]]) } }
        net.run(forMs: 4000)
        #expect(net.state(of: 3, at: 1) == .dead && net.state(of: 1, at: 3) == .dead)
        net.cut = []
        net.run(forMs: 5000)
        #expect(net.everyoneSeesAllAlive())
    }

    @Test func aRefutationNeedsAHigherIncarnation() {
        var s = Swim(selfId: 1, nodes: 3, now: 0)
        // Node 2 suspected at incarnation 4: an alive claim at 4 does not clear it, at 5 it does.
        _ = s.receive(SwimMessage(.announce, from: 3, version: 0,
                                  updates: [MemberUpdate(node: 2, incarnation: 4, state: .suspected)]), now: 1)
        #expect(s.member(2).state == .suspected && s.member(2).incarnation == 4)
        _ = s.receive(SwimMessage(.announce, from: 3, version: 0,
                                  updates: [MemberUpdate(node: 2, incarnation: 4, state: .alive)]), now: 2)
        #expect(s.member(2).state == .suspected)
        let out = s.receive(SwimMessage(.announce, from: 2, version: 0,
                                        updates: [MemberUpdate(node: 2, incarnation: 5, state: .alive)]), now: 3)
        #expect(s.member(2).state == .alive && s.member(2).incarnation == 5)
        #expect(out.changes == [MemberChange(node: 2, from: .suspected, to: .alive, incarnation: 5)])
        // Told it is dead at 7, a node comes back at 8 and tells everyone at once.
        let me = s.receive(SwimMessage(.announce, from: 2, version: 0,
                                       updates: [MemberUpdate(node: 1, incarnation: 7, state: .dead)]), now: 4)
        #expect(s.member(1).state == .alive && s.member(1).incarnation == 8)
        #expect(Set(me.messages.map(\.to)) == [2, 3])
        #expect(me.messages.allSatisfy { $0.message.updates.contains(MemberUpdate(node: 1, incarnation: 8, state: .alive)) })
    }

    @Test func theIndirectPathRelaysTheAck() {
        var s = Swim(selfId: 2, nodes: 3, now: 0)
        // Node 1 asks node 2 to probe node 3 under its sequence number 77.
        let o1 = s.receive(SwimMessage(.pingReq(seq: 77, target: 3), from: 1, version: 0), now: 1)
        guard case .ping(let mine)? = o1.messages.first?.message.kind, o1.messages.first?.to == 3 else {
            Issue.record("no ping to node 3: \(o1.messages)")
            return
        }
        let o2 = s.receive(SwimMessage(.ack(seq: mine), from: 3, version: 0), now: 2)
        #expect(o2.messages.count == 1 && o2.messages[0].to == 1 && o2.messages[0].message.kind == .ack(seq: 77))
        // A second ack for the same relay is not forwarded again.
        #expect(s.receive(SwimMessage(.ack(seq: mine), from: 3, version: 0), now: 3).messages.isEmpty)
    }

    @Test func piggybackedUpdatesStayWithinTheBoundAndStopAfterTheirRetransmits() {
        var cfg = SwimConfig()
        cfg.gossipPerMessage = 3
        cfg.suspicionTimeoutNs = 3_600_000_000_000 // no dead claims replace the suspicions
        var s = Swim(selfId: 1, nodes: 20, config: cfg, now: 0)
        let news = (2...20).map { MemberUpdate(node: UInt32($0), incarnation: 1, state: .suspected) }
        _ = s.receive(SwimMessage(.sync(reply: true), from: 2, version: 0, updates: news), now: 1)
        var sent: [UInt32: Int] = [:]
        var t: UInt64 = 1
        // One ping per 200 ms, its first slot the target's own record: 2 slots of gossip a
        // probe, 285 transmissions to make; 60 s of probes is room enough.
        for _ in 0..<6000 {
            t += 10_000_000
            for (to, m) in s.tick(now: t).messages where m.kind != .sync(reply: false) {
                #expect(m.updates.count <= 3)
                // A member told about itself is not gossip: it is how it learns to refute.
                for u in m.updates where u.incarnation == 1 && u.node != to { sent[u.node, default: 0] += 1 }
            }
        }
        // Each update went out exactly its retransmit limit: 3 x log2(21) rounded up = 15.
        #expect(s.retransmitLimit == 15)
        #expect(sent.count == 19 && sent.values.allSatisfy { $0 == 15 }, "\(sent)")
    }

    @Test func theVersionDoesNotDependOnTheOrderUpdatesArrive() {
        let ups = [MemberUpdate(node: 2, incarnation: 1, state: .suspected), MemberUpdate(node: 2, incarnation: 2, state: .alive),
                   MemberUpdate(node: 3, incarnation: 0, state: .dead), MemberUpdate(node: 4, incarnation: 3, state: .left),
                   MemberUpdate(node: 3, incarnation: 0, state: .suspected)]
        var a = Swim(selfId: 1, nodes: 4, now: 0)
        var b = Swim(selfId: 1, nodes: 4, now: 0)
        for u in ups { _ = a.receive(SwimMessage(.announce, from: 2, version: 0, updates: [u]), now: 1) }
        for u in ups.reversed() { _ = b.receive(SwimMessage(.announce, from: 2, version: 0, updates: [u]), now: 1) }
        #expect(a.version == b.version && a.members.map(\.update) == b.members.map(\.update))
        #expect(a.member(2).state == .alive && a.member(3).state == .dead && a.member(4).state == .left)
        #expect(a.version == (2 * 4 + 0) + (0 * 4 + 2) + (3 * 4 + 3))
    }
}

@Suite struct SwimCodecTests {
    private func bytes(_ m: SwimMessage) -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: 64)
        SwimCodec.encode(m, into: &b)
        return b
    }

    private func refusal(_ b: ByteBuffer, nodes: Int = 3) -> String? {
        var b = b
        do {
            _ = try SwimCodec.decode(&b, nodes: nodes)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func everyKindRoundTrips() throws {
        let u = [MemberUpdate(node: 3, incarnation: 9, state: .dead)]
        for k: SwimMessage.Kind in [.ping(seq: 1), .ack(seq: .max), .pingReq(seq: 5, target: 3), .sync(reply: true),
                                    .sync(reply: false), .announce] {
            let m = SwimMessage(k, from: 2, version: 123, updates: u)
            var b = bytes(m)
            #expect(try SwimCodec.decode(&b, nodes: 3) == m)
        }
    }

    @Test func hostileMessagesAreRefusedNamingTheProblem() {
        let good = bytes(SwimMessage(.ping(seq: 1), from: 2, version: 0,
                                     updates: [MemberUpdate(node: 1, incarnation: 0, state: .alive)]))
        #expect(refusal(good) == nil)
        // Sender outside the cluster.
        #expect(refusal(good, nodes: 1)?.contains("sender 2 is not in 1...1") == true)
        // Every truncation is refused, never read past.
        for n in 0..<good.readableBytes {
            #expect(refusal(good.getSlice(at: 0, length: n)!) != nil)
        }
        var trailing = good
        trailing.writeInteger(UInt8(0))
        #expect(refusal(trailing)?.contains("updates in") == true)
        var kind = good
        kind.setInteger(UInt8(99), at: 0)
        #expect(refusal(kind)?.contains("kind 99") == true)
        var state = good
        state.setInteger(UInt8(7), at: good.writerIndex - 1)
        #expect(refusal(state)?.contains("state 7") == true)
        var node = good
        node.setInteger(UInt32(4), at: good.writerIndex - 13)
        #expect(refusal(node)?.contains("node 4 is not in 1...3") == true)
        var inc = good
        inc.setInteger(UInt64.max, at: good.writerIndex - 9)
        #expect(refusal(inc)?.contains("incarnation") == true)
        // A count above the bound is refused before anything is read or allocated.
        var count = ByteBufferAllocator().buffer(capacity: 32)
        count.writeInteger(UInt8(1)); count.writeInteger(UInt32(2)); count.writeInteger(UInt64(0)); count.writeInteger(UInt64(1))
        count.writeInteger(UInt16.max)
        #expect(refusal(count)?.contains("65535 updates (at most 3)") == true)
        #expect(refusal(bytes(SwimMessage(.pingReq(seq: 1, target: 2), from: 2, version: 0)))?.contains("about itself") == true)
    }
}

@Suite struct MembershipConfigTests {
    private let key = "key: \"0123456789abcdef\""

    @Test func membershipKeysHaveDefaultsAndParse() throws {
        let d = try RuntimeConfig.parse("cluster:\n  hosts: [a, b]\n  \(key)\n", file: "c.yaml")
        #expect(d.cluster.membership == SwimConfig())
        let c = try RuntimeConfig.parse("""
            cluster:
              hosts: [a, b]
              \(key)
              probe_interval_ms: 300
              probe_timeout_ms: 120
              indirect_probes: 3
              suspicion_timeout_ms: 900
              gossip_per_message: 4
            """, file: "c.yaml")
        let m = c.cluster.membership
        #expect(m.probeIntervalNs == 300_000_000 && m.probeTimeoutNs == 120_000_000 && m.indirectProbes == 3)
        #expect(m.suspicionTimeoutNs == 900_000_000 && m.gossipPerMessage == 4)
    }

    @Test func aProbeTimeoutNotBelowTheIntervalIsAnErrorNamingTheKey() {
        do {
            _ = try RuntimeConfig.parse("cluster:\n  hosts: [a, b]\n  \(key)\n  probe_timeout_ms: 200\n", file: "c.yaml")
            Issue.record("accepted a probe timeout equal to the interval")
        } catch {
            #expect(error.description.contains("cluster.probe_timeout_ms") && error.description.contains("c.yaml:4"))
        }
        do {
            _ = try RuntimeConfig.parse("cluster:\n  hosts: [a, b]\n  \(key)\n  gossip_per_message: 65\n", file: "c.yaml")
            Issue.record("accepted 65 updates a message")
        } catch {
            #expect(error.description.contains("cluster.gossip_per_message"))
        }
    }
}
