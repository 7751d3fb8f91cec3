import CChimaeraABI

/// The address space a domain query selects from.
public enum SubDomain: UInt32, Sendable {
    /// Every container of the pool, ids 0..n-1.
    case globalContainers = 1
    /// The containers on this node.
    case localContainers = 2
    /// The containers of one node, by node id.
    case physicalNode = 3
}

/// How a query over several containers runs.
public enum Iteration: UInt32, Sendable {
    /// On every container; replies folded by the module's replica-aggregation hook.
    case broadcast = 0x100
    /// On each container in turn until one succeeds.
    case repeatUntilSuccess = 0x200
    /// On one container of the set.
    case chooseOne = 0x400
}

/// Where a task goes: the Swift face of `chi_domain_query_t` and the `chi_dq_*` constructors.
public struct DomainQuery: Sendable, Equatable {
    /// The C value.
    public var raw: chi_domain_query_t

    public init(raw: chi_domain_query_t) { self.raw = raw }

    public static func localId(_ id: UInt64, in sub: SubDomain = .localContainers) -> DomainQuery {
        DomainQuery(raw: chi_dq_local_id(sub.rawValue, id))
    }
    public static func directId(_ id: UInt64, in sub: SubDomain = .globalContainers) -> DomainQuery {
        DomainQuery(raw: chi_dq_direct_id(sub.rawValue, id))
    }
    public static func directHash(_ hash: UInt64, in sub: SubDomain = .globalContainers) -> DomainQuery {
        DomainQuery(raw: chi_dq_direct_hash(sub.rawValue, hash))
    }
    public static func localHash(_ hash: UInt64) -> DomainQuery {
        DomainQuery(raw: chi_dq_local_hash(hash))
    }
    public static func global(_ sub: SubDomain = .globalContainers, _ iteration: Iteration = .broadcast) -> DomainQuery {
        DomainQuery(raw: chi_dq_global(sub.rawValue, iteration.rawValue))
    }
    public static func range(_ start: UInt64, count: UInt64, in sub: SubDomain = .globalContainers,
                             _ iteration: Iteration = .broadcast) -> DomainQuery {
        DomainQuery(raw: chi_dq_range(sub.rawValue, start, count, iteration.rawValue))
    }
    public static var globalBroadcast: DomainQuery { DomainQuery(raw: chi_dq_global_bcast()) }
    public static var dynamic: DomainQuery { DomainQuery(raw: chi_dq_dynamic()) }

    public static func == (a: DomainQuery, b: DomainQuery) -> Bool {
        a.raw.flags == b.raw.flags && a.raw.sub_domain == b.raw.sub_domain && a.raw.sel == b.raw.sel
            && a.raw.count == b.raw.count
    }
}
