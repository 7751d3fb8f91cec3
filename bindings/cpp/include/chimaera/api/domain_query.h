/* chimaera/api/domain_query.h: chi::DomainQuery, the seed's names for where a task goes, over
 * the C ABI's chi_domain_query_t (chimaera/task.h). Header-only, C++11. Include
 * chimaera/api/chimaera_client.h rather than this file. */
#ifndef CHIMAERA_API_DOMAIN_QUERY_H
#define CHIMAERA_API_DOMAIN_QUERY_H

#include <cstdint>

#include "chimaera/task.h"

namespace chi {

/// A sub-domain: the address space a query selects from.
typedef uint32_t SubDomainGroup;

/// The sub-domains every pool has. An enum inside a struct, so the seed's spelling
/// chi::SubDomainId::kGlobalContainers works in C++11 and the values need no definition.
struct SubDomainId {
    enum Value : uint32_t {
        /// Every container of the pool, ids 0..n-1.
        kGlobalContainers = CHI_SUBDOMAIN_GLOBAL_CONTAINERS,
        /// The containers on this node, in id order.
        kLocalContainers = CHI_SUBDOMAIN_LOCAL_CONTAINERS,
        /// The containers on one node, addressed by node id (this runtime's node is 1).
        kPhysicalNode = CHI_SUBDOMAIN_PHYSICAL_NODE,
    };
};
/// The seed uses both names (chi::SubDomain::kGlobalContainers in its bdev examples).
typedef SubDomainId SubDomain;

/// A set of container addresses of a pool: scope | selection | iteration flags over a
/// sub-domain. A plain value (24 bytes); the runtime resolves it when the task arrives, so a
/// query naming a container that does not exist fails the task with -CHI_ENOCONTAINER.
class DomainQuery {
public:
    /// Scope (the seed's "range flags").
    enum Scope : uint32_t {
        kLocal = CHI_DQ_LOCAL,
        kDirect = CHI_DQ_DIRECT,
        kGlobal = CHI_DQ_GLOBAL,
        kSchedule = CHI_DQ_DYNAMIC,
    };
    /// Selection.
    enum Selection : uint32_t {
        kId = CHI_DQ_ID,
        kHash = CHI_DQ_HASH,
        kRange = CHI_DQ_RANGE,
    };
    /// Iteration over a multi-address selection; 0 means the runtime's default (broadcast for
    /// ranges, choose-one for a physical node's containers).
    enum Iteration : uint32_t {
        kBroadcast = CHI_DQ_BCAST,
        kRepUntilSuccess = CHI_DQ_REP_UNTIL_SUCCESS,
        kChooseOne = CHI_DQ_CHOOSE_ONE,
    };

    /// Local hash 0: what the C ABI uses for a NULL query.
    DomainQuery() : q_(chi_dq_local_hash(0)) {}
    /// Wraps a query built with the C helpers (chi_dq_*).
    explicit DomainQuery(const chi_domain_query_t &q) : q_(q) {}

    /// The container at hash modulo the sub-domain's size. iter_flags is ORed in; it only
    /// matters for the physical-node sub-domain, whose node may hold several containers.
    static DomainQuery GetDirectHash(SubDomainGroup sub, uint64_t hash, uint32_t iter_flags = 0) {
        return WithIter(chi_dq_direct_hash(sub, hash), iter_flags);
    }
    /// The container with this id in the sub-domain (for kPhysicalNode: the node id).
    static DomainQuery GetDirectId(SubDomainGroup sub, uint64_t id, uint32_t iter_flags = 0) {
        return WithIter(chi_dq_direct_id(sub, id), iter_flags);
    }
    /// One of this node's containers, chosen by hash.
    static DomainQuery GetLocalHash(uint64_t hash) { return DomainQuery(chi_dq_local_hash(hash)); }
    /// The id-th of this node's containers.
    static DomainQuery GetLocalId(SubDomainGroup sub, uint64_t id) {
        return DomainQuery(chi_dq_local_id(sub, id));
    }
    /// The id-th of this node's containers (sub-domain kLocalContainers).
    static DomainQuery GetLocalId(uint64_t id) {
        return GetLocalId(SubDomainId::kLocalContainers, id);
    }
    /// Every address of the sub-domain, iterated by iter_flags (a kBroadcast-style flag).
    static DomainQuery GetGlobal(SubDomainGroup sub, uint32_t iter_flags) {
        return DomainQuery(chi_dq_global(sub, iter_flags));
    }
    /// The addresses [start, start + count) of the sub-domain (count 0: to the end).
    static DomainQuery GetRange(SubDomainGroup sub, uint64_t start, uint64_t count,
                                uint32_t iter_flags = kBroadcast) {
        return DomainQuery(chi_dq_range(sub, start, count, iter_flags));
    }
    /// Every container of the pool; the module's aggregation hook folds the replies.
    static DomainQuery GetGlobalBcast() { return DomainQuery(chi_dq_global_bcast()); }
    /// Let the module's schedule hook pick the container (the seed's dynamic scheduling).
    static DomainQuery GetDynamic() { return DomainQuery(chi_dq_dynamic()); }

    const chi_domain_query_t &raw() const { return q_; }
    uint32_t flags() const { return q_.flags; }
    SubDomainGroup sub_domain() const { return q_.sub_domain; }
    uint64_t sel() const { return q_.sel; }
    uint64_t count() const { return q_.count; }
    bool IsDynamic() const { return (q_.flags & CHI_DQ_DYNAMIC) != 0; }
    bool IsBroadcast() const {
        return (q_.flags & CHI_DQ_RANGE) != 0 &&
               ((q_.flags & CHI_DQ_ITER_MASK) == 0 || (q_.flags & CHI_DQ_BCAST) != 0);
    }
    bool operator==(const DomainQuery &o) const {
        return q_.flags == o.q_.flags && q_.sub_domain == o.q_.sub_domain && q_.sel == o.q_.sel &&
               q_.count == o.q_.count;
    }
    bool operator!=(const DomainQuery &o) const { return !(*this == o); }

private:
    static DomainQuery WithIter(chi_domain_query_t q, uint32_t iter_flags) {
        q.flags |= iter_flags;  // not masked: a wrong flag should fail in the runtime, not vanish
        return DomainQuery(q);
    }
    chi_domain_query_t q_;
};

}  // namespace chi

#endif
