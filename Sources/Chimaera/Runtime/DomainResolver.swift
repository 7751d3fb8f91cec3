import CChimaera

/// Turns a domain query into containers of a pool.
///
/// The address set is chosen by scope and sub-domain: local scope or the local-containers
/// sub-domain gives this node's containers, the physical-node sub-domain gives the containers
/// of node `sel`, anything else every container. Selection then picks one address by id or
/// hash, or a range; a range of more than one address is iterated by the query's iteration
/// flag (broadcast when none is given).
enum DomainResolver {
    enum Resolution {
        case one(Ref<Container>)
        case many(ContainerRange, UInt32)
        case failure(CInt)
    }

    static func resolve(_ q: chi_domain_query_t, in pool: RuntimePool, node: UInt32) -> Resolution {
        let scope = q.flags & UInt32(CHI_DQ_SCOPE_MASK)
        let sel = q.flags & UInt32(CHI_DQ_SEL_MASK)
        let iter = q.flags & UInt32(CHI_DQ_ITER_MASK)
        guard scope.nonzeroBitCount == 1, scope != UInt32(CHI_DQ_DYNAMIC),
              sel.nonzeroBitCount == 1, iter.nonzeroBitCount <= 1
        else { return .failure(EINVAL) }

        // Physical node: the containers living on node `sel` (numbered node by node, so a
        // run of ids; found without allocating, since this runs for every such task).
        if q.sub_domain == UInt32(CHI_SUBDOMAIN_PHYSICAL_NODE) {
            let all = pool.containers
            guard let lo = all.firstIndex(where: { UInt64($0.node) == q.sel }) else {
                return .failure(CInt(CHI_ENOCONTAINER))
            }
            var hi = lo + 1
            while hi < all.count && UInt64(all[hi].node) == q.sel { hi += 1 }
            let it = iter == 0 ? UInt32(CHI_DQ_CHOOSE_ONE) : iter
            if all[hi...].contains(where: { UInt64($0.node) == q.sel }) {
                // Not one run (containers moved): a copied list, the uncommon case.
                let onNode = all.filter { UInt64($0.node) == q.sel }
                return .many(ContainerRange(onNode, 0, onNode.count), it)
            }
            if hi - lo == 1 { return .one(Ref(all[lo])) }
            return .many(ContainerRange(all, lo, hi), it)
        }
        let local = scope == UInt32(CHI_DQ_LOCAL)
            || q.sub_domain == UInt32(CHI_SUBDOMAIN_LOCAL_CONTAINERS)
        guard local || q.sub_domain == UInt32(CHI_SUBDOMAIN_GLOBAL_CONTAINERS) else {
            return .failure(EINVAL)
        }
        // One container: borrowed from the pool's array (no retain of the array or of the
        // container; this is every task's path).
        @inline(__always)
        func one(_ i: Int) -> Resolution {
            let r = local ? pool.local.withUnsafeBufferPointer { Ref(Unmanaged.passUnretained($0[i])) }
                : pool.containers.withUnsafeBufferPointer { Ref(Unmanaged.passUnretained($0[i])) }
            return .one(r)
        }
        let n = UInt64(local ? pool.local.count : pool.containers.count)
        if n == 0 { return .failure(CInt(CHI_ENOCONTAINER)) }

        switch sel {
        case UInt32(CHI_DQ_ID):
            return q.sel < n ? one(Int(q.sel)) : .failure(CInt(CHI_ENOCONTAINER))
        case UInt32(CHI_DQ_HASH):
            return one(Int(q.sel % n))
        default:
            guard q.sel < n else { return .failure(CInt(CHI_ENOCONTAINER)) }
            let end = q.count == 0 ? n : min(n, q.sel &+ q.count)
            if end <= q.sel { return .failure(CInt(CHI_ENOCONTAINER)) }
            return .many(ContainerRange(local ? pool.local : pool.containers, Int(q.sel), Int(end)),
                         iter == 0 ? UInt32(CHI_DQ_BCAST) : iter)
        }
    }
}

/// A run of a pool's containers, without copying them out of its array.
struct ContainerRange {
    let all: [Container]
    let lo: Int
    let hi: Int

    init(_ all: [Container], _ lo: Int, _ hi: Int) {
        self.all = all
        self.lo = lo
        self.hi = hi
    }

    var count: Int { hi - lo }

    subscript(i: Int) -> Container { all[lo + i] }

    /// The i-th container, unretained.
    func ref(_ i: Int) -> Ref<Container> { all.withUnsafeBufferPointer { Ref(Unmanaged.passUnretained($0[lo + i])) } }

    var ids: [UInt32] { (lo..<hi).map { all[$0].id } }
}
