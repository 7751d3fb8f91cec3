import CChimaera
import Glibc

/// Where the cluster's metadata lives: the pool catalog (names, ids, modules, parameters,
/// destroyed pools as tombstones), the container-to-node map and node liveness, ordered by
/// one authority.
///
/// Two implementations share this shape: the embedded one (the lowest-numbered live node's
/// log, replicated to the others) and `EtcdStore` (`cluster.metadata: etcd://...`). Every
/// call blocks the calling thread for at most the store's request timeout and then throws
/// `MetadataError.unavailable`; nothing here needs Swift concurrency, so worker and network
/// threads may call it. Watch callbacks run on a thread the store owns.
///
/// Versions are the store's revisions: they only grow, and a write that names the version it
/// read fails with `.conflict` if anything wrote the key since. A pool id is never handed out
/// twice, and a destroyed pool stays a tombstone, so no writer holding an old view can bring
/// a destroyed name or id back.
package protocol MetadataStore: AnyObject, Sendable {
    /// Creates pool `name` if the catalog has no live pool of that name, with a fresh id;
    /// otherwise returns the live record. Concurrent creators of one name all get the same id.
    /// A name whose last pool was destroyed gets a new id (the tombstone is replaced, its id
    /// stays retired).
    /// - Returns: the record and whether this call created it.
    func createPool(_ spec: PoolSpec) throws(MetadataError) -> (record: PoolRecord, created: Bool)

    /// The catalog entry of `name`, live or tombstone; nil if the name was never used.
    func pool(named name: String) throws(MetadataError) -> PoolRecord?

    /// The catalog entry that holds or held `id`, live or tombstone; nil if never allocated.
    func pool(id: UInt64) throws(MetadataError) -> PoolRecord?

    /// Every catalog entry, live and tombstones, with the revision the list was read at.
    func pools() throws(MetadataError) -> (records: [PoolRecord], revision: Int64)

    /// Replaces `name`'s entry only if it is still at `expectedVersion` (0: only if absent).
    /// This is the one way to write a record read earlier back, so a stale catalog (a node that
    /// was partitioned) meets `.conflict` instead of undoing a later destroy.
    /// - Returns: the new version.
    func putPool(_ record: PoolRecord, expectedVersion: Int64) throws(MetadataError) -> Int64

    /// Turns `name`'s live pool into a tombstone if it is still at `expectedVersion`.
    /// - Returns: the tombstone. Throws `.conflict` if the entry changed, `.notFound` if
    ///   the name has no live pool.
    func destroyPool(named name: String, expectedVersion: Int64) throws(MetadataError) -> PoolRecord

    /// The next value of counter `name` (1, 2, ...), unique under any concurrency.
    func allocateId(_ name: String) throws(MetadataError) -> UInt64

    /// Sets the node of container `container` of pool `pool` if the entry is still at
    /// `expectedVersion` (0: only if absent).
    /// - Returns: the new version.
    func putContainer(pool: UInt64, container: UInt32, node: UInt32,
                      expectedVersion: Int64) throws(MetadataError) -> Int64

    /// The container-to-node map of `pool`, sorted by container.
    func containers(pool: UInt64) throws(MetadataError) -> [ContainerPlacement]

    /// Announces node `node` as live for `ttlSeconds`: its entry disappears when the lease is
    /// neither kept alive nor revoked within that time.
    func registerNode(_ node: UInt32, address: String, ttlSeconds: Int) throws(MetadataError) -> MetadataLease

    /// Renews `lease`. Throws `.notFound` when it already expired (the node must register
    /// again, as a new incarnation).
    /// - Returns: the seconds granted.
    func keepAlive(_ lease: MetadataLease) throws(MetadataError) -> Int

    /// Ends `lease` now: its node entry goes at once.
    func revoke(_ lease: MetadataLease) throws(MetadataError)

    /// The nodes whose leases are live, sorted.
    func liveNodes() throws(MetadataError) -> [UInt32]

    /// Delivers every change to the catalog, the map and liveness after `revision` (0: from
    /// now), in revision order, on the store's watch thread, until the handle is cancelled.
    /// `onError` is called once if the watch ends for any other reason (the store was
    /// compacted past `revision`, every endpoint is down); the caller then re-reads and
    /// watches again from the revision it read.
    func watch(fromRevision revision: Int64, _ onEvent: @escaping @Sendable (MetadataEvent) -> Void,
               onError: @escaping @Sendable (MetadataError) -> Void) throws(MetadataError) -> MetadataWatch
}

/// What a creator asks for.
package struct PoolSpec: Sendable, Equatable {
    package var name: String
    package var module: String
    package var containersPerNode: Int
    /// The module's creation parameters, opaque here.
    package var params: [UInt8]

    package init(name: String, module: String, containersPerNode: Int, params: [UInt8] = []) {
        self.name = name
        self.module = module
        self.containersPerNode = containersPerNode
        self.params = params
    }
}

/// One catalog entry.
package struct PoolRecord: Sendable, Equatable {
    package var spec: PoolSpec
    package var id: UInt64
    /// True for a tombstone: the pool was destroyed; its id is never handed out again.
    package var destroyed: Bool
    /// The store revision of the last write to this entry (0 before it is stored).
    package var version: Int64

    package init(spec: PoolSpec, id: UInt64, destroyed: Bool = false, version: Int64 = 0) {
        self.spec = spec
        self.id = id
        self.destroyed = destroyed
        self.version = version
    }

    package var name: String { spec.name }
}

/// Where one container lives.
package struct ContainerPlacement: Sendable, Equatable {
    package var pool: UInt64
    package var container: UInt32
    package var node: UInt32
    package var version: Int64
}

/// A node's liveness lease.
package struct MetadataLease: Sendable, Equatable {
    package var id: Int64
    package var node: UInt32
    package var ttlSeconds: Int
}

/// One change a watch reports.
package struct MetadataEvent: Sendable, Equatable {
    package enum Change: Sendable, Equatable {
        case pool(PoolRecord)
        case container(ContainerPlacement)
        case nodeUp(UInt32, address: String)
        case nodeDown(UInt32)
        /// A key of the store's namespace this version does not know; reported, not dropped,
        /// so a watcher never silently skips a revision.
        case other(key: String)
    }

    package var change: Change
    /// The store revision of the change; strictly increasing along one watch, except that
    /// several changes of one transaction share it.
    package var revision: Int64
}

/// A running watch; `cancel()` stops it (no callback runs after it returns).
package protocol MetadataWatch: AnyObject, Sendable {
    func cancel()
}

/// Why a metadata call failed.
package enum MetadataError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The entry is no longer at the version the caller named; `current` is its version now
    /// (0: absent).
    case conflict(current: Int64)
    /// The name's pool was destroyed (the tombstone).
    case destroyed(PoolRecord)
    /// No such entry (or an expired lease).
    case notFound(String)
    /// No endpoint answered within the request timeout, or none could be reached.
    case unavailable(String)
    /// The store answered with something this client cannot accept.
    case badResponse(String)
    /// The store refused the request.
    case rejected(String)

    package var description: String {
        switch self {
        case .conflict(let v): return "metadata conflict: the entry changed (now at version \(v))"
        case .destroyed(let r): return "pool \"\(r.name)\" (id \(r.id)) was destroyed at version \(r.version)"
        case .notFound(let s): return "metadata: \(s) not found"
        case .unavailable(let s): return "metadata store unavailable: \(s)"
        case .badResponse(let s): return "metadata store sent a bad response: \(s)"
        case .rejected(let s): return "metadata store refused the request: \(s)"
        }
    }

    /// The error as the runtime reports it to clients.
    package var chiError: ChiError {
        switch self {
        case .conflict: return ChiError(EAGAIN, description)
        case .destroyed: return ChiError(CInt(CHI_ENOPOOL), description)
        case .notFound: return ChiError(ENOENT, description)
        case .unavailable: return ChiError(ETIMEDOUT, description)
        case .badResponse: return ChiError(EPROTO, description)
        case .rejected: return ChiError(EIO, description)
        }
    }
}
