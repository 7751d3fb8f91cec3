import CChimaera
import Glibc
import NIOCore
import Testing

@testable import Chimaera
import ChimaeraYAML

private func failure(_ text: String) -> String? {
    do {
        _ = try RuntimeConfig.parse(text, file: "c.yaml")
        return nil
    } catch {
        return error.description
    }
}

private let key = "key: \"0123456789abcdef\""

@Suite struct ClusterConfigTests {
    @Test func hostsTakeTheDefaultPortAndKeepTheirOrder() throws {
        let c = try RuntimeConfig.parse("""
            cluster:
              port: 7000
              hosts: [a.example, "b.example:7100", "[::1]:7200", "[fe80::1]"]
              \(key)
              timeout_ms: 250
            """, file: "c.yaml")
        #expect(c.cluster.hosts.map(\.host) == ["a.example", "b.example", "::1", "fe80::1"])
        #expect(c.cluster.hosts.map(\.port) == [7000, 7100, 7200, 7000])
        #expect(c.cluster.timeoutMs == 250 && c.cluster.heartbeatMs == 500)
        #expect(c.cluster.key == Array("0123456789abcdef".utf8))
    }

    @Test func severalHostsNeedAKey() {
        let e = failure("cluster:\n  hosts: [a, b]\n")
        #expect(e?.contains("cluster.key") == true && e?.contains("c.yaml:") == true)
        #expect(failure("cluster:\n  hosts: [a]\n") == nil)
        #expect(failure("cluster:\n  hosts: [a, b]\n  key: short\n")?.contains("at least 16") == true)
    }

    @Test func badEntriesNameTheirKey() {
        #expect(failure("cluster:\n  hosts: [a, \"b:99999\"]\n  \(key)\n")?.contains("cluster.hosts[1]") == true)
        #expect(failure("cluster:\n  hosts: [a, b]\n  \(key)\n  node_id: 3\n")?.contains("cluster.node_id") == true)
        #expect(failure("cluster:\n  port: 0\n")?.contains("cluster.port") == true)
        #expect(failure("cluster:\n  colour: blue\n")?.contains("unknown key \"cluster.colour\"") == true)
    }

    @Test func hostfileSkipsCommentsAndNamesBadLines() throws {
        let path = "/tmp/chi_hostfile_\(getpid())"
        defer { unlink(path) }
        let write = { (s: String) in
            let f = fopen(path, "w")!
            fputs(s, f)
            fclose(f)
        }
        write("# nodes\n10.0.0.1\n\n10.0.0.2:9000  # second\n")
        let hosts = try ClusterConfig.readHostfile(path, defaultPort: 9513)
        #expect(hosts == [.init(host: "10.0.0.1", port: 9513), .init(host: "10.0.0.2", port: 9000)])
        write("10.0.0.1\nnot a host\n")
        #expect(throws: ConfigError.self) { try ClusterConfig.readHostfile(path, defaultPort: 1) }
        do {
            _ = try ClusterConfig.readHostfile(path, defaultPort: 1)
        } catch {
            #expect(error.line == 2)
        }
    }
}

@Suite struct ClusterMapTests {
    private func config(_ hosts: [String], nodeId: Int = 0, listen: String = "") -> ClusterConfig {
        var c = ClusterConfig()
        c.hosts = hosts.map { ClusterConfig.parseHost($0, defaultPort: 9513)! }
        c.nodeId = nodeId
        c.listen = listen
        c.key = Array("0123456789abcdef".utf8)
        return c
    }

    @Test func oneNodeIsNodeOne() throws {
        #expect(try ClusterMap.resolve(ClusterConfig()).selfId == 1)
        #expect(throws: ChiError.self) { try ClusterMap.resolve(ClusterConfig(), override: 2) }
    }

    @Test func explicitIdsAreCheckedAgainstTheList() throws {
        let c = config(["h1", "h2", "h3"], nodeId: 2)
        #expect(try ClusterMap.resolve(c).selfId == 2)
        #expect(try ClusterMap.resolve(c, override: 3).selfId == 3)
        #expect(throws: ChiError.self) { try ClusterMap.resolve(c, override: 4) }
    }

    @Test func listenPicksTheEntryAndAmbiguityIsAnError() throws {
        let hosts = ["127.0.0.1:7001", "127.0.0.1:7002"]
        #expect(try ClusterMap.resolve(config(hosts, listen: "127.0.0.1:7002")).selfId == 2)
        // Both entries are this machine: the runtime cannot tell which it is.
        do {
            _ = try ClusterMap.resolve(config(hosts))
            Issue.record("two local entries resolved")
        } catch {
            #expect(error.message.contains("node_id"))
        }
    }

    @Test func containersAreNumberedNodeByNode() {
        #expect((0..<6).map { ClusterMap.node(ofContainer: $0, perNode: 2) } == [1, 1, 2, 2, 3, 3])
        #expect(ClusterMap.node(ofContainer: 4, perNode: 0) == 5)
    }
}

@Suite struct FrameTests {
    @Test func macsDependOnKeyNonceAndDirection() {
        let k1 = Array("0123456789abcdef".utf8), k2 = Array("0123456789abcdeX".utf8)
        let n = ClusterAuth.nonce()
        let a = ClusterAuth.mac(key: k1, label: 0x63, nonce: n, from: 1, to: 2)
        #expect(a.count == ClusterAuth.macSize)
        #expect(ClusterAuth.equal(a, ClusterAuth.mac(key: k1, label: 0x63, nonce: n, from: 1, to: 2)))
        #expect(!ClusterAuth.equal(a, ClusterAuth.mac(key: k2, label: 0x63, nonce: n, from: 1, to: 2)))
        #expect(!ClusterAuth.equal(a, ClusterAuth.mac(key: k1, label: 0x63, nonce: n, from: 2, to: 1)))
        #expect(!ClusterAuth.equal(a, ClusterAuth.mac(key: k1, label: 0x73, nonce: n, from: 1, to: 2)))
        #expect(ClusterAuth.nonce() != n)
    }

    @Test func framesCarryTheirLength() throws {
        var b = ByteBuffer.frame(.ping, capacity: 8)
        b.writeInteger(UInt64(42))
        b.endFrame()
        #expect(b.getInteger(at: 0, as: UInt32.self) == 8)
        #expect(b.getInteger(at: 4, as: UInt8.self) == FrameType.ping.rawValue)
        var body = b.getSlice(at: 5, length: 8)!
        #expect(try body.readInt("x", as: UInt64.self) == 42)
        #expect(throws: (any Error).self) { try body.readInt("y", as: UInt32.self) }
        #expect(throws: (any Error).self) { try body.readExactly(1, "z") }
    }
}
