import CChimaera
import Dispatch
import Glibc
import Testing

@testable import Chimaera

/// A clock a test moves by hand.
private final class ManualClock: @unchecked Sendable {
    private let m = Mutex()
    private var ns: UInt64 = 1_000_000_000

    var now: UInt64 { m.withLock { ns } }
    func advance(seconds: Double) { m.withLock { ns += UInt64(seconds * 1e9) } }
}

private final class Seen<T>: @unchecked Sendable {
    private let m = Mutex()
    private var list: [T] = []

    func add(_ x: T) { m.withLock { list.append(x) } }
    var items: [T] { m.withLock { list } }
}

private func spec(_ name: String) -> PoolSpec {
    PoolSpec(name: name, module: "small_message", containersPerNode: 2, params: [1, 2, 3])
}

/// The in-memory store keeps the contract EtcdStoreTests checks against etcd, so the code
/// above `MetadataStore` behaves the same in either mode.
@Suite struct LocalMetadataStoreTests {
    @Test func concurrentCreatorsGetOneIdAndIdsNeverRepeat() throws {
        let store = LocalMetadataStore()
        let got = Seen<(UInt64, Bool)>()
        let ids = Seen<UInt64>()
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            if let r = try? store.createPool(spec("shared")) { got.add((r.record.id, r.created)) }
            for _ in 0..<10 { if let v = try? store.allocateId("n") { ids.add(v) } }
            if let r = try? store.createPool(spec("own-\(i)")) { ids.add(1000 + r.record.id) }
        }
        #expect(got.items.count == 8 && Set(got.items.map(\.0)).count == 1 && got.items.filter(\.1).count == 1)
        #expect(got.items.first?.0 == EtcdStore.firstPoolId)
        #expect(ids.items.count == 88 && Set(ids.items).count == 88)
        #expect(Set(ids.items.filter { $0 <= 80 }) == Set(1...80))
    }

    @Test func aStaleWriterCannotResurrectADestroyedPool() throws {
        let store = LocalMetadataStore()
        let (made, _) = try store.createPool(spec("victim"))
        let seen = try #require(try store.pool(named: "victim"))
        let tomb = try store.destroyPool(named: "victim", expectedVersion: made.version)
        #expect(tomb.destroyed && tomb.version > made.version)
        #expect(throws: MetadataError.conflict(current: tomb.version)) { try store.putPool(seen, expectedVersion: seen.version) }
        #expect(throws: MetadataError.conflict(current: tomb.version)) { try store.putPool(seen, expectedVersion: 0) }
        #expect(throws: MetadataError.destroyed(tomb)) { try store.putPool(seen, expectedVersion: tomb.version) }
        #expect(throws: MetadataError.destroyed(tomb)) { try store.destroyPool(named: "victim", expectedVersion: seen.version) }
        let (again, created) = try store.createPool(spec("victim"))
        #expect(created && again.id != made.id)
        #expect(throws: MetadataError.destroyed(tomb)) { try store.putPool(seen, expectedVersion: again.version) }
        #expect(try store.pool(id: made.id) == tomb && store.pool(named: "victim") == again)
    }

    @Test func racingVersionedWritersHaveOneWinner() throws {
        let store = LocalMetadataStore()
        let v = try store.putContainer(pool: 4, container: 1, node: 1, expectedVersion: 0)
        let wins = Seen<UInt32>()
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            if (try? store.putContainer(pool: 4, container: 1, node: UInt32(10 + i), expectedVersion: v)) != nil {
                wins.add(UInt32(10 + i))
            }
        }
        #expect(wins.items.count == 1)
        #expect(try store.containers(pool: 4).map(\.node) == wins.items)
    }

    @Test func leasesExpireByTheClockAndWatchesSeeEveryChangeInOrder() throws {
        let clock = ManualClock()
        let store = LocalMetadataStore(clock: { clock.now })
        let events = Seen<MetadataEvent>()
        let w = try store.watch(fromRevision: 0, { events.add($0) }, onError: { _ in })
        defer { w.cancel() }
        let kept = try store.registerNode(1, address: "a:1", ttlSeconds: 2)
        let lapsed = try store.registerNode(2, address: "b:1", ttlSeconds: 2)
        for _ in 0..<4 {
            clock.advance(seconds: 1)
            #expect(try store.keepAlive(kept) == 2)
        }
        #expect(try store.liveNodes() == [1])
        #expect(throws: MetadataError.notFound("lease \(lapsed.id) of node 2")) { try store.keepAlive(lapsed) }
        let (p, _) = try store.createPool(spec("w"))
        _ = try store.putContainer(pool: p.id, container: 0, node: 1, expectedVersion: 0)
        let deadline = chi_now_ns() + 5_000_000_000
        while events.items.count < 5 && chi_now_ns() < deadline { usleep(10_000) }
        let seen = events.items
        #expect(seen.map(\.change) == [.nodeUp(1, address: "a:1"), .nodeUp(2, address: "b:1"), .nodeDown(2), .pool(p),
                                       .container(ContainerPlacement(pool: p.id, container: 0, node: 1,
                                                                     version: seen.last?.revision ?? 0))])
        let revs = seen.map(\.revision)
        #expect(revs == revs.sorted() && Set(revs).count == revs.count)
    }
}
