import CChimaera
import Glibc
import NIOCore
import Testing

@testable import Chimaera

/// The transport's bounds and the handshake, with no sockets: config keys, the pre-auth frame
/// limit, and the handshake state machine run between an acceptor and a connector.
@Suite struct ClusterTransportTests {
    private func parse(_ cluster: String) throws -> ClusterConfig {
        try RuntimeConfig.parse("cluster:\n  hosts: [a, b]\n  key: \"0123456789abcdef\"\n" + cluster, file: "c.yaml").cluster
    }

    private func failure(_ cluster: String) -> String? {
        do {
            _ = try parse(cluster)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func boundsHaveDefaultsAndNameTheirKeys() throws {
        let d = try parse("")
        #expect(d.maxPendingConnections == 64 && d.handshakeTimeoutMs == 2000)
        #expect(d.maxBulk == 64 << 20 && d.connectionBudget == 256 << 20 && d.tls == .psk)
        let c = try parse("  max_bulk: 4M\n  connection_budget: 1G\n  max_pending_connections: 3\n  tls: off\n")
        #expect(c.maxBulk == 4 << 20 && c.connectionBudget == 1 << 30 && c.maxPendingConnections == 3 && c.tls == .off)
        #expect(failure("  max_bulk: 512M\n")?.contains("cluster.max_bulk") == true)
        #expect(failure("  max_pending_connections: 0\n")?.contains("cluster.max_pending_connections") == true)
        #expect(failure("  tls: maybe\n")?.contains("cluster.tls") == true)
        #expect(failure("  tls: {ca: /x, cert: /y}\n")?.contains("cluster.tls.key") == true)
        #expect(failure("  tls: {ca: /x, cert: /y, key: /z, extra: 1}\n")?.contains("cluster.tls.extra") == true)
    }

    @Test func preAuthLimitRefusesABigHeaderBeforeItsBody() throws {
        var b = ByteBufferAllocator().buffer(capacity: 16)
        b.writeInteger(UInt32(257 << 20))
        b.writeInteger(FrameType.request.rawValue)
        #expect(throws: FrameError.self) { _ = try FrameDecoder.next(&b, maxBody: FrameLimit.preAuth) }
        #expect(b.readerIndex == 0)
        var ok = ByteBuffer.frame(.ping)
        ok.endFrame()
        #expect(try FrameDecoder.next(&ok, maxBody: FrameLimit.preAuth)?.type == .ping)
    }

    @Test func handshakeAuthenticatesBothEndsWithTheKeyOnly() throws {
        let key = Array("0123456789abcdef".utf8)
        func run(_ connectorKey: [UInt8]) throws -> (Handshake, Handshake) {
            var acc = Handshake(key: key, selfId: 1, nodes: 2, role: .acceptor)
            var con = Handshake(key: connectorKey, selfId: 2, nodes: 2, role: .connector(expecting: 1))
            func deliver(_ b: ByteBuffer, to h: inout Handshake) throws -> ByteBuffer? {
                var buf = b
                var f = try #require(try FrameDecoder.next(&buf, maxBody: FrameLimit.preAuth))
                return try h.receive(&f)
            }
            let auth = try #require(try deliver(acc.challenge(), to: &con))
            let ok = try #require(try deliver(auth, to: &acc))
            #expect(try deliver(ok, to: &con) == nil)
            return (acc, con)
        }
        let (a, c) = try run(key)
        #expect(a.done && c.done && a.peer == 2 && c.peer == 1)
        #expect(throws: FrameError.self) { _ = try run(Array("another-key-0123".utf8)) }
    }
}
