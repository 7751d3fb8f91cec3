import CChimaera
import Dispatch
import Glibc
import Testing

@testable import Chimaera

/// Values gathered from several threads.
private final class Gathered<T>: @unchecked Sendable {
    private let m = Mutex()
    private var list: [T] = []

    func add(_ x: T) { m.withLock { list.append(x) } }
    var items: [T] { m.withLock { list } }
}

/// Waits up to `ms` for `cond`.
private func eventually(_ ms: Int, _ cond: () throws -> Bool) rethrows -> Bool {
    let deadline = chi_now_ns() + UInt64(ms) * 1_000_000
    while chi_now_ns() < deadline {
        if try cond() { return true }
        usleep(50_000)
    }
    return try cond()
}

private func spec(_ name: String, perNode: Int = 2) -> PoolSpec {
    PoolSpec(name: name, module: "small_message", containersPerNode: perNode, params: Array("p=\(name)".utf8))
}

/// EtcdStore against a real 3-member etcd cluster on loopback (one cluster per test: some
/// tests kill members).
@Suite(.serialized, .enabled(if: EtcdTestCluster.binary != nil, EtcdTestCluster.skipReason))
struct EtcdStoreTests {
    @Test func concurrentCreatorsOfOneNameGetTheSameId() throws {
        let cluster = try EtcdTestCluster()
        defer { cluster.stop() }
        // Eight "nodes", each its own store, each preferring a different member.
        let results = Gathered<(UInt64, Bool)>()
        let errors = Gathered<String>()
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            do {
                var eps = cluster.endpoints
                eps.append(contentsOf: eps.prefix(i % 3))
                let store = try EtcdStore(endpoints: Array(eps.dropFirst(i % 3)), prefix: "/t/", timeoutMs: 5000)
                let r = try store.createPool(spec("shared"))
                results.add((r.record.id, r.created))
            } catch {
                errors.add("\(error)")
            }
        }
        #expect(errors.items.isEmpty, "\(errors.items)")
        let ids = Set(results.items.map(\.0))
        #expect(results.items.count == 8)
        #expect(ids.count == 1, "creators saw ids \(ids)")
        #expect(results.items.filter(\.1).count == 1, "exactly one creator made it")
        let store = try cluster.store(prefix: "/t/")
        let stored = try #require(try store.pool(named: "shared"))
        #expect(stored.id == ids.first && !stored.destroyed && stored.spec == spec("shared"))
        #expect(stored.id == EtcdStore.firstPoolId)
    }

    @Test func idsAreUniqueUnderConcurrency() throws {
        let cluster = try EtcdTestCluster()
        defer { cluster.stop() }
        let store = try cluster.store(prefix: "/u/")
        let ids = Gathered<UInt64>()
        let pools = Gathered<UInt64>()
        let errors = Gathered<String>()
        DispatchQueue.concurrentPerform(iterations: 6) { t in
            do {
                for k in 0..<15 {
                    ids.add(try store.allocateId("test"))
                    if k < 4 { pools.add(try store.createPool(spec("pool-\(t)-\(k)")).record.id) }
                }
            } catch {
                errors.add("\(error)")
            }
        }
        #expect(errors.items.isEmpty, "\(errors.items)")
        #expect(ids.items.count == 90 && Set(ids.items) == Set(1...90))
        #expect(pools.items.count == 24 && Set(pools.items).count == 24)
        #expect(pools.items.allSatisfy { $0 >= EtcdStore.firstPoolId })
        let listed = try store.pools().records
        #expect(listed.count == 24 && Set(listed.map(\.id)) == Set(pools.items))
    }

    @Test func aStaleWriterCannotResurrectADestroyedPool() throws {
        let cluster = try EtcdTestCluster()
        defer { cluster.stop() }
        let store = try cluster.store(prefix: "/s/")
        let stale = try cluster.store(prefix: "/s/")
        let (made, created) = try store.createPool(spec("victim"))
        #expect(created && made.version > 0)
        // A node reads the pool, then is partitioned while another destroys it.
        let seen = try #require(try stale.pool(named: "victim"))
        #expect(seen == made)
        let tomb = try store.destroyPool(named: "victim", expectedVersion: made.version)
        #expect(tomb.destroyed && tomb.id == made.id && tomb.version > made.version)

        // The stale node writes its view back, naming the version it read: refused.
        #expect(throws: MetadataError.conflict(current: tomb.version)) {
            try stale.putPool(seen, expectedVersion: seen.version)
        }
        // Nor as a fresh entry.
        #expect(throws: MetadataError.conflict(current: tomb.version)) {
            try stale.putPool(seen, expectedVersion: 0)
        }
        // Even naming the tombstone's version, a retired id does not come back live.
        #expect(throws: MetadataError.destroyed(tomb)) {
            try stale.putPool(seen, expectedVersion: tomb.version)
        }
        // A destroy with the old version is refused too, and a second destroy reports it.
        #expect(throws: MetadataError.destroyed(tomb)) {
            try stale.destroyPool(named: "victim", expectedVersion: seen.version)
        }
        let now = try #require(try store.pool(named: "victim"))
        #expect(now == tomb)
        #expect(try store.pool(id: made.id) == tomb)

        // Creating the name again is a new pool with a new id; the old id stays a tombstone.
        let (again, createdAgain) = try store.createPool(spec("victim"))
        #expect(createdAgain && again.id != made.id && !again.destroyed)
        #expect(try store.pool(id: made.id)?.destroyed == true)
        #expect(throws: MetadataError.destroyed(tomb)) {
            try stale.putPool(seen, expectedVersion: again.version)
        }
        #expect(try store.pool(named: "victim") == again)
    }

    @Test func containerMapWritesCompareOnVersion() throws {
        let cluster = try EtcdTestCluster()
        defer { cluster.stop() }
        let store = try cluster.store(prefix: "/c/")
        let v1 = try store.putContainer(pool: 7, container: 3, node: 2, expectedVersion: 0)
        #expect(throws: MetadataError.conflict(current: v1)) {
            try store.putContainer(pool: 7, container: 3, node: 9, expectedVersion: 0)
        }
        let v2 = try store.putContainer(pool: 7, container: 3, node: 1, expectedVersion: v1)
        #expect(v2 > v1)
        #expect(throws: MetadataError.conflict(current: v2)) {
            try store.putContainer(pool: 7, container: 3, node: 9, expectedVersion: v1)
        }
        _ = try store.putContainer(pool: 7, container: 10, node: 3, expectedVersion: 0)
        _ = try store.putContainer(pool: 70, container: 1, node: 3, expectedVersion: 0)
        let map = try store.containers(pool: 7)
        #expect(map.map(\.container) == [3, 10] && map.map(\.node) == [1, 3] && map[0].version == v2)

        // Writers racing from one version: exactly one wins, for the map and for the catalog.
        let (pool, _) = try store.createPool(spec("raced"))
        let mapWins = Gathered<UInt32>()
        let poolWins = Gathered<Int>()
        let others = Gathered<String>()
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            do throws(MetadataError) {
                _ = try store.putContainer(pool: 7, container: 3, node: UInt32(20 + i), expectedVersion: v2)
                mapWins.add(UInt32(20 + i))
            } catch .conflict {
            } catch {
                others.add("\(error)")
            }
            var r = pool
            r.spec.containersPerNode = 10 + i
            do throws(MetadataError) {
                _ = try store.putPool(r, expectedVersion: pool.version)
                poolWins.add(10 + i)
            } catch .conflict {
            } catch {
                others.add("\(error)")
            }
        }
        #expect(others.items.isEmpty, "\(others.items)")
        #expect(mapWins.items.count == 1 && poolWins.items.count == 1)
        #expect(try store.containers(pool: 7).first?.node == mapWins.items.first)
        #expect(try store.pool(named: "raced")?.spec.containersPerNode == poolWins.items.first)
        #expect(try store.pool(id: pool.id)?.spec.containersPerNode == poolWins.items.first)
    }

    @Test func aLeaseNotKeptAliveExpiresAndItsNodeDisappears() throws {
        let cluster = try EtcdTestCluster()
        defer { cluster.stop() }
        let store = try cluster.store(prefix: "/l/")
        let downs = Gathered<(UInt32, Int64)>()
        let w = try store.watch(fromRevision: 0, { ev in
            if case .nodeDown(let n) = ev.change { downs.add((n, ev.revision)) }
        }, onError: { _ in })
        defer { w.cancel() }
        let kept = try store.registerNode(1, address: "127.0.0.1:9513", ttlSeconds: 2)
        let lapsed = try store.registerNode(2, address: "127.0.0.1:9514", ttlSeconds: 2)
        #expect(try store.liveNodes() == [1, 2])
        let registered = chi_now_ns()
        // Node 1 keeps its lease alive for 5 s, past twice the TTL; node 2 stops at once.
        var gone: UInt64?
        while chi_now_ns() - registered < 5_000_000_000 {
            #expect(try store.keepAlive(kept) == 2)
            if gone == nil, try !store.liveNodes().contains(2) { gone = chi_now_ns() }
            usleep(500_000)
        }
        #expect(try store.liveNodes() == [1])
        let after = try #require(gone, "node 2's entry outlived its lease")
        // Not before its TTL (etcd may take up to a second or so more to expire it).
        #expect(after - registered >= 1_900_000_000)
        #expect(throws: MetadataError.notFound("lease \(lapsed.id) of node 2")) { try store.keepAlive(lapsed) }
        #expect(eventually(3000) { downs.items.contains { $0.0 == 2 } }, "the watch saw no nodeDown for 2")
        #expect(!downs.items.contains { $0.0 == 1 })
        try store.revoke(kept)
        #expect(try store.liveNodes().isEmpty)
    }

    @Test func aWatchSeesEveryPutInRevisionOrder() throws {
        let cluster = try EtcdTestCluster()
        defer { cluster.stop() }
        let store = try cluster.store(prefix: "/w/")
        let base = try store.pools().revision
        let events = Gathered<MetadataEvent>()
        let errors = Gathered<MetadataError>()
        let w = try store.watch(fromRevision: base, { events.add($0) }, onError: { errors.add($0) })
        defer { w.cancel() }
        let versions = Gathered<(UInt32, Int64)>()
        DispatchQueue.concurrentPerform(iterations: 2) { t in
            for k in 0..<15 {
                let c = UInt32(t * 100 + k)
                if let v = try? store.putContainer(pool: 5, container: c, node: UInt32(t + 1), expectedVersion: 0) {
                    versions.add((c, v))
                }
            }
        }
        let (pool, _) = try store.createPool(spec("watched"))
        #expect(versions.items.count == 30)
        #expect(eventually(5000) { events.items.count >= 31 }, "the watch delivered \(events.items.count) of 31")
        let seen = events.items
        let revs = seen.map(\.revision)
        #expect(revs == revs.sorted() && Set(revs).count == revs.count, "revisions out of order: \(revs)")
        var byContainer: [UInt32: Int64] = [:]
        for e in seen { if case .container(let p) = e.change { byContainer[p.container] = e.revision } }
        #expect(byContainer.count == 30)
        for (c, v) in versions.items { #expect(byContainer[c] == v) }
        #expect(seen.last?.change == .pool(pool) && seen.last?.revision == pool.version)
        #expect(errors.items.isEmpty)
    }

    @Test func losingOneMemberOfThreeKeepsTheStoreWorking() throws {
        let cluster = try EtcdTestCluster()
        defer { cluster.stop() }
        let store = try cluster.store(prefix: "/f/", timeoutMs: 3000)
        let events = Gathered<MetadataEvent>()
        let errors = Gathered<MetadataError>()
        let (first, _) = try store.createPool(spec("before"))
        // The watch and the requests start on member 0, the one that dies.
        let w = try store.watch(fromRevision: first.version, { events.add($0) }, onError: { errors.add($0) })
        defer { w.cancel() }
        _ = try store.putContainer(pool: first.id, container: 0, node: 1, expectedVersion: 0)
        #expect(eventually(3000) { events.items.count == 1 })
        cluster.kill(0)
        let t0 = chi_now_ns()
        let (second, created) = try store.createPool(spec("after"))
        #expect(created && second.id == first.id + 1)
        #expect(try store.allocateId("x") == 1)
        _ = try store.putContainer(pool: second.id, container: 0, node: 2, expectedVersion: 0)
        #expect(chi_now_ns() - t0 < 3_000_000_000)
        #expect(try store.pool(named: "before") == first)
        // The watch resumed on another member from where it was: nothing lost, nothing twice.
        #expect(eventually(5000) { events.items.count >= 3 }, "watch saw \(events.items.count) of 3 events")
        let revs = events.items.map(\.revision)
        #expect(events.items.count == 3 && revs == revs.sorted() && Set(revs).count == 3)
        #expect(errors.items.isEmpty, "\(errors.items)")
    }

    @Test func aWatchOnAStoppedMemberMovesToAnother() throws {
        let cluster = try EtcdTestCluster()
        defer { cluster.stop() }
        let store = try cluster.store(prefix: "/p/", timeoutMs: 1500)
        let (first, _) = try store.createPool(spec("one"))
        let events = Gathered<MetadataEvent>()
        let errors = Gathered<MetadataError>()
        // The watch starts on member 0, which then stops answering but keeps its sockets.
        let w = try store.watch(fromRevision: first.version, { events.add($0) }, onError: { errors.add($0) })
        defer { w.cancel() }
        usleep(300_000)
        cluster.pause(0)
        let (second, _) = try store.createPool(spec("two"))
        #expect(eventually(8000) { events.items.count == 1 }, "the watch stayed on the stopped member")
        #expect(events.items.first?.change == .pool(second))
        #expect(errors.items.isEmpty, "\(errors.items)")
    }

    @Test func requestsFailWithinTheTimeoutWhenQuorumAndThenEveryMemberIsGone() throws {
        let cluster = try EtcdTestCluster()
        defer { cluster.stop() }
        let store = try cluster.store(prefix: "/d/", timeoutMs: 1500)
        _ = try store.createPool(spec("x"))
        let errors = Gathered<MetadataError>()
        let w = try store.watch(fromRevision: 0, { _ in }, onError: { errors.add($0) })
        defer { w.cancel() }
        cluster.kill(0)
        cluster.kill(1)
        // One member of three: no quorum, so neither writes nor linearizable reads complete.
        for step in ["write", "read"] {
            let t0 = chi_now_ns()
            do {
                if step == "write" { _ = try store.createPool(spec("y")) } else { _ = try store.pool(named: "x") }
                Issue.record("a \(step) succeeded without quorum")
            } catch {
                guard case .unavailable = error else { Issue.record("\(step): \(error)"); continue }
            }
            let ms = (chi_now_ns() - t0) / 1_000_000
            #expect(ms >= 1000 && ms < 3000, "\(step) gave up after \(ms) ms")
        }
        cluster.kill(2)
        let t0 = chi_now_ns()
        #expect(throws: MetadataError.self) { try store.allocateId("z") }
        let ms = (chi_now_ns() - t0) / 1_000_000
        #expect(ms < 3000, "with every member down a request took \(ms) ms")
        #expect(eventually(6000) { !errors.items.isEmpty }, "the watch never reported losing every member")
        if case .unavailable = errors.items.first {} else { Issue.record("watch error: \(errors.items)") }
    }
}
