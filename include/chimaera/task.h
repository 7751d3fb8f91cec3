/* Shared-memory layouts: process-independent pointers, domain queries and the task header.
 * These structs live in the runtime's shared-memory segment and are read by both sides, so
 * they are plain, fixed-size and never reordered. */
#ifndef CHIMAERA_TASK_H
#define CHIMAERA_TASK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A process-independent pointer: segment id plus byte offset from the segment's base. */
typedef struct chi_shm_ptr {
    uint32_t segment;  /* 0 = the runtime's main segment */
    uint32_t reserved;
    uint64_t offset;   /* 0 = null */
} chi_shm_ptr_t;

/* ---- Domain queries: where a task goes ---------------------------------------------- */

/* Sub-domains: the address space a query selects from. */
#define CHI_SUBDOMAIN_GLOBAL_CONTAINERS 1u /* every container of the pool, ids 0..n-1 */
#define CHI_SUBDOMAIN_LOCAL_CONTAINERS  2u /* the containers on this node, in id order */
#define CHI_SUBDOMAIN_PHYSICAL_NODE     3u /* the containers on one node, by node id */

/* Scope (exactly one). */
#define CHI_DQ_LOCAL   0x0001u /* only this node's containers */
#define CHI_DQ_DIRECT  0x0002u /* one specific address */
#define CHI_DQ_GLOBAL  0x0004u /* a range of addresses across all nodes */
#define CHI_DQ_DYNAMIC 0x0008u /* the module's kSchedule monitor picks the address */
#define CHI_DQ_SCOPE_MASK 0x000Fu
/* Selection (exactly one, except with CHI_DQ_DYNAMIC). */
#define CHI_DQ_ID    0x0010u /* sel is the address */
#define CHI_DQ_HASH  0x0020u /* sel is hashed onto the sub-domain */
#define CHI_DQ_RANGE 0x0040u /* [sel, sel + count); count 0 means "to the end" */
#define CHI_DQ_SEL_MASK 0x00F0u
/* Iteration over a multi-address selection (at most one; default broadcast). */
#define CHI_DQ_BCAST             0x0100u /* run on every address, aggregate by kReplicaAgg */
#define CHI_DQ_REP_UNTIL_SUCCESS 0x0200u /* try addresses in order until one returns rc >= 0 */
#define CHI_DQ_CHOOSE_ONE        0x0400u /* run on one address of the set */
#define CHI_DQ_ITER_MASK 0x0F00u

/** Where a task goes: scope | selection | iteration flags over a sub-domain. 24 bytes. */
typedef struct chi_domain_query {
    uint32_t flags;
    uint32_t sub_domain;
    uint64_t sel;
    uint64_t count;
} chi_domain_query_t;

static inline chi_domain_query_t chi_dq_make(uint32_t flags, uint32_t sub, uint64_t sel,
                                             uint64_t count) {
    chi_domain_query_t q;
    q.flags = flags;
    q.sub_domain = sub;
    q.sel = sel;
    q.count = count;
    return q;
}
/** The id-th container of this node's containers (sub-domain local containers). */
static inline chi_domain_query_t chi_dq_local_id(uint32_t sub, uint64_t id) {
    return chi_dq_make(CHI_DQ_LOCAL | CHI_DQ_ID, sub, id, 1);
}
/** The container with this id in the sub-domain. */
static inline chi_domain_query_t chi_dq_direct_id(uint32_t sub, uint64_t id) {
    return chi_dq_make(CHI_DQ_DIRECT | CHI_DQ_ID, sub, id, 1);
}
/** The container at hash modulo the sub-domain's size. */
static inline chi_domain_query_t chi_dq_direct_hash(uint32_t sub, uint64_t hash) {
    return chi_dq_make(CHI_DQ_DIRECT | CHI_DQ_HASH, sub, hash, 1);
}
/** One of this node's containers, chosen by hash. */
static inline chi_domain_query_t chi_dq_local_hash(uint64_t hash) {
    return chi_dq_make(CHI_DQ_LOCAL | CHI_DQ_HASH, CHI_SUBDOMAIN_LOCAL_CONTAINERS, hash, 1);
}
/** Every address of the sub-domain, iterated by iter (a CHI_DQ_* iteration flag). */
static inline chi_domain_query_t chi_dq_global(uint32_t sub, uint32_t iter) {
    return chi_dq_make(CHI_DQ_GLOBAL | CHI_DQ_RANGE | iter, sub, 0, 0);
}
/** The addresses [start, start + count) of the sub-domain, iterated by iter. */
static inline chi_domain_query_t chi_dq_range(uint32_t sub, uint64_t start, uint64_t count,
                                              uint32_t iter) {
    return chi_dq_make(CHI_DQ_GLOBAL | CHI_DQ_RANGE | iter, sub, start, count);
}
/** Every container of the pool on every node; replies aggregated by kReplicaAgg. */
static inline chi_domain_query_t chi_dq_global_bcast(void) {
    return chi_dq_global(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, CHI_DQ_BCAST);
}
/** Let the module's kSchedule monitor hook choose the container. */
static inline chi_domain_query_t chi_dq_dynamic(void) {
    return chi_dq_make(CHI_DQ_DYNAMIC, CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0, 0);
}

/* ---- Task header ---------------------------------------------------------------------- */

/* Priorities: which lanes and workers a task prefers. */
#define CHI_PRIO_LOW_LATENCY  0u
#define CHI_PRIO_HIGH_LATENCY 1u

/* Task flags (chi_task_t.flags). */
#define CHI_TASK_PERIODIC        0x0001u /* rerun every period_ns until the pool or runtime stops */
#define CHI_TASK_LONG_RUNNING    CHI_TASK_PERIODIC
#define CHI_TASK_FIRE_AND_FORGET 0x0002u /* the runtime frees the task when it completes */
#define CHI_TF_SRL_SYM           0x0004u /* parameters serialise the same way in and out */
#define CHI_TF_LOCAL             0x0008u /* never forwarded to another node */
#define CHI_TASK_USER_FLAGS      0x00FFFFFFu /* bits above are the library's own */
/* Set by the runtime on a backup's copy of a CHI_MF_WRITE task: its OUT fields hold the
 * primary's outputs, which a module whose outputs are decisions (bdev's block choices) applies
 * instead of deciding again. */
#define CHI_TASK_REPLICA         0x01000000u

/* Completion word values (chi_task_t.done). */
#define CHI_TASK_PENDING 0u
#define CHI_TASK_DONE    1u

/* Inherited method ids; custom methods start at CHI_METHOD_CUSTOM. */
#define CHI_METHOD_CREATE       0u
#define CHI_METHOD_DESTROY      1u
#define CHI_METHOD_NODE_FAILURE 2u
#define CHI_METHOD_RECOVER      3u
#define CHI_METHOD_MIGRATE      4u
#define CHI_METHOD_UPGRADE      5u
#define CHI_METHOD_CUSTOM       10u

/** The fixed header of every task; the method's parameters follow it. 128 bytes: the first
 *  cache line is written by the submitter, the second by the runtime. */
typedef struct chi_task {
    uint32_t size;       /* whole task size in bytes, header included */
    uint32_t method;     /* method id */
    uint64_t pool_id;    /* target pool */
    uint64_t task_id;    /* unique per segment; matches remote replies */
    chi_domain_query_t dom_query;
    uint32_t prio;       /* CHI_PRIO_* */
    uint32_t flags;      /* CHI_TASK_* | CHI_TF_* */
    uint64_t period_ns;  /* for CHI_TASK_PERIODIC */
    /* second cache line */
    uint32_t done;       /* completion word: CHI_TASK_PENDING until CHI_TASK_DONE */
    int32_t rc;          /* the method's status: 0 or a positive count on success, -errno */
    uint32_t runs;       /* how many times the method body ran (periodic tasks count up) */
    uint32_t lane_hash;  /* hint for the module's lane mapping */
    chi_shm_ptr_t parent;/* the task that spawned this one, if any */
    uint64_t reserved[4];/* the library's own; zero for new tasks */
} chi_task_t;

/** Parameters of a task start here. */
#define CHI_TASK_PARAMS(task) ((void *)((char *)(task) + sizeof(chi_task_t)))

static inline void chi_task_set_period_ns(chi_task_t *t, uint64_t ns) {
    t->period_ns = ns;
    t->flags |= CHI_TASK_PERIODIC;
}
static inline void chi_task_set_period_us(chi_task_t *t, uint64_t us) {
    chi_task_set_period_ns(t, us * 1000ull);
}
static inline void chi_task_set_period_ms(chi_task_t *t, uint64_t ms) {
    chi_task_set_period_ns(t, ms * 1000000ull);
}
static inline void chi_task_set_period_sec(chi_task_t *t, uint64_t s) {
    chi_task_set_period_ns(t, s * 1000000000ull);
}
static inline void chi_task_set_period_min(chi_task_t *t, uint64_t m) {
    chi_task_set_period_ns(t, m * 60000000000ull);
}

#ifdef __cplusplus
}
#endif
#endif
