import COpenSSL
import NIOCore

/// The wire format between runtimes: `[u32 body length][u8 type][body]`, big-endian.
///
/// A connection opens with a handshake (challenge, auth, auth-ok) that proves both ends hold
/// the cluster key; until it completes, any other frame closes the connection.
enum FrameType: UInt8 {
    /// acceptor -> connector: magic, version, the acceptor's node id, a 32-byte nonce.
    case challenge = 1
    /// connector -> acceptor: its node id, its own nonce, HMAC over the challenge.
    case auth = 2
    /// acceptor -> connector: HMAC over the connector's nonce.
    case authOK = 3
    /// A task for a container of the receiving node (see TaskCodec).
    case request = 4
    /// The outcome of a request, matched to it by request id.
    case reply = 5
    case ping = 6
    case pong = 7
    /// Asks for the pool catalog; answered with `catalog`.
    case catalogRequest = 8
    case catalog = 9
    /// A membership protocol message (Membership/SwimMessage), in either direction.
    case membership = 10
}

struct Frame {
    var type: FrameType
    var body: ByteBuffer
}

enum FrameError: Error, CustomStringConvertible {
    case tooLarge(UInt32, limit: UInt32)
    case unknownType(UInt8)
    case malformed(String)

    var description: String {
        switch self {
        case .tooLarge(let n, let limit): return "frame of \(n) bytes exceeds the limit of \(limit) bytes"
        case .unknownType(let t): return "unknown frame type \(t)"
        case .malformed(let why): return "malformed frame: \(why)"
        }
    }
}

/// The largest frame body a connection accepts now: small until its handshake completes,
/// then what the largest bulk request needs. Shared by the connection (which raises it once
/// the peer proved itself) and its decoder; both run on the network thread.
final class FrameLimit: @unchecked Sendable {
    /// Before authentication: the handshake frames are under 100 bytes. Anything larger
    /// closes the connection as soon as its header is in, so an unauthenticated peer makes
    /// the runtime buffer at most this much (plus NIO's one read) per connection.
    static let preAuth: UInt32 = 256
    var maxBody: UInt32 = preAuth
}

/// Splits the byte stream into frames; rejects oversized and unknown ones before buffering
/// their bodies, so a stream of garbage costs at most one header.
struct FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = Frame
    /// The ceiling for any frame: the largest bulk transfer (TaskCodec.maxBulk) plus its task.
    static let maxBody: UInt32 = (256 << 20) + (1 << 20)
    let limit: FrameLimit

    init(limit: FrameLimit = FrameLimit()) { self.limit = limit }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try Self.next(&buffer, maxBody: limit.maxBody) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }

    /// Takes the next whole frame off the front of `buffer`, or returns nil and consumes
    /// nothing while it has not all arrived. A pure function of the bytes, so the fuzz target
    /// (Sources/Chimaera/Fuzz) drives it without a channel.
    ///
    /// - Throws: `FrameError` for an oversized (above `maxBody`, never above the ceiling)
    ///   or unknown frame, as soon as its header is in.
    static func next(_ buffer: inout ByteBuffer, maxBody: UInt32 = Self.maxBody) throws(FrameError) -> Frame? {
        guard let len = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self),
              let rawType = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt8.self)
        else { return nil }
        guard len <= min(maxBody, Self.maxBody) else { throw FrameError.tooLarge(len, limit: min(maxBody, Self.maxBody)) }
        guard let type = FrameType(rawValue: rawType) else { throw FrameError.unknownType(rawType) }
        guard buffer.readableBytes >= 5 + Int(len) else { return nil }
        buffer.moveReaderIndex(forwardBy: 5)
        return Frame(type: type, body: buffer.readSlice(length: Int(len))!)
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer,
                             seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

extension ByteBuffer {
    /// Starts a frame: reserves the length, writes the type. Close it with `endFrame`.
    static func frame(_ type: FrameType, capacity: Int = 64) -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: capacity + 5)
        b.writeInteger(UInt32(0))
        b.writeInteger(type.rawValue)
        return b
    }

    /// Fills in the length reserved by `frame`.
    mutating func endFrame() {
        setInteger(UInt32(readableBytes - 5), at: readerIndex)
    }

    /// Reads exactly `n` bytes or fails as malformed.
    mutating func readExactly(_ n: Int, _ what: String) throws -> ByteBuffer {
        guard n >= 0, let s = readSlice(length: n) else {
            throw FrameError.malformed("\(what): \(n) bytes announced, \(readableBytes) left")
        }
        return s
    }

    mutating func readInt<T: FixedWidthInteger>(_ what: String, as: T.Type = T.self) throws -> T {
        guard let v = readInteger(as: T.self) else { throw FrameError.malformed("\(what) is missing") }
        return v
    }
}

/// The cluster handshake's cryptography (OpenSSL's libcrypto).
enum ClusterAuth {
    static let magic: UInt32 = 0x4348_4931 // "CHI1"
    static let version: UInt32 = 1
    static let nonceSize = 32
    static let macSize = 32

    /// A fresh random nonce.
    static func nonce() -> [UInt8] {
        var n = [UInt8](repeating: 0, count: nonceSize)
        if RAND_bytes(&n, Int32(nonceSize)) != 1 {
            // Without the CSPRNG a handshake cannot be trusted; an all-zero nonce would be
            // replayable, so mix in what varies at least.
            var seed = SystemRandomNumberGenerator()
            for i in n.indices { n[i] = UInt8.random(in: 0...255, using: &seed) }
        }
        return n
    }

    /// HMAC-SHA256 of `label`, `nonce` and the two node ids under `key`.
    static func mac(key: [UInt8], label: UInt8, nonce: [UInt8], from: UInt32, to: UInt32) -> [UInt8] {
        var msg: [UInt8] = [label]
        msg += nonce
        for v in [from, to] { withUnsafeBytes(of: v.bigEndian) { msg += $0 } }
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var outLen: UInt32 = 0
        _ = key.withUnsafeBytes { k in
            HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), msg, msg.count, &out, &outLen)
        }
        return Array(out.prefix(Int(outLen)))
    }

    /// Constant-time comparison.
    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.count == b.count && CRYPTO_memcmp(a, b, a.count) == 0
    }
}
