import CChimaera
import Glibc
import Testing

@testable import Chimaera

@Suite struct MetadataConfigTests {
    @Test func etcdEndpointsParseWithDefaultPortAndPrefix() throws {
        let c = try RuntimeConfig.parse("cluster:\n  metadata: etcd://10.0.0.1:2379,etcd-b,[::1]:3000\n",
                                        file: "chimaera.yaml")
        #expect(c.cluster.metadata == .etcd(endpoints: [.init(host: "10.0.0.1", port: 2379),
                                                        .init(host: "etcd-b", port: 2379),
                                                        .init(host: "::1", port: 3000)],
                                            prefix: "/chimaera/"))
        #expect(MetadataConfig.parse("etcd://h:1/prod/chi") == .etcd(endpoints: [.init(host: "h", port: 1)],
                                                                      prefix: "/prod/chi/"))
        let store = try #require(try EtcdStore.forConfig(c.cluster.metadata, timeoutMs: c.cluster.timeoutMs))
        #expect(store.endpoints.map(\.description) == ["10.0.0.1:2379", "etcd-b:2379", "[::1]:3000"])
        #expect(store.prefix == "/chimaera/" && store.timeoutMs == 5000)
        #expect(try EtcdStore.forConfig(.embedded, timeoutMs: 1) == nil)
        #expect(RuntimeConfig().cluster.metadata == .embedded)
        #expect(MetadataConfig.parse("embedded") == .embedded)
    }

    @Test func malformedMetadataValuesAreRefusedWithTheExpectedForm() {
        for bad in ["etcd://", "etcd://h:0", "etcd://h:70000", "etcd://a,,b", "etcd://a,a", "http://h:2379",
                    "etcd://h/bad prefix", "etcd://h//", "etcd://h:2379/x//y", "zookeeper",
                    "etcd://" + (1...17).map { "h\($0)" }.joined(separator: ",")] {
            #expect(MetadataConfig.parse(bad) == nil, "\(bad) was accepted")
        }
        do {
            _ = try RuntimeConfig.parse("cluster:\n  metadata: etcd://h:0\n", file: "chimaera.yaml")
            Issue.record("a bad port was accepted")
        } catch {
            #expect(error.description.contains("cluster.metadata") && error.description.contains("etcd://HOST:PORT"))
        }
    }
}

/// The metadata client's decoders take bytes from the network: bounded, never trapping.
@Suite struct MetadataDecodingTests {
    @Test func base64RoundTripsAndRefusesMalformedInput() {
        for n in 0..<40 {
            let b = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            #expect(Base64.decode(Base64.encode(b)) == b)
        }
        #expect(Base64.encode("a") == "YQ==" && Base64.encode("/chimaera/") == "L2NoaW1hZXJhLw==")
        for bad in ["Y", "YQ=", "Y===", "=QQQ", "YQ==YQ==", "Y-Q=", "YQ=a", "\u{e9}AAA"] {
            #expect(Base64.decode(bad) == nil, "\(bad) was accepted")
        }
    }

    @Test func jsonParsesEtcdRepliesAndRefusesHostileOnes() throws {
        let reply = #"{"header":{"revision":"12"},"kvs":[{"key":"YQ==","mod_revision":"3","value":"MQ=="}],"count":"1","more":false,"s":"\u00e9\n\ud83d\ude00"}"#
        let j = try #require(MetadataJSON.parse(Array(reply.utf8)))
        #expect(j["header"]?["revision"]?.int64 == 12)
        #expect(j["kvs"]?.array?.first?["mod_revision"]?.int64 == 3)
        #expect(j["more"]?.bool == false && j["s"]?.string == "\u{e9}\n\u{1F600}")
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        for bad in [deep, "{", "{\"a\":}", "[1,]", "\"\\ud800\"", "{\"a\":1} x", "\"\u{01}\"", "nul", "1e", "--1",
                    "{\"a\" 1}", "\"\\q\""] {
            #expect(MetadataJSON.parse(Array(bad.utf8)) == nil, "\(bad) was accepted")
        }
        #expect(MetadataJSON.parse([0x22, 0xFF, 0x22]) == nil, "invalid UTF-8 accepted")
        #expect(MetadataJSON.quote("a\"b\\\n\u{01}") == #""a\"b\\\n\u0001""#)
    }

    @Test func chunkedBodiesDecodeAndOversizedOnesAreRefused() throws {
        // A socket pair stands in for etcd: the reader sees exactly these bytes.
        var fds: [CInt] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let wire = Array("5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n".utf8)
        #expect(wire.withUnsafeBytes { write(fds[1], $0.baseAddress, wire.count) } == wire.count)
        let c = EtcdHTTP.Connection(fd: fds[0])
        var r = EtcdHTTP.BodyReader(chunked: true, length: nil, pending: [], maxBody: 1024)
        var body: [UInt8] = []
        while let p = try r.next(c, deadline: chi_now_ns() + 1_000_000_000) { body += p }
        #expect(String(decoding: body, as: UTF8.self) == "hello, world")
        var big = EtcdHTTP.BodyReader(chunked: true, length: nil, pending: Array("ffffff\r\n".utf8), maxBody: 1024)
        #expect(throws: EtcdHTTP.Failure.self) { _ = try big.next(c, deadline: chi_now_ns() + 100_000_000) }
        var long = EtcdHTTP.BodyReader(chunked: false, length: 1 << 30, pending: [], maxBody: 1024)
        #expect(throws: EtcdHTTP.Failure.self) { _ = try long.next(c, deadline: chi_now_ns() + 100_000_000) }
        #expect(throws: EtcdHTTP.Failure.self) { _ = try EtcdHTTP.parseHead(Array("HTTP/1.1 abc\r\n".utf8)) }
        #expect(try EtcdHTTP.parseHead(Array("HTTP/1.1 200 OK\r\nContent-Length: 5".utf8)).length == 5)
    }
}
