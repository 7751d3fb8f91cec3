/* Dynamic scheduling of bdev tasks (chi_dq_dynamic()) over a pool of 4 containers: Allocate
 * goes to the container with the most free space (one at a time and in a burst), so space
 * stays balanced; Write, Read and Free follow the container recorded in their block, so data
 * round-trips byte-exact; a broadcast PollStats adds up the containers. */
#include "test_bdev_util.h"

#define MiB (1ull << 20)
#define DEV (16 * MiB)
#define NC 4

/* Used bytes of each container, from its own PollStats. */
static void used_per_container(uint64_t pool, uint64_t used[NC]) {
    chi_bdev_poll_stats_task_t st;
    for (uint32_t c = 0; c < NC; c++) {
        t_stats(pool, c, &st);
        T_ASSERT(st.capacity == DEV, "container %u capacity %llu", c,
                 (unsigned long long)st.capacity);
        used[c] = DEV - st.free_bytes;
    }
}

static void expect_balanced(uint64_t pool, uint64_t slack, const char *when) {
    uint64_t used[NC], lo = UINT64_MAX, hi = 0;
    used_per_container(pool, used);
    for (int c = 0; c < NC; c++) {
        if (used[c] < lo) lo = used[c];
        if (used[c] > hi) hi = used[c];
    }
    T_ASSERT(hi - lo <= slack, "%s: used %llu/%llu/%llu/%llu KiB is not balanced", when,
             (unsigned long long)used[0] >> 10, (unsigned long long)used[1] >> 10,
             (unsigned long long)used[2] >> 10, (unsigned long long)used[3] >> 10);
    printf("%s: used %llu/%llu/%llu/%llu KiB\n", when, (unsigned long long)used[0] >> 10,
           (unsigned long long)used[1] >> 10, (unsigned long long)used[2] >> 10,
           (unsigned long long)used[3] >> 10);
}

int main(void) {
    enum { ONE = 8, BURST = 32, TOTAL = ONE + BURST };
    chi_domain_query_t dyn = chi_dq_dynamic();
    chi_bdev_block_t blk[TOTAL];
    chi_task_t *t[BURST];
    unsigned char *buf[TOTAL];
    uint32_t n;

    t_watchdog("test_bdev_dynamic", 50);
    t_setup();
    uint64_t pool = t_pool("dyn", NC, DEV, 0);

    /* One at a time: each goes where the most is free. */
    for (int i = 0; i < ONE; i++) {
        T_EQ_RC(chi_bdev_allocate(C, pool, dyn, MiB, &blk[i], 1, &n, T_WAIT_NS), 1);
        T_ASSERT(blk[i].container < NC, "container %u", blk[i].container);
    }
    expect_balanced(pool, 0, "8 sequential dynamic Allocates of 1 MiB");

    /* A burst in flight together still spreads: routed-but-unallocated bytes count. */
    for (int i = 0; i < BURST; i++) {
        T_OK(chi_task_new(C, pool, CHI_BDEV_ALLOCATE, sizeof(chi_bdev_allocate_task_t), &dyn,
                          &t[i]));
        ((chi_bdev_allocate_task_t *)t[i])->size = 256 * 1024;
    }
    for (int i = 0; i < BURST; i++) T_OK(chi_task_submit(C, t[i]));
    for (int i = 0; i < BURST; i++) {
        T_OK(chi_task_wait(C, t[i], T_WAIT_NS));
        chi_bdev_allocate_task_t *a = (chi_bdev_allocate_task_t *)t[i];
        T_ASSERT(t[i]->rc == 1 && a->nblocks == 1, "burst Allocate %d: rc %d", i, t[i]->rc);
        blk[ONE + i] = a->blocks[0];
        T_OK(chi_task_del(C, t[i]));
    }
    expect_balanced(pool, 512 * 1024, "a burst of 32 dynamic Allocates of 256 KiB");
    t_check_disjoint(blk, TOTAL, DEV);

    /* Dynamic Write and Read land on each block's own container. */
    for (int i = 0; i < TOTAL; i++) {
        T_OK(chi_buffer_alloc(C, blk[i].size, (void **)&buf[i]));
        t_fill(buf[i], blk[i].size, 7000 + (uint64_t)i);
        T_OK(chi_bdev_write(C, pool, dyn, buf[i], blk[i].size, blk[i], 0, T_WAIT_NS));
    }
    uint64_t writes = 0;
    for (uint32_t c = 0; c < NC; c++) {
        chi_bdev_poll_stats_task_t st;
        uint64_t want = 0;
        t_stats(pool, c, &st);
        for (int i = 0; i < TOTAL; i++) want += blk[i].container == c ? blk[i].size : 0;
        T_ASSERT(st.write_bytes == want, "container %u wrote %llu bytes, its blocks hold %llu", c,
                 (unsigned long long)st.write_bytes, (unsigned long long)want);
        writes += st.writes;
    }
    T_ASSERT(writes == TOTAL, "%llu writes counted", (unsigned long long)writes);
    for (int i = 0; i < TOTAL; i++) {
        memset(buf[i], 0, blk[i].size);
        T_OK(chi_bdev_read(C, pool, dyn, buf[i], blk[i].size, blk[i], T_WAIT_NS));
        T_ASSERT(t_check_fill(buf[i], blk[i].size, 7000 + (uint64_t)i),
                 "block %d (container %u) read back wrong", i, blk[i].container);
    }

    /* A block sent to a container that is not its own is refused, dynamic or not. */
    chi_bdev_block_t stray = blk[0];
    stray.container = (blk[0].container + 1) % NC;
    T_EQ_RC(chi_bdev_write(C, pool,
                           chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, blk[0].container),
                           buf[0], 4096, stray, 0, T_WAIT_NS),
            -EXDEV);
    stray.container = 99;
    T_EQ_RC(chi_bdev_write(C, pool, dyn, buf[0], 4096, stray, 0, T_WAIT_NS), -EXDEV);
    T_ASSERT(chi_bdev_read(C, pool, dyn, buf[0], blk[0].size, blk[0], T_WAIT_NS) == 0 &&
                 t_check_fill(buf[0], blk[0].size, 7000),
             "a refused write changed block 0");

    /* A broadcast PollStats adds up every container. */
    chi_bdev_poll_stats_task_t all;
    T_OK(chi_bdev_poll_stats(C, pool, chi_dq_global_bcast(), &all, T_WAIT_NS));
    T_ASSERT(all.capacity == NC * DEV && all.writes == TOTAL, "broadcast stats: %llu, %llu",
             (unsigned long long)all.capacity, (unsigned long long)all.writes);

    /* Dynamic Free finds each block's container; everything coalesces again. */
    for (int i = 0; i < TOTAL; i++) {
        T_OK(chi_bdev_free(C, pool, dyn, blk[i], T_WAIT_NS));
        T_OK(chi_buffer_free(C, buf[i]));
    }
    for (uint32_t c = 0; c < NC; c++) {
        chi_bdev_poll_stats_task_t st;
        t_stats(pool, c, &st);
        T_ASSERT(st.free_bytes == DEV && st.free_blocks == 1, "container %u not coalesced", c);
    }
    T_OK(chi_pool_destroy(C, pool));
    t_teardown();
    puts("test_bdev_dynamic: ok");
    return T_EXIT_PASS;
}
