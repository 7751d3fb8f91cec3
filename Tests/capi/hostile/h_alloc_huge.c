/* Issue 12, case 1: a failed huge allocation changes nothing. On a 1 GiB segment (the runner's
 * config), 600 MiB buffers are allocated until one fails (two cannot fit): the failure is
 * -ENOMEM and leaves heap_used where it was; so do absurd sizes. Then tasks and buffers of
 * every size still work, for this client and for a second one. */
#include "hostile.h"

static long long heap_used(chi_client_t *c) {
    h_stats_t s;
    H_CHECK(h_read_stats(c, &s));
    return s.heap_used;
}

/* A size that cannot be served: -ENOMEM (or -EINVAL for the absurd ones) and no change. */
static void refused(chi_client_t *c, size_t size, int einval_ok) {
    void *p = (void *)0x1;
    long long before = heap_used(c), after;
    int rc = chi_buffer_alloc(c, size, &p);
    after = heap_used(c);
    T_ASSERT(rc == -ENOMEM || (einval_ok && rc == -EINVAL),
             "chi_buffer_alloc(%zu) returned %d (%s), want -ENOMEM", size, rc, chi_strerror(rc));
    if (after != before)
        h_verdict("leaked", "a failed chi_buffer_alloc(%zu) moved heap_used from %lld to %lld",
                  size, before, after);
    printf("chi_buffer_alloc(%zu): %s, heap_used unchanged (%lld)\n", size, chi_strerror(rc),
           after);
}

static void everything_works(chi_client_t *c, const char *who) {
    static const size_t sizes[] = {64, 4096, 32768, H_MiB, 64 * H_MiB};
    chi_task_t *t[64];
    void *b;
    size_t i;
    for (i = 0; i < 64; i++) t[i] = h_md_task(c, H.pool, H_DQ(i % 2), 1);
    for (i = 0; i < 64; i++) H_CHECK(chi_task_submit(c, t[i]));
    for (i = 0; i < 64; i++) {
        int rc = h_wait(c, t[i], T_WAIT_NS, "Md after the failed allocation");
        T_ASSERT(rc == 0 && ((chi_sm_md_task_t *)t[i])->ret == 1, "%s: Md %zu rc %d ret %d", who,
                 i, rc, ((chi_sm_md_task_t *)t[i])->ret);
        H_CHECK(chi_task_del(c, t[i]));
    }
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int rc = chi_buffer_alloc(c, sizes[i], &b);
        if (rc < 0) t_failf(__FILE__, __LINE__, rc, "%s: chi_buffer_alloc(%zu)", who, sizes[i]);
        memset(b, 0x5a, sizes[i]);
        H_CHECK(chi_buffer_free(c, b));
    }
    printf("%s: 64 Md and buffers of 64 B .. 64 MiB work\n", who);
}

int main(void) {
    chi_client_t *c, *other;
    void *big[3];
    int n = 0, rc = 0;

    h_begin("h_alloc_huge", 50);
    c = h_client();
    T_ASSERT(H.idle.heap_capacity >= 900 * (long long)H_MiB, "heap %lld: the runner must give "
             "this case a 1 GiB segment", H.idle.heap_capacity);
    while (n < 3) {
        long long before = heap_used(c), after;
        rc = chi_buffer_alloc(c, 600 * H_MiB, &big[n]);
        after = heap_used(c);
        if (rc < 0) {
            if (after != before)
                h_verdict("leaked", "the failed 600 MiB allocation (%s) moved heap_used from "
                          "%lld to %lld (%+lld)", chi_strerror(rc), before, after, after - before);
            break;
        }
        n++;
    }
    T_EQ_RC(rc, -ENOMEM);
    T_ASSERT(n <= 1, "%d buffers of 600 MiB fit in a 1 GiB segment", n);
    printf("600 MiB: %d allocated, then -ENOMEM with heap_used unchanged\n", n);
    refused(c, (size_t)1 << 40, 1);
    refused(c, SIZE_MAX, 1);
    refused(c, SIZE_MAX - 4095, 1);
    everything_works(c, "same client");
    other = h_client();
    everything_works(other, "second client");
    H_CHECK(chi_client_finalize(other));
    while (n > 0) H_CHECK(chi_buffer_free(c, big[--n]));
    everything_works(c, "after freeing the 600 MiB");
    H_CHECK(chi_client_finalize(c));
    h_end(0);
    return T_EXIT_PASS;
}
