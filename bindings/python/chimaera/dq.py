"""Domain queries: Python versions of task.h's static inline chi_dq_* helpers.

They return ChiDomainQuery (exported as chimaera.DomainQuery), the 24-byte struct the task
header holds; the flag constants are task.h's without the CHI_ prefix.
"""

from ._types import (DQ_BCAST, DQ_DIRECT, DQ_DYNAMIC, DQ_GLOBAL, DQ_HASH, DQ_ID, DQ_LOCAL,
                     DQ_RANGE, SUBDOMAIN_GLOBAL_CONTAINERS, SUBDOMAIN_LOCAL_CONTAINERS,
                     ChiDomainQuery)

_U64 = (1 << 64) - 1


def dq_make(flags, sub, sel, count):
    """chi_dq_make. sel and count wrap to 64 bits like the C uint64_t parameters."""
    return ChiDomainQuery(flags, sub, sel & _U64, count & _U64)


def dq_local_id(sub, id):
    """The id-th container of this node's containers."""
    return dq_make(DQ_LOCAL | DQ_ID, sub, id, 1)


def dq_direct_id(sub, id):
    """The container with this id in the sub-domain."""
    return dq_make(DQ_DIRECT | DQ_ID, sub, id, 1)


def dq_direct_hash(sub, hash):
    """The container at hash modulo the sub-domain's size."""
    return dq_make(DQ_DIRECT | DQ_HASH, sub, hash, 1)


def dq_local_hash(hash):
    """One of this node's containers, chosen by hash."""
    return dq_make(DQ_LOCAL | DQ_HASH, SUBDOMAIN_LOCAL_CONTAINERS, hash, 1)


def dq_global(sub, iter):
    """Every address of the sub-domain, iterated by iter (a DQ_* iteration flag)."""
    return dq_make(DQ_GLOBAL | DQ_RANGE | iter, sub, 0, 0)


def dq_range(sub, start, count, iter):
    """The addresses [start, start + count) of the sub-domain, iterated by iter."""
    return dq_make(DQ_GLOBAL | DQ_RANGE | iter, sub, start, count)


def dq_global_bcast():
    """Every container of the pool on every node; replies folded by kReplicaAgg."""
    return dq_global(SUBDOMAIN_GLOBAL_CONTAINERS, DQ_BCAST)


def dq_dynamic():
    """Lets the module's kSchedule monitor hook choose the container."""
    return dq_make(DQ_DYNAMIC, SUBDOMAIN_GLOBAL_CONTAINERS, 0, 0)


# The same helpers as static methods of the struct: DomainQuery.direct_hash(sub, h), ...
for _name, _fn in (("make", dq_make), ("local_id", dq_local_id), ("direct_id", dq_direct_id),
                   ("direct_hash", dq_direct_hash), ("local_hash", dq_local_hash),
                   ("global_", dq_global), ("range", dq_range),
                   ("global_bcast", dq_global_bcast), ("dynamic", dq_dynamic)):
    setattr(ChiDomainQuery, _name, staticmethod(_fn))

DomainQuery = ChiDomainQuery
