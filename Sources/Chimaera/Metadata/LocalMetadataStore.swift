import CChimaera
import Glibc

/// The metadata as one process's state machine: the same entries, revisions, tombstones,
/// leases and watches as `EtcdStore`, in memory.
///
/// This is the part of the embedded mode that does not depend on the network: the leader
/// applies its log of catalog changes to one of these, and so does every follower that
/// replays the log. Replicating the log (and electing the leader) is not here. On its own it
/// serves a single-node runtime and tests. Leases expire by `clock` (nanoseconds), checked
/// on every call, so a test drives expiry with a manual clock.
package final class LocalMetadataStore: MetadataStore, @unchecked Sendable {
    private struct Entry {
        var value: [UInt8]
        var modRevision: Int64
        var lease: Int64
    }

    private struct Lease {
        var node: UInt32
        var ttlNs: UInt64
        var expiresAt: UInt64
    }

    private let clock: @Sendable () -> UInt64
    private let m = Mutex()
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let condLock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var revision: Int64 = 1
    private var entries: [String: Entry] = [:]
    private var leases: [Int64: Lease] = [:]
    private var nextLease: Int64 = 1
    /// Every change since creation, for watches; compaction is not needed at catalog rates.
    private var log: [MetadataEvent] = []

    package init(clock: @escaping @Sendable () -> UInt64 = { chi_now_ns() }) {
        self.clock = clock
        pthread_cond_init(changed, nil)
        pthread_mutex_init(condLock, nil)
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(condLock)
        changed.deallocate()
        condLock.deallocate()
    }

    // MARK: the state machine (callers hold `m`)

    /// Applies one write at a new revision and logs what it means.
    private func write(_ puts: [(String, [UInt8], Int64)], event: MetadataEvent.Change?) -> Int64 {
        revision += 1
        for (k, v, lease) in puts { entries[k] = Entry(value: v, modRevision: revision, lease: lease) }
        if let event { log.append(MetadataEvent(change: event, revision: revision)) }
        return revision
    }

    private func expire() {
        let now = clock()
        for (id, l) in leases.sorted(by: { $0.key < $1.key }) where l.expiresAt <= now {
            leases[id] = nil
            let key = "node/\(l.node)"
            if entries[key]?.lease == id {
                revision += 1
                entries[key] = nil
                log.append(MetadataEvent(change: .nodeDown(l.node), revision: revision))
            }
        }
    }

    private func locked<T>(_ body: () throws(MetadataError) -> T) throws(MetadataError) -> T {
        let before = log.count
        let r = try m.withLock { () throws(MetadataError) -> T in
            expire()
            return try body()
        }
        if m.withLock({ log.count }) != before { wake() }
        return r
    }

    private func wake() {
        pthread_mutex_lock(condLock)
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(condLock)
    }

    private func record(_ key: String) throws(MetadataError) -> PoolRecord? {
        guard let e = entries[key] else { return nil }
        return try EtcdStore.decode(EtcdStore.KV(key: key, value: e.value, createRevision: 0,
                                                 modRevision: e.modRevision, lease: 0))
    }

    // MARK: MetadataStore

    package func createPool(_ spec: PoolSpec) throws(MetadataError) -> (record: PoolRecord, created: Bool) {
        try EtcdStore.check(spec)
        return try locked { () throws(MetadataError) -> (record: PoolRecord, created: Bool) in
            if let r = try record("pool/name/" + spec.name), !r.destroyed { return (r, false) }
            let id = max(EtcdStore.firstPoolId, counter("pool_id") + 1)
            var r = PoolRecord(spec: spec, id: id)
            let v = EtcdStore.encode(r)
            r.version = write([("counter/pool_id", Array(String(id).utf8), 0), ("pool/name/" + spec.name, v, 0),
                               ("pool/id/\(id)", v, 0)], event: nil)
            log.append(MetadataEvent(change: .pool(r), revision: r.version))
            return (r, true)
        }
    }

    private func counter(_ name: String) -> UInt64 {
        entries["counter/" + name].flatMap { String(validating: $0.value, as: UTF8.self) }.flatMap { UInt64($0) } ?? 0
    }

    package func pool(named name: String) throws(MetadataError) -> PoolRecord? {
        try locked { () throws(MetadataError) -> PoolRecord? in try record("pool/name/" + name) }
    }

    package func pool(id: UInt64) throws(MetadataError) -> PoolRecord? {
        try locked { () throws(MetadataError) -> PoolRecord? in try record("pool/id/\(id)") }
    }

    package func pools() throws(MetadataError) -> (records: [PoolRecord], revision: Int64) {
        try locked { () throws(MetadataError) -> (records: [PoolRecord], revision: Int64) in
            var out: [PoolRecord] = []
            for k in entries.keys.sorted() where k.hasPrefix("pool/name/") {
                if let r = try record(k) { out.append(r) }
            }
            return (out, revision)
        }
    }

    package func putPool(_ record: PoolRecord, expectedVersion: Int64) throws(MetadataError) -> Int64 {
        try EtcdStore.check(record.spec)
        return try locked { () throws(MetadataError) -> Int64 in
            let nk = "pool/name/" + record.name
            let now = entries[nk]?.modRevision ?? 0
            guard now == expectedVersion else { throw .conflict(current: now) }
            if let held = try self.record("pool/id/\(record.id)") {
                if held.name != record.name { throw .rejected("pool id \(record.id) belongs to \"\(held.name)\"") }
                if held.destroyed && !record.destroyed { throw .destroyed(held) }
            }
            var r = record
            let v = EtcdStore.encode(r)
            r.version = write([(nk, v, 0), ("pool/id/\(r.id)", v, 0)], event: nil)
            log.append(MetadataEvent(change: .pool(r), revision: r.version))
            return r.version
        }
    }

    package func destroyPool(named name: String, expectedVersion: Int64) throws(MetadataError) -> PoolRecord {
        try locked { () throws(MetadataError) -> PoolRecord in
            guard var r = try record("pool/name/" + name) else { throw .notFound("pool \"\(name)\"") }
            if r.destroyed { throw .destroyed(r) }
            guard r.version == expectedVersion else { throw .conflict(current: r.version) }
            r.destroyed = true
            let v = EtcdStore.encode(r)
            r.version = write([("pool/name/" + name, v, 0), ("pool/id/\(r.id)", v, 0)], event: nil)
            log.append(MetadataEvent(change: .pool(r), revision: r.version))
            return r
        }
    }

    package func allocateId(_ name: String) throws(MetadataError) -> UInt64 {
        try locked { () throws(MetadataError) -> UInt64 in
            let next = counter(name) + 1
            _ = write([("counter/" + name, Array(String(next).utf8), 0)], event: nil)
            return next
        }
    }

    package func putContainer(pool: UInt64, container: UInt32, node: UInt32,
                              expectedVersion: Int64) throws(MetadataError) -> Int64 {
        try locked { () throws(MetadataError) -> Int64 in
            let key = "container/\(pool)/\(container)"
            let now = entries[key]?.modRevision ?? 0
            guard now == expectedVersion else { throw .conflict(current: now) }
            let v = write([(key, Array(String(node).utf8), 0)], event: nil)
            log.append(MetadataEvent(change: .container(ContainerPlacement(pool: pool, container: container, node: node,
                                                                           version: v)), revision: v))
            return v
        }
    }

    package func containers(pool: UInt64) throws(MetadataError) -> [ContainerPlacement] {
        try locked { () throws(MetadataError) -> [ContainerPlacement] in
            let p = "container/\(pool)/"
            return entries.compactMap { k, e -> ContainerPlacement? in
                guard k.hasPrefix(p), let c = UInt32(k.dropFirst(p.count)),
                      let n = String(validating: e.value, as: UTF8.self).flatMap({ UInt32($0) }) else { return nil }
                return ContainerPlacement(pool: pool, container: c, node: n, version: e.modRevision)
            }.sorted { $0.container < $1.container }
        }
    }

    package func registerNode(_ node: UInt32, address: String, ttlSeconds: Int) throws(MetadataError) -> MetadataLease {
        guard (1...86_400).contains(ttlSeconds) else { throw .rejected("lease TTL \(ttlSeconds) s is not in 1...86400") }
        return try locked { () throws(MetadataError) -> MetadataLease in
            let id = nextLease
            nextLease += 1
            let ttl = UInt64(ttlSeconds) * 1_000_000_000
            leases[id] = Lease(node: node, ttlNs: ttl, expiresAt: clock() + ttl)
            _ = write([("node/\(node)", Array(address.utf8), id)], event: .nodeUp(node, address: address))
            return MetadataLease(id: id, node: node, ttlSeconds: ttlSeconds)
        }
    }

    package func keepAlive(_ lease: MetadataLease) throws(MetadataError) -> Int {
        try locked { () throws(MetadataError) -> Int in
            guard var l = leases[lease.id] else { throw .notFound("lease \(lease.id) of node \(lease.node)") }
            l.expiresAt = clock() + l.ttlNs
            leases[lease.id] = l
            return Int(l.ttlNs / 1_000_000_000)
        }
    }

    package func revoke(_ lease: MetadataLease) throws(MetadataError) {
        try locked { () throws(MetadataError) in
            guard let l = leases.removeValue(forKey: lease.id) else { throw .notFound("lease \(lease.id)") }
            if entries["node/\(l.node)"]?.lease == lease.id {
                revision += 1
                entries["node/\(l.node)"] = nil
                log.append(MetadataEvent(change: .nodeDown(l.node), revision: revision))
            }
        }
    }

    package func liveNodes() throws(MetadataError) -> [UInt32] {
        try locked { () throws(MetadataError) -> [UInt32] in
            entries.keys.compactMap { $0.hasPrefix("node/") ? UInt32($0.dropFirst(5)) : nil }.sorted()
        }
    }

    package func watch(fromRevision revision: Int64, _ onEvent: @escaping @Sendable (MetadataEvent) -> Void,
                       onError: @escaping @Sendable (MetadataError) -> Void) throws(MetadataError) -> MetadataWatch {
        guard revision >= 0 else { throw .rejected("watch revision \(revision) is negative") }
        let from = m.withLock { revision == 0 ? self.revision : revision }
        let w = LocalWatch(store: self, after: from, onEvent: onEvent)
        try w.start()
        return w
    }

    /// The events after revision `after`, waiting up to `waitNs` for one; for LocalWatch.
    fileprivate func events(after: Int64, waitNs: UInt64) -> [MetadataEvent] {
        let take = { () -> [MetadataEvent] in
            self.m.withLock {
                self.expire()
                // The log is in revision order: binary search would do; catalogs are small.
                return self.log.filter { $0.revision > after }
            }
        }
        var out = take()
        if !out.isEmpty { return out }
        pthread_mutex_lock(condLock)
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let ns = Int(ts.tv_nsec) + Int(waitNs % 1_000_000_000)
        ts.tv_sec += Int(waitNs / 1_000_000_000) + ns / 1_000_000_000
        ts.tv_nsec = ns % 1_000_000_000
        _ = pthread_cond_timedwait(changed, condLock, &ts)
        pthread_mutex_unlock(condLock)
        out = take()
        return out
    }
}

/// A LocalMetadataStore watch: a thread that delivers the log past its position.
private final class LocalWatch: MetadataWatch, @unchecked Sendable {
    let store: LocalMetadataStore
    let onEvent: @Sendable (MetadataEvent) -> Void
    private var after: Int64
    private let m = Mutex()
    private var cancelled = false
    private var thread = pthread_t()

    init(store: LocalMetadataStore, after: Int64, onEvent: @escaping @Sendable (MetadataEvent) -> Void) {
        self.store = store
        self.after = after
        self.onEvent = onEvent
    }

    func start() throws(MetadataError) {
        let arg = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let w = Unmanaged<LocalWatch>.fromOpaque(arg!).takeRetainedValue()
            w.run()
            return nil
        }, arg)
        guard rc == 0 else {
            Unmanaged<LocalWatch>.fromOpaque(arg).release()
            throw .unavailable("cannot start the watch thread: \(Sys.errnoText(rc))")
        }
    }

    private var isCancelled: Bool { m.withLock { cancelled } }

    private func run() {
        while !isCancelled {
            // A bounded wait, so cancel() needs no wake-up of its own and expiry is noticed.
            for e in store.events(after: after, waitNs: 100_000_000) {
                if isCancelled { return }
                onEvent(e)
                after = e.revision
            }
        }
    }

    func cancel() {
        let first = m.withLock { () -> Bool in
            defer { cancelled = true }
            return !cancelled
        }
        guard first else { return }
        if pthread_equal(pthread_self(), thread) == 0 { pthread_join(thread, nil) } else { pthread_detach(thread) }
    }
}
