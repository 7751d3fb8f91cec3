/* Destroying a bdev pool while its Writes are in flight (fs backend): every task still
 * completes (done, or -CHI_ESTOPPED) and the destroy does not wait out its 5 s drain bound.
 *
 * Written as the reproduction of a runtime bug: chi_pool_destroy used to drop the pool's
 * pollers (purge) before draining its tasks, so tasks suspended in I/O, which only a poller
 * resumes, never completed, the drain waited its full 5 s and the destroy hooks ran under
 * suspended fibers. */
#include "test_bdev_util.h"

#define MiB (1ull << 20)
#define N 32

int main(void) {
    chi_domain_query_t dq = T_DQ0;
    chi_bdev_block_t blk;
    chi_task_t *t[N];
    unsigned char *buf[N];
    uint32_t n;

    t_watchdog("test_bdev_destroy_inflight", 50);
    t_setup();
    if (t_fs_dir == NULL) t_skip("needs the fs backend (ram I/O never suspends)");
    uint64_t pool = t_pool("inflight", 1, 64 * MiB, 0);
    T_EQ_RC(chi_bdev_allocate(C, pool, dq, N * MiB, &blk, 1, &n, T_WAIT_NS), 1);
    for (int i = 0; i < N; i++) {
        chi_bdev_block_t b = blk;
        b.offset += (uint64_t)i * MiB;
        b.size = MiB;
        T_OK(chi_buffer_alloc(C, MiB, (void **)&buf[i]));
        t_fill(buf[i], MiB, (uint64_t)i);
        T_OK(chi_task_new(C, pool, CHI_BDEV_WRITE, sizeof(chi_bdev_io_task_t), &dq, &t[i]));
        T_OK(chi_bdev_io_prep(C, t[i], CHI_BDEV_WRITE, buf[i], MiB, b, CHI_BDEV_WRITE_FLUSH));
    }
    for (int i = 0; i < N; i++) T_OK(chi_task_submit(C, t[i]));
    int64_t t0 = t_now_ns();
    T_OK(chi_pool_destroy(C, pool));
    int64_t ms = (t_now_ns() - t0) / 1000000;
    int stuck = 0;
    int64_t deadline = t_now_ns() + 3 * T_SEC_NS;
    for (int i = 0; i < N; i++) {
        int64_t left = deadline - t_now_ns();
        if (chi_task_wait(C, t[i], left > 0 ? left : 0) == -ETIMEDOUT) {
            stuck++;
            continue; /* still in flight: it cannot be freed */
        }
        T_ASSERT(t[i]->rc == 0 || t[i]->rc == -CHI_ESTOPPED, "write %d: rc %d", i, t[i]->rc);
        T_OK(chi_task_del(C, t[i]));
    }
    printf("destroy with %d writes in flight took %lld ms; %d never completed\n", N,
           (long long)ms, stuck);
    T_ASSERT(stuck == 0, "%d of %d in-flight writes never completed after the destroy", stuck, N);
    T_ASSERT(ms < 4000, "the destroy took %lld ms: it waited out the drain bound", (long long)ms);
    t_teardown();
    puts("test_bdev_destroy_inflight: ok");
    return T_EXIT_PASS;
}
