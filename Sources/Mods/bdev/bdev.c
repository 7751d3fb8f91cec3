/* The bdev module: descriptors, containers, lane mapping and run. Task layouts are in
 * chimaera/bdev.h; method bodies in bdev_methods.c; dynamic scheduling and aggregation in
 * bdev_schedule.c; the block allocator in block_alloc.c; backends in backend_{ram,fs}.c.
 *
 * Lanes: one low-latency metadata lane (Allocate, Free, PollStats: the allocator is not
 * thread-safe and needs no lock there) and 32 data lanes (Write, Read, Flush). A Write or
 * Read goes to the data lane with the fewest tasks mapped and not finished, counting those
 * suspended in I/O, which the runtime's queue length does not see.
 *
 * The data lanes are low-latency unless CHI_BDEV_CREATE_DATA_HIGH_LATENCY asks for the
 * seed's high-latency placement. The seed's I/O blocked its worker for the whole transfer,
 * which is what high-latency workers are for; here an I/O holds its worker only to submit
 * and to complete it, i.e. it is a short task. On low-latency workers, which also drain the
 * clients' queues, a task is routed, run and submitted on the worker that received it; on
 * high-latency ones each I/O crosses to another worker first. Measured on 2 vCPUs (one
 * worker of each kind), 4 KiB random reads at depth 32: 0.93 of fio low, 0.80 high. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "bdev_internal.h"

/* ---- descriptors ------------------------------------------------------------------------- */

#define FIELD(type, member, name, ftype, fdir)                                               \
    {                                                                                        \
        name, (uint32_t)offsetof(type, member), (uint32_t)sizeof(((type *)0)->member),       \
            ftype, fdir, -1, 0                                                               \
    }
#define NFIELDS(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))

/* The order matters: the record of blocks names fields by index. */
enum { ALLOCATE_F_SIZE, ALLOCATE_F_NBLOCKS, ALLOCATE_F_BLOCKS };
static const chi_field_desc_t allocate_fields[] = {
    [ALLOCATE_F_SIZE] = FIELD(chi_bdev_allocate_task_t, size, "size", CHI_FT_U64, CHI_DIR_IN),
    [ALLOCATE_F_NBLOCKS] =
        FIELD(chi_bdev_allocate_task_t, nblocks, "nblocks", CHI_FT_U32, CHI_DIR_OUT),
    [ALLOCATE_F_BLOCKS] =
        FIELD(chi_bdev_allocate_task_t, blocks, "blocks", CHI_FT_BYTES, CHI_DIR_OUT),
};

/* Allocate's blocks[] holds nblocks chi_bdev_block_t records: bindings show them as objects. */
static const chi_field_desc_t block_fields[] = {
    FIELD(chi_bdev_block_t, offset, "offset", CHI_FT_U64, CHI_DIR_OUT),
    FIELD(chi_bdev_block_t, size, "size", CHI_FT_U64, CHI_DIR_OUT),
    FIELD(chi_bdev_block_t, container, "container", CHI_FT_U32, CHI_DIR_OUT),
};
static const chi_record_desc_t bdev_records[] = {
    {CHI_BDEV_ALLOCATE, ALLOCATE_F_BLOCKS, (uint32_t)sizeof(chi_bdev_block_t), ALLOCATE_F_NBLOCKS,
     "Block", block_fields, NFIELDS(block_fields), 0},
};

/* The create parameters, by the seed's names (its CreateTaskParams has path_ and size_): path
 * is the device URL. reserved is left out: it must stay zero. */
static const chi_field_desc_t create_fields[] = {
    FIELD(chi_bdev_create_params_t, url, "path", CHI_FT_STR, CHI_DIR_IN),
    FIELD(chi_bdev_create_params_t, size, "size", CHI_FT_U64, CHI_DIR_IN),
    FIELD(chi_bdev_create_params_t, flags, "flags", CHI_FT_U32, CHI_DIR_IN),
};

static const chi_field_desc_t free_fields[] = {
    FIELD(chi_bdev_free_task_t, block.offset, "block_offset", CHI_FT_U64, CHI_DIR_IN),
    FIELD(chi_bdev_free_task_t, block.size, "block_size", CHI_FT_U64, CHI_DIR_IN),
    FIELD(chi_bdev_free_task_t, block.container, "block_container", CHI_FT_U32, CHI_DIR_IN),
};

/* The order matters: data's bulk_size_field is an index into the array. */
enum { IO_F_DATA, IO_F_SIZE };
#define IO_FIELDS(mode)                                                                      \
    {                                                                                        \
        [IO_F_DATA] = {"data", (uint32_t)offsetof(chi_bdev_io_task_t, data),                 \
                       (uint32_t)sizeof(chi_shm_ptr_t), CHI_FT_BULK, CHI_DIR_IN, IO_F_SIZE,  \
                       mode},                                                                \
        [IO_F_SIZE] = FIELD(chi_bdev_io_task_t, size, "size", CHI_FT_U64, CHI_DIR_IN),        \
        FIELD(chi_bdev_io_task_t, block.offset, "block_offset", CHI_FT_U64, CHI_DIR_IN),      \
        FIELD(chi_bdev_io_task_t, block.size, "block_size", CHI_FT_U64, CHI_DIR_IN),          \
        FIELD(chi_bdev_io_task_t, block.container, "block_container", CHI_FT_U32, CHI_DIR_IN),\
        FIELD(chi_bdev_io_task_t, io_flags, "io_flags", CHI_FT_U32, CHI_DIR_IN),              \
        FIELD(chi_bdev_io_task_t, lane, "lane", CHI_FT_U32, CHI_DIR_IN),                      \
        FIELD(chi_bdev_io_task_t, ret, "ret", CHI_FT_U64, CHI_DIR_OUT),                       \
    }
static const chi_field_desc_t write_fields[] = IO_FIELDS(CHI_DT_WRITE);
static const chi_field_desc_t read_fields[] = IO_FIELDS(CHI_DT_EXPOSE);

#define STAT(member, ftype) \
    FIELD(chi_bdev_poll_stats_task_t, member, #member, ftype, CHI_DIR_OUT)
static const chi_field_desc_t stats_fields[] = {
    STAT(capacity, CHI_FT_U64),    STAT(free_bytes, CHI_FT_U64),  STAT(free_blocks, CHI_FT_U64),
    STAT(largest_free, CHI_FT_U64), STAT(reads, CHI_FT_U64),      STAT(writes, CHI_FT_U64),
    STAT(read_bytes, CHI_FT_U64),  STAT(write_bytes, CHI_FT_U64), STAT(read_iops, CHI_FT_F64),
    STAT(write_iops, CHI_FT_F64),  STAT(read_mbps, CHI_FT_F64),   STAT(write_mbps, CHI_FT_F64),
    STAT(timestamp_ns, CHI_FT_U64), STAT(interval_ns, CHI_FT_U64),
};

static const chi_method_desc_t bdev_methods[] = {
    {CHI_METHOD_CREATE, (uint32_t)sizeof(chi_bdev_create_params_t), CHI_MF_CREATE_PARAMS,
     NFIELDS(create_fields), "Create", create_fields, NULL},
    {CHI_BDEV_ALLOCATE, (uint32_t)sizeof(chi_bdev_allocate_task_t), CHI_MF_WRITE,
     NFIELDS(allocate_fields), "Allocate", allocate_fields, NULL},
    {CHI_BDEV_FREE, (uint32_t)sizeof(chi_bdev_free_task_t), CHI_MF_WRITE, NFIELDS(free_fields), "Free",
     free_fields, NULL},
    {CHI_BDEV_WRITE, (uint32_t)sizeof(chi_bdev_io_task_t), CHI_MF_WRITE, NFIELDS(write_fields), "Write",
     write_fields, NULL},
    {CHI_BDEV_READ, (uint32_t)sizeof(chi_bdev_io_task_t), 0, NFIELDS(read_fields), "Read",
     read_fields, NULL},
    {CHI_BDEV_POLL_STATS, (uint32_t)sizeof(chi_bdev_poll_stats_task_t), CHI_MF_PERIODIC_OK,
     NFIELDS(stats_fields), "PollStats", stats_fields, NULL},
    {CHI_BDEV_FLUSH, (uint32_t)sizeof(chi_bdev_flush_task_t), 0, 0, "Flush", NULL, NULL},
};

/* ---- containers ------------------------------------------------------------------------- */

void bdev_free(bdev_t *b) {
    bdev_group_leave(b);
    if (b->kind == BDEV_FS) bdev_fs_close(b);
    if (b->kind == BDEV_RAM) bdev_ram_close(b);
    bdev_alloc_fini(&b->alloc);
    free(b->counters);
    free(b);
}

int bdev_build(chi_container_t *c, uint32_t kind, const char *path, uint64_t size, uint32_t flags,
               bdev_t **out) {
    bdev_t *b = calloc(1, sizeof *b);
    if (b == NULL) return -ENOMEM;
    b->c = c;
    b->id = chi_container_id(c);
    b->nworkers = chi_container_worker_count(c);
    b->size = size & ~(CHI_BDEV_UNIT - 1);
    b->flags = flags;
    b->create_ns = bdev_now_ns();
    b->counters = calloc(b->nworkers + 1u, sizeof *b->counters);
    int rc = b->counters == NULL ? -ENOMEM : 0;
    if (rc == 0) rc = chi_container_add_lanes(c, CHI_BDEV_MD_GROUP, 1, CHI_PRIO_LOW_LATENCY);
    if (rc == 0)
        rc = chi_container_add_lanes(c, CHI_BDEV_DATA_GROUP, CHI_BDEV_DATA_LANES,
                                     flags & CHI_BDEV_CREATE_DATA_HIGH_LATENCY
                                         ? CHI_PRIO_HIGH_LATENCY
                                         : CHI_PRIO_LOW_LATENCY);
    if (rc == 0) rc = b->md_lane = chi_lane_by_hash(c, CHI_BDEV_MD_GROUP, 0);
    if (rc >= 0) rc = b->data_base = chi_lane_by_hash(c, CHI_BDEV_DATA_GROUP, 0);
    if (rc >= 0) rc = bdev_alloc_init(&b->alloc, b->size);
    if (rc == 0) {
        atomic_store(&b->free_pub, b->size);
        /* The backend goes last: fs registers the poller, which needs the lanes. */
        rc = kind == BDEV_FS ? bdev_fs_open(b, path) : bdev_ram_open(b);
        if (rc == 0) b->kind = kind;
    }
    if (rc == 0) rc = bdev_group_join(b);
    if (rc < 0) {
        bdev_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

static int bdev_create(chi_container_t *c, const void *params, uint32_t params_size,
                       void **state) {
    chi_bdev_create_params_t p;
    memset(&p, 0, sizeof p);
    if (params == NULL || params_size < offsetof(chi_bdev_create_params_t, flags))
        return -EINVAL;
    memcpy(&p, params, params_size < sizeof p ? params_size : sizeof p);
    if (memchr(p.url, 0, sizeof p.url) == NULL) return -ENAMETOOLONG;
    if (p.size < CHI_BDEV_UNIT) return -EINVAL;
    if (p.flags & ~(uint32_t)BDEV_CREATE_FLAGS) return -EINVAL;
    uint32_t kind;
    const char *path = NULL;
    if (strncmp(p.url, "fs://", 5) == 0 || strncmp(p.url, "fs::", 4) == 0) {
        kind = BDEV_FS;
        /* The seed spells it fs::///tmp/x.bin (scheme "fs::", then "//" and the path). */
        int seed = strncmp(p.url, "fs::", 4) == 0;
        path = seed ? p.url + 4 : p.url + 5;
        if (seed && strncmp(path, "//", 2) == 0) path += 2;
        /* A relative path would resolve against the daemon's working directory. */
        if (path[0] != '/') return -EINVAL;
    } else if (strncmp(p.url, "ram://", 6) == 0 || strncmp(p.url, "ram::", 5) == 0) {
        kind = BDEV_RAM;
    } else {
        return -EINVAL;
    }
    bdev_t *b;
    int rc = bdev_build(c, kind, path, p.size, p.flags, &b);
    if (rc == 0) *state = b;
    return rc;
}

static void bdev_destroy(chi_container_t *c, void *state) {
    (void)c;
    bdev_t *b = state;
    if (b == NULL) return;
    /* A task suspended in I/O still refers to this state and would touch it if it ever
     * resumed. A pool destroy drains such tasks first, but a runtime that stops ends its
     * workers before destroying pools, leaving them suspended: keep the state then (the
     * process is exiting) rather than free it under them. The file still goes if it was
     * temporary. */
    if (atomic_load(&b->running) > 0) {
        bdev_group_leave(b);
        if (b->kind == BDEV_FS) bdev_fs_unlink_temporary(b);
        return;
    }
    bdev_free(b);
}

/* ---- lanes -------------------------------------------------------------------------------- */

static uint32_t pick_data_lane(bdev_t *b) {
    uint32_t start = atomic_fetch_add_explicit(&b->lane_cursor, 1, memory_order_relaxed);
    uint32_t best = start % CHI_BDEV_DATA_LANES;
    uint32_t best_load = UINT32_MAX;
    for (uint32_t i = 0; i < CHI_BDEV_DATA_LANES; i++) {
        uint32_t j = (start + i) % CHI_BDEV_DATA_LANES;
        uint32_t load = atomic_load_explicit(&b->lane_load[j], memory_order_relaxed);
        if (load < best_load) {
            best = j;
            best_load = load;
            if (load == 0) break;
        }
    }
    atomic_fetch_add_explicit(&b->lane_load[best], 1, memory_order_relaxed);
    return best;
}

static void release_data_lane(bdev_t *b, uint32_t lane) {
    if (lane >= CHI_BDEV_DATA_LANES) return;
    /* Saturating: a client may rewrite `lane` or resubmit a task as periodic. */
    uint32_t cur = atomic_load_explicit(&b->lane_load[lane], memory_order_relaxed);
    while (cur > 0 && !atomic_compare_exchange_weak_explicit(
                          &b->lane_load[lane], &cur, cur - 1, memory_order_relaxed,
                          memory_order_relaxed)) {
    }
}

static int bdev_map_task_to_lane(void *state, chi_container_t *c, const chi_task_t *task) {
    bdev_t *b = state;
    switch (task->method) {
    case CHI_BDEV_WRITE:
    case CHI_BDEV_READ: {
        uint32_t lane = pick_data_lane(b);
        /* The task is shared memory the module annotates for its run (const only in the
         * hook's signature): run releases the lane it records. */
        ((chi_bdev_io_task_t *)(uintptr_t)task)->lane = lane;
        return b->data_base + (int)lane;
    }
    case CHI_BDEV_FLUSH:
        return chi_lane_least_loaded(c, CHI_BDEV_DATA_GROUP);
    default:
        return b->md_lane;
    }
}

/* ---- run ---------------------------------------------------------------------------------- */

static int bdev_run(void *state, chi_task_t *task, chi_rctx_t *rctx) {
    bdev_t *b = state;
    /* The runtime checks sizes against the descriptors; repeated so that a runtime bug
     * cannot become an out-of-bounds access here. */
    uint32_t size = task->size;
    switch (task->method) {
    case CHI_BDEV_ALLOCATE:
        if (size < sizeof(chi_bdev_allocate_task_t)) return -CHI_EBADTASK;
        return bdev_run_allocate(b, (chi_bdev_allocate_task_t *)task);
    case CHI_BDEV_FREE:
        if (size < sizeof(chi_bdev_free_task_t)) return -CHI_EBADTASK;
        return bdev_run_free(b, (chi_bdev_free_task_t *)task);
    case CHI_BDEV_WRITE:
    case CHI_BDEV_READ: {
        if (size < sizeof(chi_bdev_io_task_t)) return -CHI_EBADTASK;
        chi_bdev_io_task_t *t = (chi_bdev_io_task_t *)task;
        atomic_fetch_add_explicit(&b->running, 1, memory_order_relaxed);
        int rc = bdev_run_io(b, t, rctx, task->method == CHI_BDEV_WRITE);
        release_data_lane(b, t->lane);
        atomic_fetch_sub_explicit(&b->running, 1, memory_order_release);
        return rc;
    }
    case CHI_BDEV_POLL_STATS:
        if (size < sizeof(chi_bdev_poll_stats_task_t)) return -CHI_EBADTASK;
        return bdev_run_poll_stats(b, (chi_bdev_poll_stats_task_t *)task);
    case CHI_BDEV_FLUSH: {
        atomic_fetch_add_explicit(&b->running, 1, memory_order_relaxed);
        int rc = bdev_run_flush(b, rctx);
        atomic_fetch_sub_explicit(&b->running, 1, memory_order_release);
        return rc;
    }
    default:
        return -CHI_ENOMETHOD;
    }
}

/* The blocks in use (what a migration moves) and the container's own bookkeeping. */
static uint64_t bdev_state_bytes(chi_container_t *c, const void *state) {
    (void)c;
    const bdev_t *b = state;
    uint64_t free_bytes = atomic_load_explicit(&b->free_pub, memory_order_relaxed);
    return (b->size - (free_bytes < b->size ? free_bytes : b->size)) + sizeof *b;
}

static const chi_module_vtable_t bdev_vtable = {
    .size = sizeof(chi_module_vtable_t),
    .abi_major = CHI_ABI_MAJOR,
    .abi_minor = CHI_ABI_MINOR,
    .name = CHI_BDEV_MODULE_NAME,
    .version = 1,
    .nmethods = NFIELDS(bdev_methods),
    .methods = bdev_methods,
    .create = bdev_create,
    .destroy = bdev_destroy,
    .run = bdev_run,
    .monitor = bdev_monitor,
    .map_task_to_lane = bdev_map_task_to_lane,
    .upgrade = NULL,
    .migrate_out = bdev_migrate_out,
    .migrate_in = bdev_migrate_in,
    .state_bytes = bdev_state_bytes,
    .nrecords = NFIELDS(bdev_records),
    .records = bdev_records,
};

CHI_MODULE_EXPORT(&bdev_vtable)
