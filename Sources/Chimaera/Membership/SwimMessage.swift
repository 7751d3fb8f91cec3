import NIOCore

/// One membership message between two nodes (the body of a `.membership` frame).
///
/// Every message names its sender, carries the sender's view version (a node whose version
/// differs asks for a full sync) and piggybacks up to `SwimConfig.gossipPerMessage` updates.
package struct SwimMessage: Equatable, Sendable {
    package enum Kind: Equatable, Sendable {
        /// A direct probe; answered with `ack` of the same sequence number.
        case ping(seq: UInt64)
        /// The answer to a `ping`, or relayed by the node a `pingReq` went to.
        case ack(seq: UInt64)
        /// Asks the receiver to probe `target` and relay its ack under `seq`.
        case pingReq(seq: UInt64, target: UInt32)
        /// The sender's whole view (anti-entropy and joining); a request is answered with a
        /// reply carrying the receiver's view.
        case sync(reply: Bool)
        /// Updates only, nothing to answer (a refutation or a clean leave, sent at once).
        case announce
    }

    package var kind: Kind
    package var from: UInt32
    package var version: UInt64
    /// Piggybacked updates; for `sync`, the sender's every member.
    package var updates: [MemberUpdate]

    package init(_ kind: Kind, from: UInt32, version: UInt64, updates: [MemberUpdate] = []) {
        self.kind = kind
        self.from = from
        self.version = version
        self.updates = updates
    }
}

/// The wire form of `SwimMessage`, big-endian:
/// `[u8 kind][u32 from][u64 version][kind fields][u16 count][count x (u32 node, u64 inc, u8 state)]`.
///
/// Decoding is hostile input: every count and value is checked against the cluster's size
/// before anything is kept, and a message with bytes left over is refused.
package enum SwimCodec {
    /// Incarnations above this are refused (a node bumps its own by one per refutation, so a
    /// real cluster never gets near it); it keeps `MemberUpdate.key` from overflowing.
    package static let maxIncarnation: UInt64 = 1 << 48
    /// The most updates a gossiping message (not a sync) may carry.
    package static let maxGossip = 64
    /// The most members a sync may carry (cluster.node_id's range).
    package static let maxMembers = 4096

    static let kindPing: UInt8 = 1, kindAck: UInt8 = 2, kindPingReq: UInt8 = 3, kindSync: UInt8 = 4,
               kindAnnounce: UInt8 = 5

    /// Appends `m` to `b`.
    package static func encode(_ m: SwimMessage, into b: inout ByteBuffer) {
        switch m.kind {
        case .ping: b.writeInteger(kindPing)
        case .ack: b.writeInteger(kindAck)
        case .pingReq: b.writeInteger(kindPingReq)
        case .sync: b.writeInteger(kindSync)
        case .announce: b.writeInteger(kindAnnounce)
        }
        b.writeInteger(m.from)
        b.writeInteger(m.version)
        switch m.kind {
        case .ping(let seq), .ack(let seq): b.writeInteger(seq)
        case .pingReq(let seq, let target):
            b.writeInteger(seq)
            b.writeInteger(target)
        case .sync(let reply): b.writeInteger(UInt8(reply ? 1 : 0))
        case .announce: break
        }
        b.writeInteger(UInt16(m.updates.count))
        for u in m.updates {
            b.writeInteger(u.node)
            b.writeInteger(u.incarnation)
            b.writeInteger(u.state.rawValue)
        }
    }

    /// Reads one message that fills `b` exactly, from a cluster of `nodes` nodes.
    ///
    /// - Throws: `FrameError.malformed` naming what is wrong: an unknown kind or state, a
    ///   node id outside 1...nodes, a count above the bound, an incarnation above
    ///   `maxIncarnation`, a short or overlong body.
    static func decode(_ b: inout ByteBuffer, nodes: Int) throws(FrameError) -> SwimMessage {
        func node(_ what: String) throws(FrameError) -> UInt32 {
            guard let v = b.readInteger(as: UInt32.self) else { throw .malformed("membership \(what) is missing") }
            guard v >= 1 && Int(v) <= nodes else { throw .malformed("membership \(what) \(v) is not in 1...\(nodes)") }
            return v
        }
        func int<T: FixedWidthInteger>(_ what: String, _: T.Type) throws(FrameError) -> T {
            guard let v = b.readInteger(as: T.self) else { throw .malformed("membership \(what) is missing") }
            return v
        }
        let rawKind = try int("kind", UInt8.self)
        let from = try node("sender")
        let version = try int("view version", UInt64.self)
        let kind: SwimMessage.Kind
        switch rawKind {
        case kindPing: kind = .ping(seq: try int("sequence number", UInt64.self))
        case kindAck: kind = .ack(seq: try int("sequence number", UInt64.self))
        case kindPingReq:
            let seq = try int("sequence number", UInt64.self)
            let target = try node("probe target")
            guard target != from else { throw .malformed("membership ping-req from node \(from) about itself") }
            kind = .pingReq(seq: seq, target: target)
        case kindSync:
            let r = try int("sync flag", UInt8.self)
            guard r <= 1 else { throw .malformed("membership sync flag \(r)") }
            kind = .sync(reply: r == 1)
        case kindAnnounce: kind = .announce
        default: throw .malformed("unknown membership message kind \(rawKind)")
        }
        let count = Int(try int("update count", UInt16.self))
        let bound: Int
        if case .sync = kind { bound = min(nodes, maxMembers) } else { bound = min(nodes, maxGossip) }
        guard count <= bound else { throw .malformed("membership message with \(count) updates (at most \(bound))") }
        // 13 bytes an update: checked once against what is left, so a lying count costs nothing.
        guard b.readableBytes == count * 13 else {
            throw .malformed("membership message announces \(count) updates in \(b.readableBytes) bytes")
        }
        var updates: [MemberUpdate] = []
        updates.reserveCapacity(count)
        for _ in 0..<count {
            let n = try node("update's node")
            let inc = try int("incarnation", UInt64.self)
            guard inc <= maxIncarnation else { throw .malformed("membership incarnation \(inc) is out of range") }
            let s = try int("state", UInt8.self)
            guard let state = MemberState(rawValue: s) else { throw .malformed("unknown member state \(s)") }
            updates.append(MemberUpdate(node: n, incarnation: inc, state: state))
        }
        return SwimMessage(kind, from: from, version: version, updates: updates)
    }
}
