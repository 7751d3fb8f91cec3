import NIOCore

extension Fuzz {
    /// Target `frames`: the byte stream from a peer, arriving in pieces.
    ///
    /// The first byte seeds the piece sizes (1-32 bytes); the rest is appended piece by piece
    /// and `FrameDecoder.next` takes frames off while whole ones are in, as NIO's
    /// ByteToMessageHandler drives `decode`. Request and reply bodies then go through their
    /// header readers, membership bodies through SwimCodec.decode (and back through encode).
    /// Checks: each frame is exactly what its header announced, taken from
    /// exactly where the stream has it (nothing skipped, nothing invented); a partial frame
    /// consumes nothing; a refusal comes only from a header over the limit or of an unknown
    /// type.
    package static func frames(_ data: UnsafeRawBufferPointer) {
        guard var rng = data.first else { return }
        let stream = UnsafeRawBufferPointer(rebasing: data[1...])
        var buffer = ByteBufferAllocator().buffer(capacity: stream.count)
        var fed = 0
        var taken = 0
        while fed < stream.count {
            rng = rng &* 37 &+ 11
            let n = min(stream.count - fed, Int(rng % 32) + 1)
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: stream[fed..<(fed + n)]))
            fed += n
            while true {
                let before = buffer.readerIndex
                let frame: Frame?
                do {
                    frame = try FrameDecoder.next(&buffer)
                } catch {
                    precondition(buffer.readerIndex == before, "a refused frame consumed bytes")
                    let len = stream.loadBigEndianUInt32(at: taken)
                    switch error {
                    case .tooLarge(let n, let limit):
                        precondition(n == len && len > limit && limit == FrameDecoder.maxBody, "refused a frame within the limit")
                    case .unknownType(let t):
                        precondition(t == stream[taken + 4] && FrameType(rawValue: t) == nil, "refused a known type")
                    case .malformed:
                        preconditionFailure("the decoder itself never reports a malformed body")
                    }
                    return
                }
                guard var frame else {
                    precondition(buffer.readerIndex == before, "an incomplete frame consumed bytes")
                    break
                }
                let len = Int(stream.loadBigEndianUInt32(at: taken))
                precondition(buffer.readerIndex - before == 5 + len && frame.body.readableBytes == len,
                             "a frame's length differs from its header")
                precondition(frame.type.rawValue == stream[taken + 4], "a frame's type differs from its header")
                precondition(frame.body.readableBytesView.elementsEqual(stream[(taken + 5)..<(taken + 5 + len)]),
                             "a frame's body is not the bytes that followed its header")
                taken += 5 + len
                switch frame.type {
                case .request: _ = try? TaskCodec.readRequestHeader(&frame.body)
                case .reply: _ = try? TaskCodec.readReplyHeader(&frame.body)
                case .membership:
                    // A message that decodes re-encodes to exactly its bytes (nothing
                    // skipped or invented); one that does not is refused, never trapped on.
                    let original = frame.body
                    if let m = try? SwimCodec.decode(&frame.body, nodes: 16) {
                        var again = ByteBufferAllocator().buffer(capacity: original.readableBytes)
                        SwimCodec.encode(m, into: &again)
                        precondition(again == original, "a membership message does not re-encode to its bytes")
                    }
                default: break
                }
            }
        }
    }

    /// Seeds: a handshake-shaped stream, a request and a reply frame, split and whole.
    package static func framesSeeds() -> [[UInt8]] {
        func frame(_ type: FrameType, _ body: [UInt8]) -> [UInt8] {
            var b = ByteBuffer.frame(type)
            b.writeBytes(body)
            b.endFrame()
            return Array(b.readableBytesView)
        }
        let request = requestSeeds().first ?? []
        let reply = Array(replySeeds().first?.dropFirst(3) ?? [])
        let challenge = frame(.challenge, [0x43, 0x48, 0x49, 0x31, 0, 0, 0, 1, 0, 0, 0, 2] + Array(repeating: 7, count: 32))
        return [
            [0] + challenge + frame(.ping, []) + frame(.pong, []),
            [1] + frame(.request, request) + frame(.reply, reply),
            [200] + frame(.catalogRequest, []) + frame(.request, request).dropLast(3),
        ]
    }
}

extension UnsafeRawBufferPointer {
    /// The big-endian u32 at `offset` (the bytes are there: the decoder has read them).
    fileprivate func loadBigEndianUInt32(at offset: Int) -> UInt32 {
        UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
}
