/* The small_message module: Md (a latency probe that can chain through the pool's containers)
 * and Io (a bulk transfer check). Task layouts are in chimaera/small_message.h. */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chimaera/module.h"
#include "chimaera/small_message.h"

/* The version, and what Md answers: a test builds a second version of this file with
 * -DSM_VERSION=2 -DSM_MD_RET=2 and upgrades a running pool to it (docs/modules.md). */
#ifndef SM_VERSION
#define SM_VERSION 1
#endif
#ifndef SM_MD_RET
#define SM_MD_RET 1
#endif

/* One container's state. The container count is taken once at create: a pool's container
 * set is fixed for its lifetime in this ABI version. `served` counts the Md tasks run; one
 * lane per container means one worker at a time (fibers of a chain interleave only where
 * they wait), so it needs no locked add; it is atomic so that readers see whole values. */
typedef struct sm_state {
    uint32_t id;
    uint32_t count;
    _Atomic uint64_t served;
} sm_state_t;

#define FIELD(type, member, ftype, fdir)                                                   \
    {                                                                                      \
        #member, (uint32_t)offsetof(type, member), (uint32_t)sizeof(((type *)0)->member),  \
            ftype, fdir, -1, 0                                                             \
    }

static const chi_field_desc_t md_fields[] = {
    FIELD(chi_sm_md_task_t, depth, CHI_FT_U32, CHI_DIR_IN),
    FIELD(chi_sm_md_task_t, ret, CHI_FT_I32, CHI_DIR_OUT),
};

/* Io's field order matters: data's bulk_size_field is an index into this array. */
enum { IO_F_DATA, IO_F_SIZE, IO_F_FLAGS, IO_F_PATTERN, IO_F_RET };

static const chi_field_desc_t io_fields[] = {
    [IO_F_DATA] = {"data", (uint32_t)offsetof(chi_sm_io_task_t, data),
                   (uint32_t)sizeof(chi_shm_ptr_t), CHI_FT_BULK, CHI_DIR_IN, IO_F_SIZE,
                   CHI_DT_WRITE | CHI_DT_EXPOSE},
    [IO_F_SIZE] = FIELD(chi_sm_io_task_t, size, CHI_FT_U64, CHI_DIR_IN),
    [IO_F_FLAGS] = FIELD(chi_sm_io_task_t, io_flags, CHI_FT_U32, CHI_DIR_IN),
    [IO_F_PATTERN] = FIELD(chi_sm_io_task_t, pattern, CHI_FT_U32, CHI_DIR_IN),
    [IO_F_RET] = FIELD(chi_sm_io_task_t, ret, CHI_FT_U64, CHI_DIR_OUT),
};

static const chi_field_desc_t served_fields[] = {
    FIELD(chi_sm_served_task_t, served, CHI_FT_U64, CHI_DIR_OUT),
};

static const chi_method_desc_t sm_methods[] = {
    {CHI_SM_MD, (uint32_t)sizeof(chi_sm_md_task_t), CHI_MF_PERIODIC_OK | CHI_MF_WRITE,
     (uint32_t)(sizeof(md_fields) / sizeof(md_fields[0])), "Md", md_fields, NULL},
    {CHI_SM_IO, (uint32_t)sizeof(chi_sm_io_task_t), 0,
     (uint32_t)(sizeof(io_fields) / sizeof(io_fields[0])), "Io", io_fields, NULL},
    {CHI_SM_SERVED, (uint32_t)sizeof(chi_sm_served_task_t), 0,
     (uint32_t)(sizeof(served_fields) / sizeof(served_fields[0])), "Served", served_fields, NULL},
};

static int sm_create(chi_container_t *c, const void *params, uint32_t params_size,
                     void **state) {
    (void)params;
    (void)params_size;
    sm_state_t *s = malloc(sizeof(*s));
    if (s == NULL) return -ENOMEM;
    s->id = chi_container_id(c);
    s->count = chi_container_count(c);
    atomic_init(&s->served, 0);
    int rc = chi_container_add_lanes(c, 0, 1, CHI_PRIO_LOW_LATENCY);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *state = s;
    return 0;
}

static void sm_destroy(chi_container_t *c, void *state) {
    (void)c;
    free(state);
}

/* Hot upgrade from any earlier version: the state's layout has not changed since version 1,
 * so the new state is a copy (the old one stays intact until the runtime frees it; if another
 * container's upgrade fails, the old code goes on with it). A module whose layout changed
 * would convert field by field here, by old_version. SM_UPGRADE_FAIL builds a version whose
 * hook refuses, for the test of a failed upgrade. */
#ifndef SM_NO_UPGRADE
static int sm_upgrade(chi_container_t *c, void *old_state, uint32_t old_version,
                      void **new_state) {
    (void)c;
    (void)old_version;
#ifdef SM_UPGRADE_FAIL
    (void)old_state;
    (void)new_state;
    return -EPROTO;
#else
#ifdef SM_UPGRADE_FAIL_CONTAINER /* refuses on one container only: a cluster's all-or-nothing */
    if (chi_container_id(c) == SM_UPGRADE_FAIL_CONTAINER) return -EPROTO;
#endif
    const sm_state_t *o = old_state;
    sm_state_t *s = malloc(sizeof(*s));
    if (s == NULL) return -ENOMEM;
    s->id = o->id;
    s->count = o->count;
    atomic_init(&s->served, atomic_load_explicit(&o->served, memory_order_relaxed));
    int rc = chi_container_add_lanes(c, 0, 1, CHI_PRIO_LOW_LATENCY); /* kept: a no-op */
    if (rc < 0) {
        free(s);
        return rc;
    }
    *new_state = s;
    return 0;
#endif
}
#endif

/* Migration: the state on the wire is {magic, id, count, served}, little-endian as the nodes of
 * one cluster are. The id and count never change when a container moves. */
#define SM_MIGRATE_MAGIC 0x534d4731u /* "SMG1" */
struct sm_wire {
    uint32_t magic, id, count, reserved;
    uint64_t served;
};

static int sm_migrate_out(chi_container_t *c, void *state, chi_migrate_stream_t *out) {
    (void)c;
    const sm_state_t *s = state;
    struct sm_wire w = {SM_MIGRATE_MAGIC, s->id, s->count, 0,
                        atomic_load_explicit(&s->served, memory_order_relaxed)};
    return chi_migrate_write(out, &w, sizeof w);
}

/* What a migration moves: the wire record. */
static uint64_t sm_state_bytes(chi_container_t *c, const void *state) {
    (void)c;
    (void)state;
    return sizeof(struct sm_wire);
}

static int sm_migrate_in(chi_container_t *c, chi_migrate_stream_t *in, uint32_t version,
                         void **state) {
    (void)version; /* every version so far writes the same bytes */
    struct sm_wire w;
    size_t got = 0;
    while (got < sizeof w) {
        long n = chi_migrate_read(in, (char *)&w + got, sizeof w - got);
        if (n < 0) return (int)n;
        if (n == 0) return -ENODATA; /* short */
        got += (size_t)n;
    }
    /* The bytes came over the network: checked before use. */
    if (w.magic != SM_MIGRATE_MAGIC) return -EBADMSG;
    if (w.id != chi_container_id(c) || w.count != chi_container_count(c)) return -EPROTO;
    sm_state_t *s = malloc(sizeof(*s));
    if (s == NULL) return -ENOMEM;
    s->id = w.id;
    s->count = w.count;
    atomic_init(&s->served, w.served);
    int rc = chi_container_add_lanes(c, 0, 1, CHI_PRIO_LOW_LATENCY);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *state = s;
    return 0;
}

static int sm_run_md(sm_state_t *s, chi_sm_md_task_t *t, chi_rctx_t *rctx) {
    uint32_t depth = t->depth;
    /* Not a locked add: a container's tasks run on one worker at a time (its lane's), and a
     * locked instruction per Md costs the async path measurably. */
    atomic_store_explicit(&s->served, atomic_load_explicit(&s->served, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (depth == 0) {
        t->ret = SM_MD_RET;
        return 0;
    }
    if (s->count == 0) return -CHI_ENOCONTAINER;
    chi_client_t *client = chi_rctx_client(rctx);
    /* The pool comes from the container, not from t->hdr.pool_id: the client wrote that
     * field and could aim the subtask at another module's method 10. */
    uint64_t pool_id = chi_container_pool_id(chi_rctx_container(rctx));
    chi_domain_query_t dq =
        chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, (s->id + 1u) % s->count);
    chi_task_t *sub_hdr;
    int rc = chi_task_new(client, pool_id, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &sub_hdr);
    if (rc < 0) return rc;
    chi_sm_md_task_t *sub = (chi_sm_md_task_t *)sub_hdr;
    sub->depth = depth - 1;
    rc = chi_task_submit(client, sub_hdr);
    if (rc < 0) {
        chi_task_del(client, sub_hdr);
        return rc;
    }
    /* Suspends this fiber only; the worker keeps running other tasks, including the subtask
     * when it lands on this same container. A failed wait leaves the subtask in flight, so
     * it cannot be freed here: leaking it is the only safe choice. */
    rc = chi_task_wait(client, sub_hdr, -1);
    if (rc < 0) return rc;
    rc = sub->hdr.rc;
    t->ret = sub->ret;
    chi_task_del(client, sub_hdr);
    return rc < 0 ? rc : 0;
}

static int sm_run_io(chi_sm_io_task_t *t, chi_rctx_t *rctx) {
    /* Each field is read once: the client can write the task while it runs, and the size
     * checked by chi_rctx_shm_ptr must be the size used. */
    uint64_t size = t->size;
    chi_shm_ptr_t data = t->data;
    uint32_t io_flags = t->io_flags;
    unsigned char byte = (unsigned char)(t->pattern & 0xffu);
    /* Zero is rejected before resolving: an empty range says nothing about the pointer. */
    if (size == 0) return -EINVAL;
#if SIZE_MAX < UINT64_MAX
    if (size > SIZE_MAX) return -EFAULT;
#endif
    unsigned char *p = chi_rctx_shm_ptr(rctx, data, size);
    if (p == NULL) return -EFAULT;
    size_t n = (size_t)size;
    switch (io_flags) {
    case CHI_SM_IO_WRITE: {
        size_t same = 0;
        for (size_t i = 0; i < n; i++) same += p[i] == byte;
        t->ret = same;
        return same == n ? 0 : -EIO;
    }
    case CHI_SM_IO_READ:
        memset(p, byte, n);
        t->ret = n;
        return 0;
    default:
        return -EINVAL;
    }
}

static int sm_run(void *state, chi_task_t *task, chi_rctx_t *rctx) {
    /* The runtime validates method ids and task sizes against the descriptors; these checks
     * repeat that so a runtime bug cannot turn into an out-of-bounds write here. */
    switch (task->method) {
    case CHI_SM_MD:
        if (task->size < sizeof(chi_sm_md_task_t)) return -CHI_EBADTASK;
        return sm_run_md(state, (chi_sm_md_task_t *)task, rctx);
    case CHI_SM_IO:
        if (task->size < sizeof(chi_sm_io_task_t)) return -CHI_EBADTASK;
        return sm_run_io((chi_sm_io_task_t *)task, rctx);
    case CHI_SM_SERVED:
        if (task->size < sizeof(chi_sm_served_task_t)) return -CHI_EBADTASK;
        ((chi_sm_served_task_t *)task)->served =
            atomic_load_explicit(&((sm_state_t *)state)->served, memory_order_relaxed);
        return 0;
    default:
        return -CHI_ENOMETHOD;
    }
}

/* Folds broadcast replicas into the original: ret is the sum (so a broadcast Md reports the
 * number of containers that answered), rc the first failure. */
static int sm_aggregate(chi_task_t *task, chi_rctx_t *rctx) {
    uint32_t n = chi_rctx_replica_count(rctx);
    int32_t rc = 0;
    int64_t md_sum = 0;
    uint64_t io_sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        const chi_task_t *r = chi_rctx_replica(rctx, i);
        if (r == NULL) continue;
        if (rc == 0 && r->rc < 0) rc = r->rc;
        if (task->method == CHI_SM_MD)
            md_sum += ((const chi_sm_md_task_t *)r)->ret;
        else
            io_sum += ((const chi_sm_io_task_t *)r)->ret;
    }
    if (task->method == CHI_SM_MD) {
        if (md_sum > INT32_MAX) md_sum = INT32_MAX;
        if (md_sum < INT32_MIN) md_sum = INT32_MIN;
        ((chi_sm_md_task_t *)task)->ret = (int32_t)md_sum;
    } else {
        ((chi_sm_io_task_t *)task)->ret = io_sum;
    }
    task->rc = rc;
    return 0;
}

static int sm_monitor(void *state, uint32_t mode, chi_task_t *task, chi_rctx_t *rctx) {
    (void)state;
    switch (mode) {
    case CHI_MONITOR_REPLICA_AGG:
        if (task->method != CHI_SM_MD && task->method != CHI_SM_IO) return -CHI_ENOMETHOD;
        return sm_aggregate(task, rctx);
    case CHI_MONITOR_SCHEDULE: {
        /* Shared by every container and worker: round-robin is only approximate across
         * threads, which is all dynamic scheduling needs. */
        static atomic_uint_fast32_t next;
        uint32_t count = chi_container_count(chi_rctx_container(rctx));
        if (count == 0) return -CHI_ENOCONTAINER;
        uint32_t c =
            (uint32_t)(atomic_fetch_add_explicit(&next, 1, memory_order_relaxed) % count);
        task->dom_query = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, c);
        return 0;
    }
    default:
        /* A mode added after this module was built: say so, so the runtime can fall back. */
        return -ENOTSUP;
    }
}

static int sm_map_task_to_lane(void *state, chi_container_t *c, const chi_task_t *task) {
    (void)state;
    return chi_lane_by_hash(c, 0, task->lane_hash);
}

static const chi_module_vtable_t sm_vtable = {
    .size = sizeof(chi_module_vtable_t),
#ifdef SM_ABI_MAJOR /* a build for another ABI, for the test of a refused upgrade */
    .abi_major = SM_ABI_MAJOR,
#else
    .abi_major = CHI_ABI_MAJOR,
#endif
    .abi_minor = CHI_ABI_MINOR,
    .name = CHI_SM_MODULE_NAME,
    .version = SM_VERSION,
    .nmethods = (uint32_t)(sizeof(sm_methods) / sizeof(sm_methods[0])),
    .methods = sm_methods,
    .create = sm_create,
    .destroy = sm_destroy,
    .run = sm_run,
    .monitor = sm_monitor,
    .map_task_to_lane = sm_map_task_to_lane,
#ifndef SM_NO_UPGRADE /* a build without the hook, for the test of a refused upgrade */
    .upgrade = sm_upgrade,
#endif
    .migrate_out = sm_migrate_out,
    .migrate_in = sm_migrate_in,
    .state_bytes = sm_state_bytes,
};

CHI_MODULE_EXPORT(&sm_vtable)
