import CChimaera
import Glibc
import Testing

@testable import Chimaera

private final class Lost: @unchecked Sendable {
    private let m = Mutex()
    private var list: [MetadataError] = []

    func add(_ e: MetadataError) { m.withLock { list.append(e) } }
    var items: [MetadataError] { m.withLock { list } }
}

private func waitFor(_ ms: Int, _ cond: () throws -> Bool) rethrows -> Bool {
    let deadline = chi_now_ns() + UInt64(ms) * 1_000_000
    while chi_now_ns() < deadline {
        if try cond() { return true }
        usleep(50_000)
    }
    return try cond()
}

/// The keeper holds a node live past its TTL, lets it lapse once stopped, and reports a lease
/// the store ended.
private func checkKeeper(_ store: any MetadataStore) throws {
    let lost = Lost()
    let lease = try store.registerNode(4, address: "n4:9513", ttlSeconds: 1)
    let keeper = MetadataLeaseKeeper(store: store, lease: lease, onLost: { lost.add($0) })
    try keeper.start()
    usleep(3_000_000)
    #expect(try store.liveNodes() == [4], "the kept lease lapsed")
    keeper.stop()
    #expect(try waitFor(4000) { try store.liveNodes().isEmpty }, "the node outlived its stopped keeper")
    #expect(lost.items.isEmpty)

    // A lease the store ends (revoked elsewhere) is reported once.
    let second = try store.registerNode(5, address: "n5:9513", ttlSeconds: 2)
    let k2 = MetadataLeaseKeeper(store: store, lease: second, intervalMs: 100, onLost: { lost.add($0) })
    try k2.start()
    defer { k2.stop() }
    try store.revoke(second)
    #expect(waitFor(3000) { lost.items.count == 1 }, "the keeper did not report the revoked lease")
    if case .notFound = lost.items.first {} else { Issue.record("lost with \(lost.items)") }
}

@Suite(.serialized) struct MetadataLeaseKeeperTests {
    @Test func keeperHoldsAndReleasesALocalLease() throws {
        try checkKeeper(LocalMetadataStore())
    }

    @Test(.enabled(if: EtcdTestCluster.binary != nil, EtcdTestCluster.skipReason))
    func keeperHoldsAndReleasesAnEtcdLease() throws {
        let cluster = try EtcdTestCluster()
        defer { cluster.stop() }
        try checkKeeper(try cluster.store(prefix: "/k/"))
    }
}
