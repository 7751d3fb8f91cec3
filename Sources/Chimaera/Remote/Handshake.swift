import NIOCore

/// The cluster handshake as a pure state machine over frames (no channel, no clock), so
/// `Connection` drives it on the network thread and the `handshake` fuzz target drives it
/// with hostile bytes.
///
/// The acceptor challenges (magic, version, its node id, a nonce); the connector answers
/// with its node id, its own nonce and HMAC-SHA256 over the challenge under the cluster key;
/// the acceptor proves the key too (auth-ok). Any other frame, or one that does not parse,
/// throws: the connection closes. With TLS this runs inside the TLS channel.
struct Handshake {
    enum Role {
        case acceptor
        /// Opened by this node to `expecting`.
        case connector(expecting: UInt32)
    }

    let key: [UInt8]
    let selfId: UInt32
    /// Node ids 1...nodes are peers.
    let nodes: Int
    let role: Role
    private var nonce: [UInt8] = []
    private var challenged = false
    /// The node at the other end, once it named itself.
    private(set) var peer: UInt32 = 0
    /// Whether the peer proved it holds the key.
    private(set) var done = false

    init(key: [UInt8], selfId: UInt32, nodes: Int, role: Role) {
        self.key = key
        self.selfId = selfId
        self.nodes = nodes
        self.role = role
    }

    /// The acceptor's first frame.
    mutating func challenge() -> ByteBuffer {
        nonce = ClusterAuth.nonce()
        var b = ByteBuffer.frame(.challenge, capacity: 48)
        b.writeInteger(ClusterAuth.magic)
        b.writeInteger(ClusterAuth.version)
        b.writeInteger(selfId)
        b.writeBytes(nonce)
        b.endFrame()
        return b
    }

    /// Takes one frame that arrived before the handshake finished; returns the frame to
    /// answer with, if any. `done` tells when the peer is authenticated.
    ///
    /// - Throws: `FrameError` for a frame out of turn, a malformed one, a wrong key or a
    ///   node id that is not a peer.
    mutating func receive(_ frame: inout Frame) throws -> ByteBuffer? {
        switch (frame.type, role) {
        case (.challenge, .connector(let expecting)) where !challenged:
            challenged = true
            let magic: UInt32 = try frame.body.readInt("magic")
            let version: UInt32 = try frame.body.readInt("version")
            let node: UInt32 = try frame.body.readInt("node id")
            let theirs = Array(try frame.body.readExactly(ClusterAuth.nonceSize, "nonce").readableBytesView)
            guard magic == ClusterAuth.magic, version == ClusterAuth.version else {
                throw FrameError.malformed("not a Chimaera runtime (or protocol version \(version))")
            }
            guard node == expecting else {
                throw FrameError.malformed("node \(expecting) answers as node \(node): host lists differ")
            }
            peer = node
            nonce = ClusterAuth.nonce()
            var b = ByteBuffer.frame(.auth, capacity: 80)
            b.writeInteger(selfId)
            b.writeBytes(nonce)
            b.writeBytes(ClusterAuth.mac(key: key, label: 0x63, nonce: theirs, from: selfId, to: node))
            b.endFrame()
            return b
        case (.auth, .acceptor) where !nonce.isEmpty:
            let node: UInt32 = try frame.body.readInt("node id")
            let theirs = Array(try frame.body.readExactly(ClusterAuth.nonceSize, "nonce").readableBytesView)
            let mac = Array(try frame.body.readExactly(ClusterAuth.macSize, "mac").readableBytesView)
            let want = ClusterAuth.mac(key: key, label: 0x63, nonce: nonce, from: node, to: selfId)
            guard ClusterAuth.equal(mac, want) else { throw FrameError.malformed("wrong cluster key") }
            guard node >= 1, Int(node) <= nodes, node != selfId else {
                throw FrameError.malformed("node id \(node) is not a peer of this cluster")
            }
            peer = node
            done = true
            var b = ByteBuffer.frame(.authOK, capacity: 40)
            b.writeBytes(ClusterAuth.mac(key: key, label: 0x73, nonce: theirs, from: selfId, to: node))
            b.endFrame()
            return b
        case (.authOK, .connector) where challenged:
            let mac = Array(try frame.body.readExactly(ClusterAuth.macSize, "mac").readableBytesView)
            let want = ClusterAuth.mac(key: key, label: 0x73, nonce: nonce, from: peer, to: selfId)
            guard ClusterAuth.equal(mac, want) else { throw FrameError.malformed("wrong cluster key (the peer's proof failed)") }
            done = true
            return nil
        default:
            throw FrameError.malformed("\(frame.type) frame before the handshake finished")
        }
    }
}
