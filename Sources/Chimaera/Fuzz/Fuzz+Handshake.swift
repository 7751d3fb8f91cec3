import NIOCore

extension Fuzz {
    /// Target `handshake`: the bytes an unauthenticated peer sends, through the pre-auth
    /// frame limit and the handshake state machine, as `Connection` drives them.
    ///
    /// The first byte picks the role (bit 0: acceptor or connector expecting node 2) and seeds
    /// the piece sizes; the rest arrives piece by piece through `FrameDecoder.next` with
    /// `FrameLimit.preAuth`, and each frame goes to `Handshake.receive` until it throws (the
    /// connection would close). Checks: no frame above the pre-auth limit is taken; no answer
    /// is larger than a handshake frame; the peer is never authenticated (the nonce is fresh
    /// and the key unknown to the input, so a forged proof would be a bug); the node id the
    /// connector accepts is the one it expects.
    package static func handshake(_ data: UnsafeRawBufferPointer) {
        guard var rng = data.first else { return }
        let role: Handshake.Role = rng & 1 == 0 ? .acceptor : .connector(expecting: 2)
        var hs = Handshake(key: Array("fuzz-cluster-key-0123456789".utf8), selfId: 1, nodes: 3, role: role)
        if case .acceptor = role { _ = hs.challenge() }
        let stream = UnsafeRawBufferPointer(rebasing: data[1...])
        var buffer = ByteBufferAllocator().buffer(capacity: min(stream.count, 4096))
        var fed = 0
        while fed < stream.count {
            rng = rng &* 37 &+ 11
            let n = min(stream.count - fed, Int(rng % 64) + 1)
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: stream[fed..<(fed + n)]))
            fed += n
            while true {
                let frame: Frame?
                do {
                    frame = try FrameDecoder.next(&buffer, maxBody: FrameLimit.preAuth)
                } catch {
                    if case .tooLarge(let len, let limit) = error {
                        precondition(len > limit && limit == FrameLimit.preAuth, "refused a frame within the limit")
                    }
                    return
                }
                guard var frame else { break }
                precondition(frame.body.readableBytes <= Int(FrameLimit.preAuth), "took a frame above the pre-auth limit")
                let answer: ByteBuffer?
                do {
                    answer = try hs.receive(&frame)
                } catch {
                    return
                }
                precondition(!hs.done, "authenticated a peer that cannot know the key")
                if let answer { precondition(answer.readableBytes <= 5 + 68, "a handshake answer of \(answer.readableBytes) bytes") }
                if case .connector(let want) = role, hs.peer != 0 { precondition(hs.peer == want, "accepted node \(hs.peer)") }
            }
        }
    }

    /// Seeds: a challenge then a forged auth-ok (connector), an auth with a made-up proof
    /// (acceptor), and a frame announcing 257 MiB.
    package static func handshakeSeeds() -> [[UInt8]] {
        func frame(_ type: FrameType, _ body: [UInt8]) -> [UInt8] {
            var b = ByteBuffer.frame(type)
            b.writeBytes(body)
            b.endFrame()
            return Array(b.readableBytesView)
        }
        let challenge = frame(.challenge, [0x43, 0x48, 0x49, 0x31, 0, 0, 0, 1, 0, 0, 0, 2] + Array(repeating: 7, count: 32))
        let auth = frame(.auth, [0, 0, 0, 2] + Array(repeating: 9, count: 32) + Array(repeating: 1, count: 32))
        return [
            [1] + challenge + frame(.authOK, Array(repeating: 3, count: 32)),
            [0] + auth,
            [2] + [0x10, 0x1f, 0xff, 0xff, 4] + Array(repeating: 0, count: 64),
        ]
    }
}
