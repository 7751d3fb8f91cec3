/* Shared-memory buffers: four threads allocate many sizes (64 B .. 16 MiB) at once, fill each
 * with its own pattern and check that no buffer overlaps another (by pattern and by address
 * range); pointers round-trip through chi_ptr_to_shm / chi_shm_to_ptr; freed memory is
 * reused; pointers outside the segment are rejected. Needs shm_size >= 256M (the runner's). */
#include <pthread.h>

#include "test_common.h"

#define NTHREADS 4
#define NSMALL 200
#define MAXBUF (3 * 19 + NSMALL)
#define ROUNDS 2

typedef struct {
    unsigned char *p;
    size_t size;
    uint64_t seed;
    int tid;
} buf_t;

static chi_client_t *client;
static pthread_barrier_t barrier;
static buf_t all[NTHREADS][MAXBUF];
static int nall[NTHREADS];

static uint64_t next(uint64_t *s) { /* xorshift64 */
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fill(const buf_t *b) {
    uint64_t s = b->seed, w = 0;
    size_t i;
    for (i = 0; i < b->size; i++) {
        if ((i & 7) == 0) w = next(&s);
        b->p[i] = (unsigned char)(w >> ((i & 7) * 8));
    }
}

static void verify(const buf_t *b) {
    uint64_t s = b->seed, w = 0;
    size_t i;
    for (i = 0; i < b->size; i++) {
        if ((i & 7) == 0) w = next(&s);
        if (b->p[i] != (unsigned char)(w >> ((i & 7) * 8)))
            T_FAIL("thread %d buffer %p (%zu B): byte %zu overwritten: another buffer overlaps",
                   b->tid, (void *)b->p, b->size, i);
    }
}

static void alloc_one(int tid, size_t size, uint64_t seed) {
    buf_t *b = &all[tid][nall[tid]++];
    chi_shm_ptr_t sp;
    void *back = NULL;
    int rc = chi_buffer_alloc(client, size, (void **)&b->p);
    if (rc < 0) t_failf(__FILE__, __LINE__, rc, "thread %d: alloc %zu B", tid, size);
    T_ASSERT(b->p != NULL && ((uintptr_t)b->p & 63) == 0, "alloc %zu B gave %p (not 64-aligned)",
             size, (void *)b->p);
    b->size = size;
    b->seed = seed | 1;
    b->tid = tid;
    fill(b);
    T_OK(chi_ptr_to_shm(client, b->p, &sp));
    T_ASSERT(sp.offset != 0 && sp.segment == 0, "shm ptr {%u, %llu}", sp.segment,
             (unsigned long long)sp.offset);
    T_OK(chi_shm_to_ptr(client, sp, size, &back));
    T_ASSERT(back == b->p, "round trip %p -> %llu -> %p", (void *)b->p,
             (unsigned long long)sp.offset, back);
    T_OK(chi_ptr_to_shm(client, b->p + size - 1, &sp)); /* the last byte is inside too */
    T_OK(chi_shm_to_ptr(client, sp, 1, &back));
    T_ASSERT(back == b->p + size - 1, "round trip of the last byte");
}

static int by_address(const void *a, const void *b) {
    const buf_t *x = a, *y = b;
    return x->p < y->p ? -1 : x->p > y->p;
}

static void check_ranges_disjoint(void) {
    static buf_t flat[NTHREADS * MAXBUF];
    int n = 0, t, i;
    for (t = 0; t < NTHREADS; t++)
        for (i = 0; i < nall[t]; i++) flat[n++] = all[t][i];
    qsort(flat, (size_t)n, sizeof flat[0], by_address);
    for (i = 1; i < n; i++)
        T_ASSERT(flat[i - 1].p + flat[i - 1].size <= flat[i].p,
                 "[%p, +%zu) (thread %d) overlaps [%p, +%zu) (thread %d)", (void *)flat[i - 1].p,
                 flat[i - 1].size, flat[i - 1].tid, (void *)flat[i].p, flat[i].size, flat[i].tid);
}

static void *worker(void *arg) {
    int tid = (int)(intptr_t)arg, r, k, i;
    uint64_t rnd = 0x9E3779B97F4A7C15ull * (uint64_t)(tid + 1);
    for (r = 0; r < ROUNDS; r++) {
        nall[tid] = 0;
        for (k = 6; k <= 24; k++) {
            size_t p2 = (size_t)1 << k;
            alloc_one(tid, p2, next(&rnd));
            if (k <= 20) { /* odd sizes up to 1 MiB */
                alloc_one(tid, p2 + (size_t)k * 3 + 1, next(&rnd));
                alloc_one(tid, p2 - 8, next(&rnd));
            }
        }
        for (i = 0; i < NSMALL; i++) alloc_one(tid, 64 + next(&rnd) % 4033, next(&rnd));
        pthread_barrier_wait(&barrier); /* everyone holds their buffers now */
        for (i = 0; i < nall[tid]; i++) verify(&all[tid][i]);
        if (pthread_barrier_wait(&barrier) == PTHREAD_BARRIER_SERIAL_THREAD)
            check_ranges_disjoint();
        pthread_barrier_wait(&barrier);
        for (i = 0; i < nall[tid]; i++) T_OK(chi_buffer_free(client, all[tid][i].p));
    }
    return NULL;
}

static void outside_segment(void) {
    int on_stack = 0, rc;
    void *heap = malloc(64), *out = NULL, *inside = NULL;
    chi_shm_ptr_t sp, good;

    T_OK(chi_buffer_alloc(client, 4096, &inside));
    T_OK(chi_ptr_to_shm(client, inside, &good));
#define REJECT(expr)                                                                      \
    do {                                                                                  \
        rc = (expr);                                                                      \
        T_ASSERT(rc < 0, "%s accepted a pointer outside the segment", #expr);             \
        printf("rejected: %-58s %s\n", #expr, chi_strerror(rc));                          \
    } while (0)
    REJECT(chi_ptr_to_shm(client, &on_stack, &sp));
    REJECT(chi_ptr_to_shm(client, heap, &sp));
    sp = good;
    sp.offset = UINT64_MAX / 2;
    REJECT(chi_shm_to_ptr(client, sp, 1, &out));
    sp.offset = UINT64_MAX - 7; /* offset + size wraps around */
    REJECT(chi_shm_to_ptr(client, sp, 64, &out));
    REJECT(chi_shm_to_ptr(client, good, (size_t)1 << 40, &out)); /* runs past the end */
    sp = good;
    sp.segment = 77; /* no such segment */
    REJECT(chi_shm_to_ptr(client, sp, 1, &out));
    REJECT(chi_buffer_free(client, &on_stack));
    REJECT(chi_buffer_free(client, heap));
#undef REJECT
    T_OK(chi_shm_to_ptr(client, good, 4096, &out));
    T_ASSERT(out == inside, "a valid pointer stopped resolving after the rejections");
    T_OK(chi_buffer_free(client, inside));
    free(heap);
}

int main(void) {
    pthread_t th[NTHREADS];
    int i;
    int64_t t0;
    void *big = NULL;

    t_watchdog("test_buffers", 50);
    client = t_attach();
    pthread_barrier_init(&barrier, NULL, NTHREADS);
    t0 = t_now_ns();
    for (i = 0; i < NTHREADS; i++)
        T_ASSERT(pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i) == 0, "pthread_create");
    for (i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    printf("%d threads x %d rounds x %d buffers: %.1f ms\n", NTHREADS, ROUNDS, nall[0],
           (double)(t_now_ns() - t0) / 1e6);

    /* 64 x 16 MiB = 1 GiB through a 256 MiB segment: only works if free gives memory back. */
    for (i = 0; i < 64; i++) {
        int rc = chi_buffer_alloc(client, (size_t)16 << 20, &big);
        if (rc < 0) t_failf(__FILE__, __LINE__, rc, "16 MiB alloc #%d after frees", i);
        ((volatile char *)big)[(16 << 20) - 1] = 1;
        T_OK(chi_buffer_free(client, big));
    }
    outside_segment();
    T_OK(chi_client_finalize(client));
    pthread_barrier_destroy(&barrier);
    puts("test_buffers: ok");
    return T_EXIT_PASS;
}
