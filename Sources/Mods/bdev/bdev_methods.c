/* The bodies of the bdev methods. Every task field is client-written shared memory: each is
 * read once into a local, checked, and only the local is used. A failing method writes
 * nothing to the device. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <time.h>

#include "bdev_internal.h"

uint64_t bdev_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Drops up to size bytes of the reservation the kSchedule hook made for an Allocate. A
 * statically routed Allocate drops some too: the reservation only steers placement. */
static void sched_release(bdev_t *b, uint64_t size) {
    uint64_t cur = atomic_load_explicit(&b->sched_pending, memory_order_relaxed);
    uint64_t next;
    do {
        next = cur > size ? cur - size : 0;
    } while (!atomic_compare_exchange_weak_explicit(&b->sched_pending, &cur, next,
                                                    memory_order_relaxed,
                                                    memory_order_relaxed));
}

static void publish_free(bdev_t *b) {
    atomic_store_explicit(&b->free_pub, b->alloc.free_bytes, memory_order_relaxed);
}

int bdev_run_allocate(bdev_t *b, chi_bdev_allocate_task_t *t) {
    uint64_t size = t->size;
    chi_bdev_block_t blocks[CHI_BDEV_MAX_BLOCKS];
    sched_release(b, size);
    if (size == 0 || size > b->size) return -EINVAL;
    if (t->hdr.flags & CHI_TASK_REPLICA) {
        /* A backup's copy: the primary chose the blocks (in the OUT fields); claim the same
         * ones, so every replica's allocator ends alike. */
        uint32_t nb = t->nblocks;
        if (nb > CHI_BDEV_MAX_BLOCKS) return -EPROTO;
        for (uint32_t i = 0; i < nb; i++) {
            int rc = bdev_alloc_claim(&b->alloc, t->blocks[i].offset, t->blocks[i].size);
            if (rc < 0) {
                publish_free(b);
                return rc;
            }
        }
        publish_free(b);
        return (int)nb;
    }
    t->nblocks = 0;
    int n = bdev_alloc_get(&b->alloc, size, blocks, CHI_BDEV_MAX_BLOCKS);
    publish_free(b);
    if (n < 0) return n;
    for (int i = 0; i < n; i++) {
        blocks[i].container = b->id;
        t->blocks[i] = blocks[i];
    }
    t->nblocks = (uint32_t)n;
    return n;
}

int bdev_run_free(bdev_t *b, chi_bdev_free_task_t *t) {
    chi_bdev_block_t blk = t->block;
    if (blk.container != b->id) return -EXDEV;
    int rc = bdev_alloc_put(&b->alloc, blk.offset, blk.size);
    publish_free(b);
    return rc;
}

static bdev_counters_t *counters_of(bdev_t *b, chi_rctx_t *rctx) {
    uint32_t w = chi_rctx_worker(rctx);
    return &b->counters[w < b->nworkers ? w : b->nworkers];
}

int bdev_run_io(bdev_t *b, chi_bdev_io_task_t *t, chi_rctx_t *rctx, bool write) {
    uint64_t size = t->size;
    chi_bdev_block_t blk = t->block;
    chi_shm_ptr_t data = t->data;
    uint32_t io_flags = t->io_flags;
    t->ret = 0;
    if (blk.container != b->id) return -EXDEV;
    if (io_flags & ~(write ? CHI_BDEV_WRITE_FLUSH : 0u)) return -EINVAL;
    if (blk.size == 0 || blk.offset >= b->size || blk.size > b->size - blk.offset)
        return -EINVAL;
    if (size == 0 || size > blk.size) return -EINVAL;
#if SIZE_MAX < UINT64_MAX
    if (size > SIZE_MAX) return -EFAULT;
#endif
    void *buf = chi_rctx_shm_ptr(rctx, data, size);
    if (buf == NULL) return -EFAULT;
    int rc = b->kind == BDEV_RAM ? bdev_ram_io(b, write, buf, blk.offset, size)
                                 : bdev_fs_io(b, rctx, write, buf, blk.offset, size, io_flags);
    if (rc < 0) return rc;
    /* The worker may differ from the one that started the I/O only if the runtime moved
     * the fiber; the counters are atomic either way. */
    bdev_counters_t *k = counters_of(b, rctx);
    if (write) {
        atomic_fetch_add_explicit(&k->writes, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&k->write_bytes, size, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&k->reads, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&k->read_bytes, size, memory_order_relaxed);
    }
    t->ret = size;
    return 0;
}

int bdev_run_flush(bdev_t *b, chi_rctx_t *rctx) {
    return b->kind == BDEV_FS ? bdev_fs_flush(b, rctx) : 0;
}

int bdev_run_poll_stats(bdev_t *b, chi_bdev_poll_stats_task_t *t) {
    uint64_t now = bdev_now_ns();
    uint64_t cur[4] = {0, 0, 0, 0}; /* reads, writes, read bytes, write bytes */
    for (uint32_t w = 0; w <= b->nworkers; w++) {
        bdev_counters_t *k = &b->counters[w];
        cur[0] += atomic_load_explicit(&k->reads, memory_order_relaxed);
        cur[1] += atomic_load_explicit(&k->writes, memory_order_relaxed);
        cur[2] += atomic_load_explicit(&k->read_bytes, memory_order_relaxed);
        cur[3] += atomic_load_explicit(&k->write_bytes, memory_order_relaxed);
    }
    /* The previous sample is this task's own output (a periodic task's last run). It is
     * client memory: when it is not a plausible earlier sample, measure from creation. */
    uint64_t prev_ns = t->timestamp_ns;
    uint64_t prev[4] = {t->reads, t->writes, t->read_bytes, t->write_bytes};
    bool plausible = prev_ns >= b->create_ns && prev_ns < now;
    for (int i = 0; i < 4; i++) plausible = plausible && prev[i] <= cur[i];
    if (!plausible) {
        prev_ns = b->create_ns;
        memset(prev, 0, sizeof prev);
    }
    uint64_t dt = now > prev_ns ? now - prev_ns : 1;
    double sec = (double)dt / 1e9;
    t->capacity = b->size;
    t->free_bytes = b->alloc.free_bytes;
    t->free_blocks = bdev_alloc_free_blocks(&b->alloc);
    t->largest_free = bdev_alloc_largest(&b->alloc);
    t->reads = cur[0];
    t->writes = cur[1];
    t->read_bytes = cur[2];
    t->write_bytes = cur[3];
    t->read_iops = (double)(cur[0] - prev[0]) / sec;
    t->write_iops = (double)(cur[1] - prev[1]) / sec;
    t->read_mbps = (double)(cur[2] - prev[2]) / sec / 1e6;
    t->write_mbps = (double)(cur[3] - prev[3]) / sec / 1e6;
    t->interval_ns = dt;
    t->timestamp_ns = now;
    return 0;
}
