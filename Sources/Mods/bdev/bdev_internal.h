/* The bdev module's private interfaces: the block allocator, the backends and one container's
 * state. Task layouts are public, in chimaera/bdev.h. */
#ifndef BDEV_INTERNAL_H
#define BDEV_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "chimaera/bdev.h"
#include "chimaera/module.h"

/* ---- Block allocator (block_alloc.c): a buddy allocator over [0, size) ------------------
 * Size classes are CHI_BDEV_UNIT << order. Free blocks of each order sit in a vector; one
 * open-addressing hash table maps a block's offset to its order, state (free or allocated)
 * and vector index, so buddies are found, and frees checked, in O(1). Memory grows with the
 * number of blocks in use or free, not with the device size. Not thread-safe: one container
 * uses it from its single metadata lane. */

#define BDEV_ORDERS 52 /* CHI_BDEV_UNIT << 51 == 2^63 */

typedef struct bdev_slot {
    uint64_t key;   /* offset + 1; 0 marks an empty slot */
    uint32_t idx;   /* index in the free vector of its order (free blocks only) */
    uint8_t order;
    uint8_t used;   /* 1 allocated, 0 free */
    uint8_t pad[2];
} bdev_slot_t;

typedef struct bdev_alloc {
    uint64_t size;       /* managed bytes, a multiple of CHI_BDEV_UNIT */
    uint64_t free_bytes;
    uint32_t orders;     /* orders 0..orders-1 exist */
    bdev_slot_t *slots;  /* capacity a power of two, at most half full */
    uint64_t cap;
    uint64_t count;
    uint64_t *freev[BDEV_ORDERS];
    uint64_t freen[BDEV_ORDERS];
    uint64_t freecap[BDEV_ORDERS];
} bdev_alloc_t;

/** Manages [0, size rounded down to CHI_BDEV_UNIT). Returns 0, -EINVAL (under one unit) or
 *  -ENOMEM. */
int bdev_alloc_init(bdev_alloc_t *a, uint64_t size);
void bdev_alloc_fini(bdev_alloc_t *a);
/** Allocates size bytes (rounded up to CHI_BDEV_UNIT) as at most max blocks, largest first.
 *  Returns the block count, -EINVAL (size 0 or above the managed size), -ENOSPC (not enough
 *  free space in max blocks; nothing is allocated) or -ENOMEM. */
int bdev_alloc_get(bdev_alloc_t *a, uint64_t size, chi_bdev_block_t *out, uint32_t max);
/** Frees a block exactly as bdev_alloc_get returned it, merging it with free buddies.
 *  Returns 0, -EINVAL (not an allocated block) or -ENOMEM; nothing changes on failure. */
int bdev_alloc_put(bdev_alloc_t *a, uint64_t offset, uint64_t size);
/** Marks exactly [offset, offset + size) allocated, as bdev_alloc_get would have returned it
 *  (a migrated container rebuilds its allocator so). Returns 0, -EPROTO (not a block of this
 *  device, or one overlapping an allocated block) or -ENOMEM; nothing changes on failure. */
int bdev_alloc_claim(bdev_alloc_t *a, uint64_t offset, uint64_t size);
/** Calls fn for every allocated block, in no particular order, until it returns nonzero
 *  (which is returned). */
int bdev_alloc_each_used(const bdev_alloc_t *a, int (*fn)(void *arg, uint64_t off, uint64_t size),
                         void *arg);
/** The number of free blocks (extents) and the largest one, in bytes. */
uint64_t bdev_alloc_free_blocks(const bdev_alloc_t *a);
uint64_t bdev_alloc_largest(const bdev_alloc_t *a);

/* ---- One container ------------------------------------------------------------------------ */

enum { BDEV_RAM = 1, BDEV_FS = 2 };
#define BDEV_CREATE_FLAGS                                                                    \
    (CHI_BDEV_CREATE_BUFFERED | CHI_BDEV_CREATE_TEMPORARY | CHI_BDEV_CREATE_DATA_HIGH_LATENCY)

/** Per-worker I/O counters, written by that worker, read by PollStats on another. */
typedef struct bdev_counters {
    _Atomic uint64_t reads, writes, read_bytes, write_bytes;
    char pad[32];
} bdev_counters_t;

typedef struct bdev_fs bdev_fs_t;
typedef struct bdev_group bdev_group_t;

typedef struct bdev {
    chi_container_t *c;
    uint32_t id;
    uint32_t nworkers;
    uint64_t size;        /* device bytes */
    uint32_t kind;        /* BDEV_RAM or BDEV_FS */
    uint32_t flags;       /* CHI_BDEV_CREATE_* */
    int data_base;        /* lane index of data lane 0 */
    int md_lane;
    uint64_t create_ns;
    bdev_alloc_t alloc;   /* metadata lane only */
    _Atomic uint64_t free_pub;        /* alloc.free_bytes, for the kSchedule hook */
    _Atomic uint64_t sched_pending;   /* bytes routed here by kSchedule, not yet allocated */
    _Atomic uint32_t lane_load[CHI_BDEV_DATA_LANES]; /* tasks mapped and not finished */
    _Atomic uint32_t lane_cursor;
    _Atomic uint32_t running;         /* Write/Read/Flush tasks inside run (maybe suspended) */
    bdev_counters_t *counters;        /* nworkers + 1 (the last for unknown workers) */
    bdev_group_t *group;
    unsigned char *mem;   /* ram:// */
    bdev_fs_t *fs;        /* fs:// */
} bdev_t;

/** The containers of one pool, for the kSchedule hook (which runs with container 0's state). */
struct bdev_group {
    uint64_t pool_id;
    uint32_t n;
    uint32_t cap;
    bdev_t **members;      /* by container id; NULL for a destroyed one */
    _Atomic uint32_t cursor;
    bdev_group_t *next;
};

uint64_t bdev_now_ns(void);

/* ---- Across containers (bdev_schedule.c) --------------------------------------------------- */

/** Adds the container to its pool's group (created with the first member). 0 or -ENOMEM. */
int bdev_group_join(bdev_t *b);
/** Removes it; the last member frees the group. */
void bdev_group_leave(bdev_t *b);
/** The module's monitor hook: CHI_MONITOR_SCHEDULE and CHI_MONITOR_REPLICA_AGG. */
int bdev_monitor(void *state, uint32_t mode, chi_task_t *task, chi_rctx_t *rctx);

/* ---- Backends (backend_ram.c, backend_fs.c) ---------------------------------------------- */

int bdev_ram_open(bdev_t *b);
void bdev_ram_close(bdev_t *b);
/** Copies len bytes between buf and the device at off. Returns 0. */
int bdev_ram_io(bdev_t *b, bool write, void *buf, uint64_t off, uint64_t len);

/** Opens (creating if needed) path.<container> and sizes it; registers the poller. Returns
 *  0 or -errno, leaving nothing behind on failure. */
int bdev_fs_open(bdev_t *b, const char *path);
void bdev_fs_close(bdev_t *b);
/** Removes the file now if the container was created CHI_BDEV_CREATE_TEMPORARY. */
void bdev_fs_unlink_temporary(bdev_t *b);
/** Moves len bytes through the worker's io_uring, suspending the task until they are done.
 *  Returns 0 or -errno. */
int bdev_fs_io(bdev_t *b, chi_rctx_t *rctx, bool write, void *buf, uint64_t off,
               uint64_t len, uint32_t io_flags);
/** The path the container's file was opened from (without the ".<container>" suffix). */
int bdev_fs_base_path(const bdev_t *b, char *out, size_t cap);
/** pread/pwrite on the worker, blocking it: for migration, which holds the container plugged
 *  anyway. Returns 0 or -errno (-EIO for a short file). */
int bdev_fs_sync_io(bdev_t *b, bool write, void *buf, uint64_t off, uint64_t len);
/** fdatasync through io_uring. Returns 0 or -errno. */
int bdev_fs_flush(bdev_t *b, chi_rctx_t *rctx);

/* ---- Containers (bdev.c) and migration (bdev_migrate.c) ------------------------------------ */

/** Builds a container's state: lanes, allocator, backend (path: fs:// only), pool group.
 *  Returns 0 or -errno, leaving nothing behind on failure. */
int bdev_build(chi_container_t *c, uint32_t kind, const char *path, uint64_t size, uint32_t flags,
               bdev_t **out);
void bdev_free(bdev_t *b);
int bdev_migrate_out(chi_container_t *c, void *state, chi_migrate_stream_t *out);
int bdev_migrate_in(chi_container_t *c, chi_migrate_stream_t *in, uint32_t version, void **state);

/* ---- Method bodies (bdev_methods.c) -------------------------------------------------------- */

int bdev_run_allocate(bdev_t *b, chi_bdev_allocate_task_t *t);
int bdev_run_free(bdev_t *b, chi_bdev_free_task_t *t);
int bdev_run_io(bdev_t *b, chi_bdev_io_task_t *t, chi_rctx_t *rctx, bool write);
int bdev_run_flush(bdev_t *b, chi_rctx_t *rctx);
int bdev_run_poll_stats(bdev_t *b, chi_bdev_poll_stats_task_t *t);

#endif
