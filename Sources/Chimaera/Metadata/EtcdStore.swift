import CChimaera
import Glibc

/// The cluster metadata in etcd v3 (`cluster.metadata: etcd://HOST:PORT,...`), through its
/// JSON gateway (`/v3/kv/range`, `/v3/kv/txn`, `/v3/lease/*`, `/v3/watch`).
///
/// Keys, under `prefix`:
/// - `pool/name/<name>`: the pool's record (live or tombstone), the entry creators race on;
/// - `pool/id/<id>`: the same record, kept as a tombstone once the name moves on;
/// - `counter/<name>`: the last value `allocateId` handed out (pool ids use `pool_id`);
/// - `container/<pool>/<container>`: the node a container lives on;
/// - `node/<id>`: a live node's address, attached to its lease.
///
/// Every write that depends on a read is one transaction comparing the mod revision it read,
/// so concurrent writers serialize in etcd and a loser re-reads. A request goes to the last
/// endpoint that answered; on a connection failure, a timeout or a member without a leader it
/// moves to the next, until the request timeout has passed. A request that was sent but not
/// answered may have been applied: the retry then meets its own write (create returns the
/// pool it made; a compare-on-version write reports `.conflict`; an id is skipped, never
/// reused).
package final class EtcdStore: MetadataStore, @unchecked Sendable {
    package let endpoints: [EtcdEndpoint]
    /// The key prefix of this cluster's entries; ends with "/".
    package let prefix: String
    /// How long one call may take, all endpoints and retries included.
    package let timeoutMs: Int
    /// The largest response body accepted.
    package let maxResponse: Int
    /// The first pool id handed out: 1 is the admin pool on every node.
    package static let firstPoolId: UInt64 = UInt64(CHI_ADMIN_POOL_ID) + 1
    /// How often a compare-and-swap loop re-reads before it gives up.
    static let maxAttempts = 256

    private let lock = Mutex()
    private var preferred = 0

    /// - Throws: `.rejected` for no endpoint or a prefix that does not start with "/".
    package init(endpoints: [EtcdEndpoint], prefix: String = "/chimaera/", timeoutMs: Int = 5000,
                 maxResponse: Int = 8 << 20) throws(MetadataError) {
        guard !endpoints.isEmpty else { throw .rejected("no etcd endpoint given") }
        guard prefix.hasPrefix("/"), !prefix.contains("\0") else { throw .rejected("key prefix must start with /") }
        self.endpoints = endpoints
        self.prefix = prefix.hasSuffix("/") ? prefix : prefix + "/"
        self.timeoutMs = max(1, timeoutMs)
        self.maxResponse = maxResponse
    }

    // MARK: requests

    /// POSTs `body` to `path` on the first endpoint that answers, failing over; the parsed
    /// JSON of a 200 reply.
    func call(_ path: String, _ body: String) throws(MetadataError) -> MetadataJSON {
        let deadline = chi_now_ns() + UInt64(timeoutMs) * 1_000_000
        let n = endpoints.count
        let start = lock.withLock { preferred }
        var last = "no attempt was made"
        while true {
            for k in 0..<n {
                let i = (start + k) % n
                let e = endpoints[i]
                let now = chi_now_ns()
                guard now < deadline else { break }
                // One attempt may use half of what is left, so a member that accepts but never
                // answers (stopped, partitioned) leaves time for the others.
                let remaining = deadline - now
                let attempt = n == 1 ? deadline : now + max(remaining / 2, min(remaining, 100_000_000))
                let r: EtcdHTTP.Response
                do throws(EtcdHTTP.Failure) {
                    r = try EtcdHTTP.post(e, path, body, maxBody: maxResponse, deadline: attempt)
                } catch {
                    last = "\(e): \(Self.describe(error))"
                    continue
                }
                guard let json = MetadataJSON.parse(r.body) else {
                    last = "\(e): HTTP \(r.status) with a body that is not JSON"
                    continue
                }
                if r.status == 200 {
                    if i != start { lock.withLock { preferred = i } }
                    return json
                }
                let message = json["message"]?.string ?? json["error"]?.string ?? "HTTP \(r.status)"
                let code = json["code"]?.int64 ?? 0
                // gRPC Unavailable (14) or DeadlineExceeded (4), or a member that lost its
                // leader: another member may do better.
                if r.status == 503 || code == 14 || code == 4 || message.contains("leader")
                    || message.contains("timed out") {
                    last = "\(e): \(message)"
                    continue
                }
                if code == 5 { throw .notFound(message) }
                throw .rejected("\(e): \(message)")
            }
            guard chi_now_ns() + 20_000_000 < deadline else { break }
            // Every member failed this round (an election after a member died): a short pause.
            var ts = timespec(tv_sec: 0, tv_nsec: 20_000_000)
            nanosleep(&ts, nil)
        }
        throw .unavailable("no etcd endpoint of \(endpoints.map(\.description).joined(separator: ",")) "
                           + "answered within \(timeoutMs) ms (last: \(last))")
    }

    static func describe(_ f: EtcdHTTP.Failure) -> String {
        switch f {
        case .connect(let s): return "cannot connect: \(s)"
        case .io(let s): return s
        case .timeout: return "timed out"
        case .malformed(let s): return "malformed reply: \(s)"
        case .tooLarge: return "reply larger than the limit"
        }
    }

    // MARK: keys and values

    /// One key-value as etcd reports it.
    struct KV {
        var key: String
        var value: [UInt8]
        var createRevision: Int64
        var modRevision: Int64
        var lease: Int64
    }

    func b64(_ key: String) -> String { MetadataJSON.quote(Base64.encode(key)) }

    /// The end of the range of every key starting with `p` (its last byte plus one).
    static func rangeEnd(_ p: String) -> String {
        var b = Array(p.utf8)
        while let l = b.last, l == 0xFF { b.removeLast() }
        guard !b.isEmpty else { return Base64.encode([0]) }
        b[b.count - 1] += 1
        return Base64.encode(b)
    }

    static func revision(_ j: MetadataJSON) throws(MetadataError) -> Int64 {
        guard let r = j["header"]?["revision"]?.int64, r >= 0 else { throw .badResponse("no header revision") }
        return r
    }

    static func kv(_ j: MetadataJSON) throws(MetadataError) -> KV {
        guard let k = j["key"]?.string, let kb = Base64.decode(k), let key = String(validating: kb, as: UTF8.self) else {
            throw .badResponse("a key that is not base64 UTF-8")
        }
        var value: [UInt8] = []
        if let v = j["value"] {
            guard let s = v.string, let b = Base64.decode(s) else { throw .badResponse("a value that is not base64") }
            value = b
        }
        func int(_ name: String) throws(MetadataError) -> Int64 {
            guard let v = j[name] else { return 0 }
            guard let i = v.int64 else { throw .badResponse("\(name) is not an integer") }
            return i
        }
        return KV(key: key, value: value, createRevision: try int("create_revision"),
                  modRevision: try int("mod_revision"), lease: try int("lease"))
    }

    static func kvs(_ j: MetadataJSON?) throws(MetadataError) -> [KV] {
        guard let j else { return [] }
        guard let list = j["kvs"] else { return [] }
        guard let a = list.array else { throw .badResponse("kvs is not a list") }
        var out: [KV] = []
        for x in a { out.append(try kv(x)) }
        return out
    }

    /// The entries under `key` (all with that prefix when `prefix`), and the read revision.
    func range(_ key: String, prefix isPrefix: Bool = false) throws(MetadataError) -> (kvs: [KV], revision: Int64) {
        var body = "{\"key\":\(b64(key))"
        if isPrefix { body += ",\"range_end\":\(MetadataJSON.quote(Self.rangeEnd(key)))" }
        let j = try call("/v3/kv/range", body + "}")
        return (try Self.kvs(j), try Self.revision(j))
    }

    /// A compare: `key`'s mod revision equals `version` (0 holds for an absent key).
    func modIs(_ key: String, _ version: Int64) -> String {
        "{\"key\":\(b64(key)),\"result\":\"EQUAL\",\"target\":\"MOD\",\"mod_revision\":\"\(version)\"}"
    }

    func putOp(_ key: String, _ value: [UInt8], lease: Int64 = 0) -> String {
        var s = "{\"request_put\":{\"key\":\(b64(key)),\"value\":\(MetadataJSON.quote(Base64.encode(value)))"
        if lease != 0 { s += ",\"lease\":\"\(lease)\"" }
        return s + "}}"
    }

    func rangeOp(_ key: String) -> String { "{\"request_range\":{\"key\":\(b64(key))}}" }

    /// One transaction; whether the compares held, the responses of the branch taken and
    /// the revision after it.
    func txn(_ compare: [String], success: [String], failure: [String] = [])
        throws(MetadataError) -> (succeeded: Bool, responses: [MetadataJSON], revision: Int64)
    {
        let body = "{\"compare\":[\(compare.joined(separator: ","))],\"success\":[\(success.joined(separator: ","))],"
            + "\"failure\":[\(failure.joined(separator: ","))]}"
        let j = try call("/v3/kv/txn", body)
        let ok = j["succeeded"]?.bool ?? false
        let responses = j["responses"]?.array ?? []
        return (ok, responses, try Self.revision(j))
    }

    /// The key-values of the `i`th response of a transaction, which must be a range.
    static func rangeResult(_ responses: [MetadataJSON], _ i: Int) throws(MetadataError) -> [KV] {
        guard i < responses.count, let r = responses[i]["response_range"] else {
            throw .badResponse("transaction reply lacks range result \(i)")
        }
        return try kvs(r)
    }

    // MARK: counters

    func counterKey(_ name: String) -> String { prefix + "counter/" + name }

    static func counterValue(_ kv: KV?) throws(MetadataError) -> UInt64 {
        guard let kv else { return 0 }
        guard let s = String(validating: kv.value, as: UTF8.self), let v = UInt64(s) else {
            throw .badResponse("counter \(kv.key) is not a number")
        }
        return v
    }

    package func allocateId(_ name: String) throws(MetadataError) -> UInt64 {
        let key = counterKey(name)
        for _ in 0..<Self.maxAttempts {
            let cur = try range(key).kvs.first
            let next = try Self.counterValue(cur) + 1
            let r = try txn([modIs(key, cur?.modRevision ?? 0)], success: [putOp(key, Array(String(next).utf8))])
            if r.succeeded { return next }
        }
        throw .unavailable("counter \(name): \(Self.maxAttempts) attempts lost to concurrent writers")
    }

    // MARK: containers

    func containerPrefix(_ pool: UInt64) -> String { prefix + "container/\(pool)/" }

    package func putContainer(pool: UInt64, container: UInt32, node: UInt32,
                              expectedVersion: Int64) throws(MetadataError) -> Int64 {
        let key = containerPrefix(pool) + String(container)
        let r = try txn([modIs(key, expectedVersion)], success: [putOp(key, Array(String(node).utf8))],
                        failure: [rangeOp(key)])
        if r.succeeded { return r.revision }
        throw .conflict(current: try Self.rangeResult(r.responses, 0).first?.modRevision ?? 0)
    }

    package func containers(pool: UInt64) throws(MetadataError) -> [ContainerPlacement] {
        let p = containerPrefix(pool)
        var out: [ContainerPlacement] = []
        for kv in try range(p, prefix: true).kvs {
            guard let c = UInt32(kv.key.dropFirst(p.count)), let s = String(validating: kv.value, as: UTF8.self),
                  let node = UInt32(s) else { throw .badResponse("container entry \(kv.key)") }
            out.append(ContainerPlacement(pool: pool, container: c, node: node, version: kv.modRevision))
        }
        return out.sorted { $0.container < $1.container }
    }

    // MARK: liveness

    func nodeKey(_ node: UInt32) -> String { prefix + "node/\(node)" }

    package func registerNode(_ node: UInt32, address: String, ttlSeconds: Int) throws(MetadataError) -> MetadataLease {
        guard (1...86_400).contains(ttlSeconds) else { throw .rejected("lease TTL \(ttlSeconds) s is not in 1...86400") }
        let g = try call("/v3/lease/grant", "{\"TTL\":\"\(ttlSeconds)\"}")
        guard let id = g["ID"]?.int64, id != 0, let ttl = g["TTL"]?.int64, ttl > 0 else {
            throw .badResponse("lease grant without an ID and TTL")
        }
        let r = try txn([], success: [putOp(nodeKey(node), Array(address.utf8), lease: id)])
        guard r.succeeded else { throw .badResponse("an unconditional transaction failed") }
        return MetadataLease(id: id, node: node, ttlSeconds: Int(ttl))
    }

    package func keepAlive(_ lease: MetadataLease) throws(MetadataError) -> Int {
        let j = try call("/v3/lease/keepalive", "{\"ID\":\"\(lease.id)\"}")
        if let e = j["error"] { throw .rejected(e["message"]?.string ?? "keep-alive failed") }
        guard let result = j["result"] else { throw .badResponse("keep-alive without a result") }
        // etcd answers an expired lease with TTL 0 (the field left out).
        let ttl = result["TTL"]?.int64 ?? 0
        guard ttl > 0 else { throw .notFound("lease \(lease.id) of node \(lease.node)") }
        return Int(ttl)
    }

    package func revoke(_ lease: MetadataLease) throws(MetadataError) {
        _ = try call("/v3/lease/revoke", "{\"ID\":\"\(lease.id)\"}")
    }

    package func liveNodes() throws(MetadataError) -> [UInt32] {
        let p = prefix + "node/"
        var out: [UInt32] = []
        for kv in try range(p, prefix: true).kvs {
            guard let n = UInt32(kv.key.dropFirst(p.count)) else { throw .badResponse("node entry \(kv.key)") }
            out.append(n)
        }
        return out.sorted()
    }
}

extension EtcdStore {
    /// The store `cluster.metadata` names, or nil for `embedded` (the runtime's own log).
    /// - Parameter timeoutMs: each call's limit; the runtime passes `cluster.timeout_ms`.
    package static func forConfig(_ c: MetadataConfig, timeoutMs: Int) throws(MetadataError) -> EtcdStore? {
        guard case .etcd(let hosts, let prefix) = c else { return nil }
        return try EtcdStore(endpoints: hosts.map { EtcdEndpoint(host: $0.host, port: $0.port) }, prefix: prefix,
                             timeoutMs: timeoutMs)
    }
}
