/* The bdev module against a daemon, on the backend CHI_BDEV_URL names: "fs://<dir>" (files
 * under that directory) or "ram://". Allocate/Free patterns never overlap and coalesce fully;
 * 16 x 1 MiB written concurrently read back byte-exact (and, on fs, are in the file after a
 * flushed Write or a Flush); unaligned I/O; 4 client threads writing at once; periodic stats
 * that update; every bad input is an error code that writes nothing; a path that cannot be
 * opened fails Create and the daemon keeps serving. Dynamic scheduling: test_bdev_dynamic. */
#include "test_bdev_util.h"

#include <pthread.h>
#include <sys/stat.h>

#define MiB (1ull << 20)
#define DEV (64 * MiB)

/* ---- Allocate / Free ------------------------------------------------------------------- */

static void alloc_free_patterns(uint64_t pool) {
    chi_domain_query_t dq = T_DQ0;
    chi_bdev_block_t blocks[512], got[CHI_BDEV_MAX_BLOCKS];
    uint32_t nb = 0, n;
    uint64_t used = 0;
    static const uint64_t sizes[] = {1, 4096, 5000, MiB, 3 * MiB + 1, 12288, 65536, 7 * MiB};
    chi_bdev_poll_stats_task_t st;

    t_stats(pool, 0, &st);
    T_ASSERT(st.capacity == DEV && st.free_bytes == DEV && st.free_blocks == 1 &&
                 st.largest_free == DEV, "fresh device: cap %llu free %llu blocks %llu",
             (unsigned long long)st.capacity, (unsigned long long)st.free_bytes,
             (unsigned long long)st.free_blocks);
    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            int rc = chi_bdev_allocate(C, pool, dq, sizes[i], got, CHI_BDEV_MAX_BLOCKS, &n,
                                       T_WAIT_NS);
            T_ASSERT(rc == (int)n && n > 0, "Allocate(%llu): rc %d, %u blocks",
                     (unsigned long long)sizes[i], rc, n);
            uint64_t sum = 0;
            for (uint32_t k = 0; k < n; k++) {
                T_ASSERT(got[k].container == 0, "block of container %u", got[k].container);
                sum += got[k].size;
                blocks[nb++] = got[k];
            }
            T_ASSERT(sum == (sizes[i] + 4095) / 4096 * 4096, "Allocate(%llu) gave %llu bytes",
                     (unsigned long long)sizes[i], (unsigned long long)sum);
            used += sum;
        }
        t_check_disjoint(blocks, nb, DEV);
        /* Free every third block, newest first, between rounds. */
        for (uint32_t k = nb; k-- > 0;) {
            if (k % 3 != 0) continue;
            T_OK(chi_bdev_free(C, pool, dq, blocks[k], T_WAIT_NS));
            used -= blocks[k].size;
            blocks[k] = blocks[--nb];
        }
        t_stats(pool, 0, &st);
        T_ASSERT(st.free_bytes == DEV - used, "free %llu, want %llu",
                 (unsigned long long)st.free_bytes, (unsigned long long)(DEV - used));
    }
    T_EQ_RC(chi_bdev_allocate(C, pool, dq, DEV, got, CHI_BDEV_MAX_BLOCKS, &n, T_WAIT_NS),
            -ENOSPC);
    for (uint32_t k = 0; k < nb; k++) T_OK(chi_bdev_free(C, pool, dq, blocks[k], T_WAIT_NS));
    t_stats(pool, 0, &st);
    T_ASSERT(st.free_bytes == DEV && st.free_blocks == 1 && st.largest_free == DEV,
             "after freeing all: free %llu, %llu blocks, largest %llu (not coalesced)",
             (unsigned long long)st.free_bytes, (unsigned long long)st.free_blocks,
             (unsigned long long)st.largest_free);
    T_EQ_RC(chi_bdev_allocate(C, pool, dq, DEV, got, CHI_BDEV_MAX_BLOCKS, &n, T_WAIT_NS), 1);
    T_EQ_RC(chi_bdev_allocate(C, pool, dq, 1, got + 1, 1, &n, T_WAIT_NS), -ENOSPC);
    T_OK(chi_bdev_free(C, pool, dq, got[0], T_WAIT_NS));
    printf("allocate/free: %u blocks live at most, fully coalesced\n", nb);
}

/* ---- 16 x 1 MiB round trip --------------------------------------------------------------- */

static void round_trip_16(uint64_t pool) {
    enum { N = 16 };
    chi_domain_query_t dq = T_DQ0;
    chi_bdev_block_t blk[N];
    unsigned char *wbuf[N], *rbuf[N];
    chi_task_t *t[N];
    uint32_t n;

    for (int i = 0; i < N; i++) {
        T_EQ_RC(chi_bdev_allocate(C, pool, dq, MiB, &blk[i], 1, &n, T_WAIT_NS), 1);
        T_OK(chi_buffer_alloc(C, MiB, (void **)&wbuf[i]));
        T_OK(chi_buffer_alloc(C, MiB, (void **)&rbuf[i]));
        t_fill(wbuf[i], MiB, 1000 + (uint64_t)i);
        memset(rbuf[i], 0, MiB);
        T_OK(chi_task_new(C, pool, CHI_BDEV_WRITE, sizeof(chi_bdev_io_task_t), &dq, &t[i]));
        /* Half are flushed by the Write itself, the rest by the Flush below. */
        T_OK(chi_bdev_io_prep(C, t[i], CHI_BDEV_WRITE, wbuf[i], MiB, blk[i],
                              i % 2 ? CHI_BDEV_WRITE_FLUSH : 0));
    }
    t_check_disjoint(blk, N, DEV);
    int64_t t0 = t_now_ns();
    for (int i = 0; i < N; i++) T_OK(chi_task_submit(C, t[i]));
    for (int i = 0; i < N; i++) t_wait_ok(t[i], "Write", MiB);
    int64_t t1 = t_now_ns();
    T_OK(chi_bdev_flush(C, pool, dq, T_WAIT_NS));
    for (int i = 0; i < N; i++)
        T_OK(chi_bdev_io_prep(C, t[i], CHI_BDEV_READ, rbuf[i], MiB, blk[i], 0));
    int64_t t2 = t_now_ns();
    for (int i = 0; i < N; i++) T_OK(chi_task_submit(C, t[i]));
    for (int i = 0; i < N; i++) t_wait_ok(t[i], "Read", MiB);
    int64_t t3 = t_now_ns();
    for (int i = 0; i < N; i++) {
        T_ASSERT(memcmp(wbuf[i], rbuf[i], MiB) == 0, "block %d read back differs at byte %zu", i,
                 t_first_diff(wbuf[i], rbuf[i], MiB));
        if (t_fs_dir != NULL) t_check_file("main", 0, blk[i].offset, wbuf[i], MiB);
    }
    printf("16 x 1 MiB: write %.1f ms, read %.1f ms, byte-exact%s\n", (double)(t1 - t0) / 1e6,
           (double)(t3 - t2) / 1e6, t_fs_dir ? ", in the file" : "");
    for (int i = 0; i < N; i++) {
        T_OK(chi_task_del(C, t[i]));
        T_OK(chi_buffer_free(C, wbuf[i]));
        T_OK(chi_buffer_free(C, rbuf[i]));
        T_OK(chi_bdev_free(C, pool, dq, blk[i], T_WAIT_NS));
    }
}

/* Buffers, offsets and lengths O_DIRECT cannot take go through the buffered path. */
static void unaligned_io(uint64_t pool) {
    chi_domain_query_t dq = T_DQ0;
    chi_bdev_block_t blk, sub;
    unsigned char *small, *page;
    uint32_t n;

    T_EQ_RC(chi_bdev_allocate(C, pool, dq, 8192, &blk, 1, &n, T_WAIT_NS), 1);
    T_OK(chi_buffer_alloc(C, 100, (void **)&small));
    T_OK(chi_buffer_alloc(C, 8192, (void **)&page));
    memset(page, 0x11, 8192);
    T_OK(chi_bdev_write(C, pool, dq, page, 8192, blk, 0, T_WAIT_NS));
    t_fill(small, 100, 77);
    sub = blk;
    sub.offset += 1001;
    sub.size = 100;
    T_OK(chi_bdev_write(C, pool, dq, small, 100, sub, 0, T_WAIT_NS));
    memset(page, 0, 8192);
    T_OK(chi_bdev_read(C, pool, dq, page, 8192, blk, T_WAIT_NS));
    for (int i = 0; i < 8192; i++) {
        unsigned char want = i >= 1001 && i < 1101 ? small[i - 1001] : 0x11;
        T_ASSERT(page[i] == want, "byte %d is 0x%02x, want 0x%02x", i, page[i], want);
    }
    memset(small, 0, 100);
    T_OK(chi_bdev_read(C, pool, dq, small, 100, sub, T_WAIT_NS));
    T_ASSERT(memcmp(small, page + 1001, 100) == 0, "unaligned read differs");
    T_OK(chi_buffer_free(C, small));
    T_OK(chi_buffer_free(C, page));
    T_OK(chi_bdev_free(C, pool, dq, blk, T_WAIT_NS));

    /* A large I/O from a buffer O_DIRECT cannot take (64 bytes past a page) at an aligned
     * offset: it travels through an aligned bounce chunk, byte-exact both ways. */
    {
        const size_t big = 512 << 10;
        unsigned char *wraw, *rraw;
        T_EQ_RC(chi_bdev_allocate(C, pool, dq, big, &blk, 1, &n, T_WAIT_NS), 1);
        T_OK(chi_buffer_alloc(C, big + 4096, (void **)&wraw));
        T_OK(chi_buffer_alloc(C, big + 4096, (void **)&rraw));
        unsigned char *w = wraw + 64, *r = rraw + 64 + 4096 - 128;
        t_fill(w, big, 91);
        memset(r, 0, big);
        T_OK(chi_bdev_write(C, pool, dq, w, big, blk, 0, T_WAIT_NS));
        T_OK(chi_bdev_read(C, pool, dq, r, big, blk, T_WAIT_NS));
        T_ASSERT(memcmp(w, r, big) == 0, "misaligned 512 KiB read back differs at byte %zu",
                 t_first_diff(w, r, big));
        if (t_fs_dir != NULL) t_check_file("main", 0, blk.offset, w, big);
        T_OK(chi_buffer_free(C, wraw));
        T_OK(chi_buffer_free(C, rraw));
        T_OK(chi_bdev_free(C, pool, dq, blk, T_WAIT_NS));
    }
    puts("unaligned I/O: byte-exact");
}

/* ---- 4 client threads ----------------------------------------------------------------------- */

enum { THREADS = 4, PER_THREAD = 32, DEPTH = 8, TBLK = 64 * 1024 };

typedef struct {
    uint64_t pool;
    int id;
    chi_bdev_block_t blk[PER_THREAD];
} writer_t;

static void *writer(void *arg) {
    writer_t *w = arg;
    chi_domain_query_t dq = T_DQ0;
    unsigned char *buf[PER_THREAD];
    chi_task_t *t[DEPTH];
    uint32_t n;

    for (int i = 0; i < PER_THREAD; i++) {
        T_EQ_RC(chi_bdev_allocate(C, w->pool, dq, TBLK, &w->blk[i], 1, &n, T_WAIT_NS), 1);
        T_OK(chi_buffer_alloc(C, TBLK, (void **)&buf[i]));
        t_fill(buf[i], TBLK, (uint64_t)w->id << 32 | (uint64_t)i);
    }
    for (int d = 0; d < DEPTH; d++)
        T_OK(chi_task_new(C, w->pool, CHI_BDEV_WRITE, sizeof(chi_bdev_io_task_t), &dq, &t[d]));
    /* DEPTH writes in flight: slot d carries blocks d, d + DEPTH, ... */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < PER_THREAD; i++) {
            chi_task_t *s = t[i % DEPTH];
            if (i >= DEPTH) t_wait_ok(s, pass ? "Read" : "Write", TBLK);
            if (pass == 1) memset(buf[i], 0, TBLK);
            T_OK(chi_bdev_io_prep(C, s, pass ? CHI_BDEV_READ : CHI_BDEV_WRITE, buf[i], TBLK,
                                  w->blk[i], 0));
            T_OK(chi_task_submit(C, s));
        }
        for (int d = 0; d < DEPTH; d++) t_wait_ok(t[d], pass ? "Read" : "Write", TBLK);
    }
    for (int i = 0; i < PER_THREAD; i++) {
        T_ASSERT(t_check_fill(buf[i], TBLK, (uint64_t)w->id << 32 | (uint64_t)i),
                 "thread %d block %d read back wrong", w->id, i);
        T_OK(chi_buffer_free(C, buf[i]));
    }
    for (int d = 0; d < DEPTH; d++) T_OK(chi_task_del(C, t[d]));
    return NULL;
}

static void concurrent_writers(uint64_t pool) {
    static writer_t w[THREADS];
    static chi_bdev_block_t all[THREADS * PER_THREAD];
    pthread_t th[THREADS];
    chi_bdev_poll_stats_task_t before, after;

    t_stats(pool, 0, &before);
    for (int i = 0; i < THREADS; i++) {
        w[i].pool = pool;
        w[i].id = i;
        T_ASSERT(pthread_create(&th[i], NULL, writer, &w[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < THREADS; i++)
        memcpy(all + i * PER_THREAD, w[i].blk, sizeof w[i].blk);
    t_check_disjoint(all, THREADS * PER_THREAD, DEV);
    t_stats(pool, 0, &after);
    T_ASSERT(after.writes - before.writes == THREADS * PER_THREAD &&
                 after.reads - before.reads == THREADS * PER_THREAD,
             "stats counted %llu writes, %llu reads",
             (unsigned long long)(after.writes - before.writes),
             (unsigned long long)(after.reads - before.reads));
    for (int i = 0; i < THREADS * PER_THREAD; i++)
        T_OK(chi_bdev_free(C, pool, T_DQ0, all[i], T_WAIT_NS));
    printf("%d threads x %d writes of 64 KiB, %d in flight each: byte-exact, disjoint\n",
           THREADS, PER_THREAD, DEPTH);
}

/* ---- periodic stats -------------------------------------------------------------------------- */

static void periodic_stats(void) {
    uint64_t pool = t_pool("periodic", 1, DEV, 0);
    chi_domain_query_t dq = T_DQ0;
    chi_task_t *t;
    chi_bdev_poll_stats_task_t *s;
    chi_bdev_block_t blk;
    unsigned char *buf;
    uint32_t n;

    T_OK(chi_bdev_poll_stats_periodic(C, pool, dq, 20, &t));
    s = (chi_bdev_poll_stats_task_t *)t;
    t_wait_runs(t, 2);
    T_ASSERT(T_LOAD(s->capacity) == DEV && T_LOAD(s->free_bytes) == DEV, "first samples");
    T_EQ_RC(chi_bdev_allocate(C, pool, dq, 4 * MiB, &blk, 1, &n, T_WAIT_NS), 1);
    T_OK(chi_buffer_alloc(C, MiB, (void **)&buf));
    t_fill(buf, MiB, 5);
    for (int i = 0; i < 4; i++) {
        chi_bdev_block_t b = blk;
        b.offset += (uint64_t)i * MiB;
        b.size = MiB;
        T_OK(chi_bdev_write(C, pool, dq, buf, MiB, b, 0, T_WAIT_NS));
    }
    /* The next runs see the allocation and the writes, with a rate over their interval. */
    int64_t t0 = t_now_ns();
    bool saw_rate = false;
    while (t_now_ns() - t0 < 5 * T_SEC_NS) {
        if (T_LOAD(s->writes) == 4 && T_LOAD(s->free_bytes) == DEV - 4 * MiB) {
            saw_rate = saw_rate || T_LOADD(s->write_mbps) > 0;
            if (saw_rate) break;
        }
        t_sleep_ms(2);
    }
    T_ASSERT(T_LOAD(s->writes) == 4 && T_LOAD(s->write_bytes) == 4 * MiB,
             "periodic stats show %llu writes, %llu bytes", (unsigned long long)s->writes,
             (unsigned long long)s->write_bytes);
    T_ASSERT(T_LOAD(s->free_bytes) == DEV - 4 * MiB, "periodic free %llu",
             (unsigned long long)s->free_bytes);
    T_ASSERT(saw_rate, "no run reported a write rate");
    /* With no I/O, rates over later intervals fall to zero while the counters stay. */
    uint32_t r0 = T_LOAD(t->runs);
    t_wait_runs(t, r0 + 3);
    T_ASSERT(T_LOADD(s->write_iops) == 0 && T_LOAD(s->writes) == 4, "idle interval rate %f",
             s->write_iops);
    T_ASSERT(T_LOAD(s->interval_ns) > 10000000 && T_LOAD(s->interval_ns) < 2000000000ull,
             "interval %llu ns for a 20 ms period", (unsigned long long)s->interval_ns);
    printf("periodic stats: %u runs, updated\n", T_LOAD(t->runs));
    T_OK(chi_buffer_free(C, buf));
    T_OK(chi_pool_destroy(C, pool));
    T_EQ_RC(chi_task_wait(C, t, 2 * T_SEC_NS), 0);
    T_EQ_RC(t->rc, -CHI_ESTOPPED);
    T_OK(chi_task_del(C, t));
}

/* ---- bad input ------------------------------------------------------------------------------ */

/* Runs one Write/Read with raw fields; expects `want`, ret 0, and the probe block unchanged. */
static void bad_io(uint64_t pool, uint32_t method, chi_shm_ptr_t data, uint64_t size,
                   chi_bdev_block_t blk, uint32_t flags, int want, const char *what) {
    chi_domain_query_t dq = T_DQ0;
    chi_task_t *t;
    T_OK(chi_task_new(C, pool, method, sizeof(chi_bdev_io_task_t), &dq, &t));
    chi_bdev_io_task_t *io = (chi_bdev_io_task_t *)t;
    io->data = data;
    io->size = size;
    io->block = blk;
    io->io_flags = flags;
    io->ret = 12345;
    int rc = chi_task_call(C, t, T_WAIT_NS);
    T_ASSERT(rc == want, "%s: rc %d (%s), want %d (%s)", what, rc, chi_strerror(rc), want,
             chi_strerror(want));
    T_ASSERT(io->ret == 0, "%s: ret %llu after a failure", what, (unsigned long long)io->ret);
    T_OK(chi_task_del(C, t));
}

static void bad_input(uint64_t pool) {
    chi_domain_query_t dq = T_DQ0;
    chi_bdev_block_t blk, b, got[4];
    unsigned char *buf, *probe;
    chi_shm_ptr_t sp, bad;
    uint32_t n;

    /* A device-final block holding a known pattern: every bad write aims at or near it. */
    T_EQ_RC(chi_bdev_allocate(C, pool, dq, DEV, &blk, 1, &n, T_WAIT_NS), 1);
    T_OK(chi_buffer_alloc(C, 2 * MiB, (void **)&buf));
    T_OK(chi_buffer_alloc(C, MiB, (void **)&probe));
    T_OK(chi_ptr_to_shm(C, buf, &sp));
    b = blk;
    b.offset = DEV - MiB;
    b.size = MiB;
    t_fill(buf, 2 * MiB, 99);
    T_OK(chi_bdev_write(C, pool, dq, buf, MiB, b, 0, T_WAIT_NS));
    memset(buf, 0xEE, 2 * MiB);

    chi_bdev_block_t outside = {DEV, 4096, 0, 0}, straddle = {DEV - 4096, 8192, 0, 0};
    chi_bdev_block_t wrap = {UINT64_MAX - 100, 4096, 0, 0}, empty = {0, 0, 0, 0};
    chi_bdev_block_t other = b;
    other.container = 7;
    bad_io(pool, CHI_BDEV_WRITE, sp, 4096, outside, 0, -EINVAL, "block past the device");
    bad_io(pool, CHI_BDEV_WRITE, sp, 8192, straddle, 0, -EINVAL, "block across the end");
    bad_io(pool, CHI_BDEV_WRITE, sp, 4096, wrap, 0, -EINVAL, "block whose end wraps");
    bad_io(pool, CHI_BDEV_WRITE, sp, 1, empty, 0, -EINVAL, "empty block");
    bad_io(pool, CHI_BDEV_READ, sp, 4096, outside, 0, -EINVAL, "read past the device");
    bad_io(pool, CHI_BDEV_WRITE, sp, 0, b, 0, -EINVAL, "size 0");
    bad_io(pool, CHI_BDEV_WRITE, sp, 2 * MiB, b, 0, -EINVAL, "size above the block");
    bad_io(pool, CHI_BDEV_WRITE, sp, DEV + 4096, b, 0, -EINVAL, "size above the device");
    bad_io(pool, CHI_BDEV_WRITE, sp, 4096, b, 0x80, -EINVAL, "unknown write flag");
    bad_io(pool, CHI_BDEV_READ, sp, 4096, b, CHI_BDEV_WRITE_FLUSH, -EINVAL, "flag on a read");
    bad_io(pool, CHI_BDEV_WRITE, sp, 4096, other, 0, -EXDEV, "block of another container");
    bad = sp;
    bad.offset = 1ull << 50;
    bad_io(pool, CHI_BDEV_WRITE, bad, 4096, b, 0, -EFAULT, "buffer past the segment");
    bad_io(pool, CHI_BDEV_READ, bad, 4096, b, 0, -EFAULT, "read into a buffer past the segment");
    bad = sp;
    bad.offset = UINT64_MAX - 4095;
    bad_io(pool, CHI_BDEV_WRITE, bad, 8192, b, 0, -EFAULT, "buffer whose end wraps");
    bad = sp;
    bad.segment = 9;
    bad_io(pool, CHI_BDEV_WRITE, bad, 4096, b, 0, -EFAULT, "buffer in another segment");
    bad.segment = 0;
    bad.offset = 0;
    bad_io(pool, CHI_BDEV_WRITE, bad, 4096, b, 0, -EFAULT, "null buffer");

    /* Nothing was written: the probe block still holds its pattern (and the file its size). */
    T_OK(chi_bdev_read(C, pool, dq, probe, MiB, b, T_WAIT_NS));
    T_ASSERT(t_check_fill(probe, MiB, 99), "a failed write changed the device");
    if (t_fs_dir != NULL) {
        struct stat st;
        char path[512];
        t_dev_path(path, sizeof path, "main", 0);
        T_ASSERT(stat(path, &st) == 0 && (uint64_t)st.st_size == DEV, "file size changed");
    }

    /* Allocate and Free. */
    T_EQ_RC(chi_bdev_allocate(C, pool, dq, 0, got, 4, &n, T_WAIT_NS), -EINVAL);
    T_EQ_RC(chi_bdev_allocate(C, pool, dq, DEV + 1, got, 4, &n, T_WAIT_NS), -EINVAL);
    T_EQ_RC(chi_bdev_allocate(C, pool, dq, UINT64_MAX, got, 4, &n, T_WAIT_NS), -EINVAL);
    T_EQ_RC(chi_bdev_allocate(C, pool, dq, 4096, got, 4, &n, T_WAIT_NS), -ENOSPC);
    chi_bdev_block_t half = blk;
    half.size /= 2;
    T_EQ_RC(chi_bdev_free(C, pool, dq, half, T_WAIT_NS), -EINVAL);
    T_EQ_RC(chi_bdev_free(C, pool, dq, outside, T_WAIT_NS), -EINVAL);
    T_EQ_RC(chi_bdev_free(C, pool, dq, other, T_WAIT_NS), -EXDEV);
    T_OK(chi_bdev_free(C, pool, dq, blk, T_WAIT_NS));
    T_EQ_RC(chi_bdev_free(C, pool, dq, blk, T_WAIT_NS), -EINVAL);
    T_OK(chi_buffer_free(C, buf));
    T_OK(chi_buffer_free(C, probe));

    /* Create: a path that cannot be opened, a relative path, an unknown scheme, a size of
     * zero, parameters cut short, unknown flags. None leaves a pool; the daemon serves on. */
    static const struct {
        const char *url;
        uint64_t size;
        uint32_t flags;
        int want;
    } bad_create[] = {
        {"fs:///nonexistent/dir/x", DEV, 0, -ENOENT},
        {"fs://relative/x", DEV, 0, -EINVAL},
        {"nfs://host/x", DEV, 0, -EINVAL},
        {"ram://", 0, 0, -EINVAL},
        {"ram://", 100, 0, -EINVAL},
        {"ram://", DEV, 0x100, -EINVAL},
    };
    for (size_t i = 0; i < sizeof bad_create / sizeof bad_create[0]; i++) {
        chi_bdev_create_params_t p = chi_bdev_params(bad_create[i].url, bad_create[i].size,
                                                     bad_create[i].flags);
        uint64_t id = 0;
        char name[64];
        snprintf(name, sizeof name, "bad_create_%zu", i);
        int rc = chi_bdev_create(C, name, 1, &p, &id);
        T_ASSERT(rc == bad_create[i].want, "Create(%s, %llu, %#x): rc %d (%s), want %d",
                 bad_create[i].url, (unsigned long long)bad_create[i].size,
                 bad_create[i].flags, rc, chi_strerror(rc), bad_create[i].want);
        T_EQ_RC(chi_pool_get_id(C, name, &id), -CHI_ENOPOOL);
    }
    {
        chi_bdev_create_params_t p = chi_bdev_params("ram://", DEV, 0);
        chi_pool_create_opts_t o;
        uint64_t id;
        memset(&o, 0, sizeof o);
        o.size = sizeof o;
        o.module = CHI_BDEV_MODULE_NAME;
        o.name = "bad_create_short";
        o.params = &p;
        o.params_size = 100;
        T_EQ_RC(chi_pool_create(C, &o, &id), -EINVAL);
        o.params = NULL;
        o.params_size = 0;
        T_EQ_RC(chi_pool_create(C, &o, &id), -EINVAL);
    }
    /* Still serving: the existing pool allocates. */
    T_EQ_RC(chi_bdev_allocate(C, pool, dq, 4096, got, 4, &n, T_WAIT_NS), 1);
    T_OK(chi_bdev_free(C, pool, dq, got[0], T_WAIT_NS));
    puts("bad input: error codes, nothing written, still serving");
}

int main(void) {
    t_watchdog("test_bdev", 110);
    t_setup();
    uint64_t pool = t_pool("main", 1, DEV, 0);
    if (t_fs_dir != NULL) t_check_direct("main", 0);
    alloc_free_patterns(pool);
    round_trip_16(pool);
    unaligned_io(pool);
    concurrent_writers(pool);
    bad_input(pool);
    periodic_stats();
    T_OK(chi_pool_destroy(C, pool));
    t_teardown();
    puts("test_bdev: ok");
    return T_EXIT_PASS;
}
