/* The bdev module: a block device pool. Each container owns one device of `size` bytes:
 * fs://PATH (the file PATH.<container id>, I/O through io_uring, O_DIRECT when the file system
 * allows it) or ram:// (memory). Allocate hands out blocks of the device, Free returns them,
 * Write and Read move bytes between a shared-memory buffer and a block, Flush makes written
 * data durable, PollStats reports IOPS, bandwidth and free space (once, or periodically).
 *
 * Blocks: Allocate(size) returns 1 to CHI_BDEV_MAX_BLOCKS blocks (its rc is their count)
 * whose sizes add up to size rounded up to CHI_BDEV_UNIT, largest first. Each block is a
 * power-of-two multiple of CHI_BDEV_UNIT, aligned to its size, never overlaps another live
 * block, and records the container that allocated it. Free takes one block exactly as
 * Allocate returned it; freed space merges with its free neighbours. Write and Read take any
 * block inside the device (typically part of an allocated one) and move bytes at its start;
 * the module does not check that it was allocated.
 *
 * Errors (task->rc): -EINVAL bad size, flags or block (outside the device, zero or
 * misaligned size, not an allocated block for Free); -EFAULT a buffer outside the shared
 * segment; -ENOSPC not enough free space (or too fragmented to serve in
 * CHI_BDEV_MAX_BLOCKS blocks); -EXDEV a block of another container; -errno from the file
 * system. A task rejected for its input wrote nothing; an I/O error from the file system
 * may leave part of a Write done.
 *
 * Dynamic scheduling (chi_dq_dynamic()): Allocate goes to the container with the most free
 * space; Write, Read and Free go to the container named by their block. */
#ifndef CHIMAERA_BDEV_H
#define CHIMAERA_BDEV_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "chimaera/client.h"
#include "chimaera/errors.h"
#include "chimaera/task.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CHI_BDEV_MODULE_NAME "bdev"

/* Methods. */
#define CHI_BDEV_ALLOCATE   10u
#define CHI_BDEV_FREE       11u
#define CHI_BDEV_WRITE      12u
#define CHI_BDEV_READ       13u
#define CHI_BDEV_POLL_STATS 14u
#define CHI_BDEV_FLUSH      15u

/* Lane groups of each container. */
#define CHI_BDEV_MD_GROUP   0u  /* 1 low-latency lane: Allocate, Free, PollStats */
#define CHI_BDEV_DATA_GROUP 1u  /* 32 lanes: Write, Read, Flush (least loaded) */
#define CHI_BDEV_DATA_LANES 32u

#define CHI_BDEV_UNIT       4096ull /* the smallest block; every block size is a multiple */
#define CHI_BDEV_MAX_BLOCKS 64u     /* the most blocks one Allocate returns */
#define CHI_BDEV_URL_MAX    256u

/* Create flags (chi_bdev_create_params_t.flags). */
#define CHI_BDEV_CREATE_BUFFERED  0x1u /* fs://: never use O_DIRECT */
#define CHI_BDEV_CREATE_TEMPORARY 0x2u /* fs://: remove the file when the container goes */
/* Put the data lanes on high-latency workers. By default they are low-latency: an I/O holds
 * its worker only to submit and complete it (io_uring does the transfer), and sharing the
 * workers that receive the tasks saves a hop between workers per I/O. */
#define CHI_BDEV_CREATE_DATA_HIGH_LATENCY 0x4u

/* Write flags (chi_bdev_io_task_t.io_flags). */
#define CHI_BDEV_WRITE_FLUSH 0x1u /* the data is durable when the Write completes */

/** A range of one container's device. Allocate's blocks[] is described as an array of these
 *  (chi_record_desc_t "Block": offset, size, container), so bindings show them as objects. */
typedef struct chi_bdev_block {
    uint64_t offset;    /* bytes from the start of the device */
    uint64_t size;      /* bytes */
    uint32_t container; /* the container whose device this is */
    uint32_t reserved;  /* zero */
} chi_bdev_block_t;

/** The pool's create parameters (chi_pool_create_opts_t.params). The module copies
 *  min(params_size, sizeof) bytes into a zeroed struct, so fields may be appended later;
 *  url and size are required. The module describes them at run time (CHI_MF_CREATE_PARAMS,
 *  ABI 1.7) by the seed's names: url as "path", then "size" and "flags". */
typedef struct chi_bdev_create_params {
    char url[CHI_BDEV_URL_MAX]; /* "fs:///abs/path" or "ram://"; NUL-terminated */
    uint64_t size;              /* device bytes per container, >= CHI_BDEV_UNIT; rounded
                                 * down to a multiple of CHI_BDEV_UNIT */
    uint32_t flags;             /* CHI_BDEV_CREATE_* */
    uint32_t reserved;
} chi_bdev_create_params_t;

typedef struct chi_bdev_allocate_task {
    chi_task_t hdr;
    uint64_t size;                                 /* IN: bytes, 1..device size */
    uint32_t nblocks;                              /* OUT */
    uint32_t reserved;
    chi_bdev_block_t blocks[CHI_BDEV_MAX_BLOCKS];  /* OUT: nblocks blocks */
} chi_bdev_allocate_task_t;

typedef struct chi_bdev_free_task {
    chi_task_t hdr;
    chi_bdev_block_t block;  /* IN: as returned by Allocate */
} chi_bdev_free_task_t;

/** Write and Read: move `size` bytes between `data` and the start of `block`. */
typedef struct chi_bdev_io_task {
    chi_task_t hdr;
    chi_shm_ptr_t data;      /* IN: bulk of `size` bytes (Write: DT_WRITE, Read: DT_EXPOSE) */
    uint64_t size;           /* IN: 1..block.size */
    chi_bdev_block_t block;  /* IN */
    uint32_t io_flags;       /* IN: Write: CHI_BDEV_WRITE_FLUSH; Read: 0 */
    uint32_t lane;           /* the module's own: the data lane the task was mapped to */
    uint64_t ret;            /* OUT: bytes moved */
} chi_bdev_io_task_t;

typedef struct chi_bdev_flush_task {
    chi_task_t hdr;
} chi_bdev_flush_task_t;

/** PollStats. Rates cover the time since this task's previous run (a periodic task), else
 *  since the container was created. Counters are cumulative. */
typedef struct chi_bdev_poll_stats_task {
    chi_task_t hdr;
    uint64_t capacity;      /* OUT: device bytes */
    uint64_t free_bytes;    /* OUT */
    uint64_t free_blocks;   /* OUT: free extents (1 when nothing is allocated and the
                             * device size is a power of two) */
    uint64_t largest_free;  /* OUT: the largest block Allocate can return */
    uint64_t reads;         /* OUT: completed Reads */
    uint64_t writes;        /* OUT: completed Writes */
    uint64_t read_bytes;    /* OUT */
    uint64_t write_bytes;   /* OUT */
    double read_iops;       /* OUT */
    double write_iops;      /* OUT */
    double read_mbps;       /* OUT: MB/s (10^6 bytes) */
    double write_mbps;      /* OUT */
    uint64_t timestamp_ns;  /* OUT: CLOCK_MONOTONIC time of this sample */
    uint64_t interval_ns;   /* OUT: the time the rates cover */
} chi_bdev_poll_stats_task_t;

/* ---- Client helpers: each builds, runs (waiting at most timeout_ns; < 0 forever) and
 * frees one task, and returns the wait's error or the task's rc. They block. ------------- */

/** Fills create parameters; url is copied (truncated to CHI_BDEV_URL_MAX - 1 bytes). */
static inline chi_bdev_create_params_t chi_bdev_params(const char *url, uint64_t size,
                                                       uint32_t flags) {
    chi_bdev_create_params_t p;
    size_t n = strlen(url);
    memset(&p, 0, sizeof p);
    if (n >= sizeof p.url) n = sizeof p.url - 1;
    memcpy(p.url, url, n);
    p.size = size;
    p.flags = flags;
    return p;
}

/** Creates (or finds, by name) a bdev pool of `containers` containers. Registers the module. */
static inline int chi_bdev_create(chi_client_t *c, const char *name, uint32_t containers,
                                  const chi_bdev_create_params_t *params, uint64_t *pool_id) {
    chi_pool_create_opts_t o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.containers_per_node = containers;
    o.module = CHI_BDEV_MODULE_NAME;
    o.name = name;
    o.params = params;
    o.params_size = (uint32_t)sizeof *params;
    return chi_pool_create(c, &o, pool_id);
}

/** Allocates `size` bytes; stores up to `max` blocks in blocks[] and their count in *n. */
static inline int chi_bdev_allocate(chi_client_t *c, uint64_t pool, chi_domain_query_t dq,
                                    uint64_t size, chi_bdev_block_t *blocks, uint32_t max,
                                    uint32_t *n, int64_t timeout_ns) {
    chi_task_t *t;
    chi_bdev_allocate_task_t *a;
    uint32_t i;
    int rc = chi_task_new(c, pool, CHI_BDEV_ALLOCATE, sizeof(chi_bdev_allocate_task_t), &dq, &t);
    if (rc < 0) return rc;
    a = (chi_bdev_allocate_task_t *)t;
    a->size = size;
    rc = chi_task_call(c, t, timeout_ns);
    if (rc == -ETIMEDOUT) return rc; /* still in flight: it cannot be freed */
    if (n) *n = 0;
    if (rc >= 0 && a->nblocks <= CHI_BDEV_MAX_BLOCKS) {
        for (i = 0; i < a->nblocks && i < max; i++) blocks[i] = a->blocks[i];
        if (n) *n = a->nblocks < max ? a->nblocks : max;
    }
    chi_task_del(c, t);
    return rc;
}

/** Frees one block (sent to the container named in it when dq is dynamic). */
static inline int chi_bdev_free(chi_client_t *c, uint64_t pool, chi_domain_query_t dq,
                                chi_bdev_block_t block, int64_t timeout_ns) {
    chi_task_t *t;
    int rc = chi_task_new(c, pool, CHI_BDEV_FREE, sizeof(chi_bdev_free_task_t), &dq, &t);
    if (rc < 0) return rc;
    ((chi_bdev_free_task_t *)t)->block = block;
    rc = chi_task_call(c, t, timeout_ns);
    if (rc == -ETIMEDOUT) return rc;
    chi_task_del(c, t);
    return rc;
}

/** Fills an allocated io task for Write (method CHI_BDEV_WRITE) or Read; `buf` must come
 *  from chi_buffer_alloc. For callers that keep many tasks in flight. */
static inline int chi_bdev_io_prep(chi_client_t *c, chi_task_t *t, uint32_t method,
                                   void *buf, uint64_t size, chi_bdev_block_t block,
                                   uint32_t io_flags) {
    chi_bdev_io_task_t *io = (chi_bdev_io_task_t *)t;
    int rc = chi_ptr_to_shm(c, buf, &io->data);
    if (rc < 0) return rc;
    t->method = method;
    io->size = size;
    io->block = block;
    io->io_flags = io_flags;
    io->ret = 0;
    return 0;
}

/** Runs one Write or Read of `size` bytes at buf (from chi_buffer_alloc). */
static inline int chi_bdev_io(chi_client_t *c, uint64_t pool, chi_domain_query_t dq,
                              uint32_t method, void *buf, uint64_t size,
                              chi_bdev_block_t block, uint32_t io_flags, int64_t timeout_ns) {
    chi_task_t *t;
    int rc = chi_task_new(c, pool, method, sizeof(chi_bdev_io_task_t), &dq, &t);
    if (rc < 0) return rc;
    rc = chi_bdev_io_prep(c, t, method, buf, size, block, io_flags);
    if (rc == 0) rc = chi_task_call(c, t, timeout_ns);
    if (rc == -ETIMEDOUT) return rc;
    chi_task_del(c, t);
    return rc;
}

/** Writes `size` bytes from buf to the start of block. */
static inline int chi_bdev_write(chi_client_t *c, uint64_t pool, chi_domain_query_t dq,
                                 const void *buf, uint64_t size, chi_bdev_block_t block,
                                 uint32_t io_flags, int64_t timeout_ns) {
    return chi_bdev_io(c, pool, dq, CHI_BDEV_WRITE, (void *)buf, size, block, io_flags,
                       timeout_ns);
}

/** Reads `size` bytes from the start of block into buf. */
static inline int chi_bdev_read(chi_client_t *c, uint64_t pool, chi_domain_query_t dq,
                                void *buf, uint64_t size, chi_bdev_block_t block,
                                int64_t timeout_ns) {
    return chi_bdev_io(c, pool, dq, CHI_BDEV_READ, buf, size, block, 0, timeout_ns);
}

/** Makes every completed Write of the container durable. */
static inline int chi_bdev_flush(chi_client_t *c, uint64_t pool, chi_domain_query_t dq,
                                 int64_t timeout_ns) {
    chi_task_t *t;
    int rc = chi_task_new(c, pool, CHI_BDEV_FLUSH, sizeof(chi_bdev_flush_task_t), &dq, &t);
    if (rc < 0) return rc;
    rc = chi_task_call(c, t, timeout_ns);
    if (rc == -ETIMEDOUT) return rc;
    chi_task_del(c, t);
    return rc;
}

/** Polls the statistics once into *out (its header is not meaningful). */
static inline int chi_bdev_poll_stats(chi_client_t *c, uint64_t pool, chi_domain_query_t dq,
                                      chi_bdev_poll_stats_task_t *out, int64_t timeout_ns) {
    chi_task_t *t;
    int rc = chi_task_new(c, pool, CHI_BDEV_POLL_STATS, sizeof(chi_bdev_poll_stats_task_t),
                          &dq, &t);
    if (rc < 0) return rc;
    rc = chi_task_call(c, t, timeout_ns);
    if (rc == -ETIMEDOUT) return rc;
    if (out) memcpy(out, t, sizeof *out);
    chi_task_del(c, t);
    return rc;
}

/** Submits a periodic PollStats (every period_ms) and stores it in *out: its fields update
 *  on every run; it completes with -CHI_ESTOPPED when the pool is destroyed. The caller
 *  frees it (chi_task_del) after that. */
static inline int chi_bdev_poll_stats_periodic(chi_client_t *c, uint64_t pool,
                                               chi_domain_query_t dq, uint64_t period_ms,
                                               chi_task_t **out) {
    chi_task_t *t;
    int rc = chi_task_new(c, pool, CHI_BDEV_POLL_STATS, sizeof(chi_bdev_poll_stats_task_t),
                          &dq, &t);
    if (rc < 0) return rc;
    t->prio = CHI_PRIO_HIGH_LATENCY;
    chi_task_set_period_ms(t, period_ms);
    rc = chi_task_submit(c, t);
    if (rc < 0) {
        chi_task_del(c, t);
        return rc;
    }
    *out = t;
    return 0;
}

#ifdef __cplusplus
}
#endif
#endif
