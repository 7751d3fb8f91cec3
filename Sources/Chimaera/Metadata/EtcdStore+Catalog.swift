/// The pool catalog in etcd: creation by name, tombstones, compare-on-version writes.
extension EtcdStore {
    func nameKey(_ name: String) -> String { prefix + "pool/name/" + name }
    func idKey(_ id: UInt64) -> String { prefix + "pool/id/\(id)" }

    /// The longest pool name accepted (the C ABI's CHI_NAME_MAX, less its NUL).
    static let maxName = 63

    static func check(_ spec: PoolSpec) throws(MetadataError) {
        guard !spec.name.isEmpty, spec.name.utf8.count <= maxName, !spec.name.contains("\0") else {
            throw .rejected("pool name \"\(spec.name)\" is empty, longer than \(maxName) bytes or holds NUL")
        }
        guard !spec.module.isEmpty, spec.module.utf8.count <= maxName else {
            throw .rejected("module name \"\(spec.module)\" is empty or too long")
        }
        guard Self.validPerNode(Int64(spec.containersPerNode)) else {
            throw .rejected("containers per node \(spec.containersPerNode & 0xFFFF) (replicas \(spec.containersPerNode >> 16)) is not in 1...65535")
        }
    }

    /// The count as the runtime carries it: containers per node in the low 16 bits, the
    /// replica count (0 or 1 for none) in the next 16 (Runtime.createPool splits them).
    static func validPerNode(_ v: Int64) -> Bool {
        v >= 1 && v <= 0xFFFF_FFFF && (1...0xFFFF).contains(v & 0xFFFF)
    }

    /// A record as stored (the version is the key's mod revision, not part of the value).
    static func encode(_ r: PoolRecord) -> [UInt8] {
        let s = "{\"name\":\(MetadataJSON.quote(r.spec.name)),\"module\":\(MetadataJSON.quote(r.spec.module)),"
            + "\"id\":\"\(r.id)\",\"per_node\":\(r.spec.containersPerNode),"
            + "\"params\":\(MetadataJSON.quote(Base64.encode(r.spec.params))),\"destroyed\":\(r.destroyed)}"
        return Array(s.utf8)
    }

    /// The record in `kv`, checked field by field.
    static func decode(_ kv: KV) throws(MetadataError) -> PoolRecord {
        guard let j = MetadataJSON.parse(kv.value), let name = j["name"]?.string, let module = j["module"]?.string,
              let idText = j["id"]?.string, let id = UInt64(idText), id != 0,
              let perNode = j["per_node"]?.int64, Self.validPerNode(perNode),
              let p = j["params"]?.string, let params = Base64.decode(p), let destroyed = j["destroyed"]?.bool
        else { throw .badResponse("pool entry \(kv.key) is not a pool record") }
        let spec = PoolSpec(name: name, module: module, containersPerNode: Int(perNode), params: params)
        return PoolRecord(spec: spec, id: id, destroyed: destroyed, version: kv.modRevision)
    }

    package func createPool(_ spec: PoolSpec) throws(MetadataError) -> (record: PoolRecord, created: Bool) {
        try Self.check(spec)
        let nk = nameKey(spec.name)
        let ck = counterKey("pool_id")
        for _ in 0..<Self.maxAttempts {
            // The name and the id counter read at one revision.
            let read = try txn([], success: [rangeOp(nk), rangeOp(ck)])
            let current = try Self.rangeResult(read.responses, 0).first
            let counter = try Self.rangeResult(read.responses, 1).first
            if let current {
                let r = try Self.decode(current)
                if !r.destroyed { return (r, false) }
            }
            let id = max(Self.firstPoolId, try Self.counterValue(counter) + 1)
            var record = PoolRecord(spec: spec, id: id)
            let value = Self.encode(record)
            // Both compares: the name is as read (absent or that tombstone) and no other
            // allocation took the id meanwhile.
            let w = try txn([modIs(nk, current?.modRevision ?? 0), modIs(ck, counter?.modRevision ?? 0)],
                            success: [putOp(ck, Array(String(id).utf8)), putOp(nk, value), putOp(idKey(id), value)])
            if w.succeeded {
                record.version = w.revision
                return (record, true)
            }
        }
        throw .unavailable("pool \"\(spec.name)\": \(Self.maxAttempts) attempts lost to concurrent writers")
    }

    package func pool(named name: String) throws(MetadataError) -> PoolRecord? {
        guard let kv = try range(nameKey(name)).kvs.first else { return nil }
        return try Self.decode(kv)
    }

    package func pool(id: UInt64) throws(MetadataError) -> PoolRecord? {
        guard let kv = try range(idKey(id)).kvs.first else { return nil }
        return try Self.decode(kv)
    }

    package func pools() throws(MetadataError) -> (records: [PoolRecord], revision: Int64) {
        let r = try range(prefix + "pool/name/", prefix: true)
        var out: [PoolRecord] = []
        for kv in r.kvs { out.append(try Self.decode(kv)) }
        return (out, r.revision)
    }

    package func putPool(_ record: PoolRecord, expectedVersion: Int64) throws(MetadataError) -> Int64 {
        try Self.check(record.spec)
        let nk = nameKey(record.name)
        let ik = idKey(record.id)
        let value = Self.encode(record)
        // The name first: a writer whose view is stale meets `.conflict`, whatever it writes.
        let read = try txn([], success: [rangeOp(nk), rangeOp(ik)])
        let name = try Self.rangeResult(read.responses, 0).first
        guard (name?.modRevision ?? 0) == expectedVersion else { throw .conflict(current: name?.modRevision ?? 0) }
        // Then the id: a retired id (a tombstone under pool/id) never comes back live, and an
        // id is one name's only.
        let id = try Self.rangeResult(read.responses, 1).first
        if let id {
            let held = try Self.decode(id)
            if held.name != record.name { throw .rejected("pool id \(record.id) belongs to \"\(held.name)\"") }
            if held.destroyed && !record.destroyed { throw .destroyed(held) }
        }
        let w = try txn([modIs(nk, expectedVersion), modIs(ik, id?.modRevision ?? 0)],
                        success: [putOp(nk, value), putOp(ik, value)], failure: [rangeOp(nk)])
        if w.succeeded { return w.revision }
        // Either the name moved, or the id entry did (which only a write of the same name
        // does): the caller re-reads either way.
        throw .conflict(current: try Self.rangeResult(w.responses, 0).first?.modRevision ?? 0)
    }

    package func destroyPool(named name: String, expectedVersion: Int64) throws(MetadataError) -> PoolRecord {
        let nk = nameKey(name)
        guard let kv = try range(nk).kvs.first else { throw .notFound("pool \"\(name)\"") }
        var r = try Self.decode(kv)
        if r.destroyed { throw .destroyed(r) }
        guard kv.modRevision == expectedVersion else { throw .conflict(current: kv.modRevision) }
        r.destroyed = true
        let value = Self.encode(r)
        let w = try txn([modIs(nk, expectedVersion)], success: [putOp(nk, value), putOp(idKey(r.id), value)],
                        failure: [rangeOp(nk)])
        guard w.succeeded else {
            throw .conflict(current: try Self.rangeResult(w.responses, 0).first?.modRevision ?? 0)
        }
        r.version = w.revision
        return r
    }
}
