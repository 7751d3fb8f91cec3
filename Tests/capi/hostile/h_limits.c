/* Issue 12, case 7: work in flight and resources per client are bounded.
 *   max_clients  (runtime.max_clients: 4) the 5th chi_client_init fails with -CHI_ELIMIT,
 *                naming the limit; a slot freed by a finalize serves the next client
 *   quota        (runtime.max_client_memory: 16M) buffers fail with -ENOMEM at the quota;
 *                another client still allocates; after freeing, the first one does again
 *   depth        Md of depth 1000 answers 1; of depth 10^9 and 2000, -CHI_ELIMIT within 30 s
 *                (runtime.max_task_depth 1024); fibers and mappings come back near idle and a
 *                module still loads
 *   flood        4 threads submit 150,000 async Md of depth 6 each (shm_size 1G): every one
 *                completes with ret 1 or -CHI_ELIMIT, or its submit fails with -EAGAIN; none
 *                hangs; fibers and mappings come back near idle
 * The runner gives each mode the configuration named in brackets. */
#include "hostile.h"

#define MAX_CLIENTS 4
#define QUOTA (16 * H_MiB)
#define FLOOD_THREADS 4
#ifndef FLOOD_PER_THREAD
#define FLOOD_PER_THREAD 150000
#endif
#define FLOOD_NS (90 * T_SEC_NS)

/* chi_client_init with a 2 s connect timeout; retries -CHI_ELIMIT for up to `retry_ms` (a
 * finalized client's slot may come back asynchronously). */
static int try_client(chi_client_t **out, int retry_ms) {
    chi_client_opts_t o;
    int64_t end = t_now_ns() + (int64_t)retry_ms * 1000000;
    int rc;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.mode = CHI_MODE_ATTACH;
    o.connect_timeout_ms = 2000;
    while ((rc = chi_client_init(&o, out)) == -CHI_ELIMIT && t_now_ns() < end) t_sleep_ms(50);
    return rc;
}

static void max_clients(void) {
    chi_client_t *c[MAX_CLIENTS + 1];
    char last[512];
    int i, rc;
    int64_t t0;
    for (i = 0; i < MAX_CLIENTS; i++) {
        rc = try_client(&c[i], 2000);
        if (rc < 0) t_failf(__FILE__, __LINE__, rc, "client %d of runtime.max_clients %d", i + 1,
                            MAX_CLIENTS);
    }
    t0 = t_now_ns();
    rc = try_client(&c[MAX_CLIENTS], 0);
    snprintf(last, sizeof last, "%s", chi_last_error());
    T_ASSERT(t_now_ns() - t0 < 3 * T_SEC_NS, "the refused chi_client_init took %lld ms",
             (long long)((t_now_ns() - t0) / 1000000));
    T_EQ_RC(rc, -CHI_ELIMIT);
    T_ASSERT(strstr(last, "max_clients") != NULL, "the message \"%s\" does not name "
             "runtime.max_clients", last);
    printf("client %d: -CHI_ELIMIT: \"%s\"\n", MAX_CLIENTS + 1, last);
    for (i = 0; i < MAX_CLIENTS; i++) h_md_ok(c[i], H.pool, H_DQ(i % 2), 1, 1, "Md");
    H_CHECK(chi_client_finalize(c[0]));
    rc = try_client(&c[0], 3000);
    if (rc < 0) t_failf(__FILE__, __LINE__, rc, "a client after one finalized");
    h_md_ok(c[0], H.pool, H_DQ(0), 0, 1, "Md of the client that took the freed slot");
    for (i = 0; i < MAX_CLIENTS; i++) H_CHECK(chi_client_finalize(c[i]));
}

static void quota(void) {
    enum { N = QUOTA / (256 * 1024) + 64 };
    static void *b[N];
    chi_client_t *c = h_client(), *o = h_client();
    void *x[32];
    int n = 0, i, rc = 0;
    while (n < N && (rc = chi_buffer_alloc(c, 256 * 1024, &b[n])) == 0) n++;
    T_EQ_RC(rc, -ENOMEM);
    T_ASSERT((uint64_t)n * 256 * 1024 <= QUOTA && (uint64_t)n * 256 * 1024 >= QUOTA / 2,
             "-ENOMEM after %d buffers of 256 KiB (%.1f MiB) with a quota of %llu MiB", n,
             n / 4.0, (unsigned long long)(QUOTA / H_MiB));
    printf("quota: -ENOMEM after %.1f MiB\n", n / 4.0);
    for (i = 0; i < 32; i++) H_CHECK(chi_buffer_alloc(o, 256 * 1024, &x[i]));
    for (i = 0; i < 32; i++) H_CHECK(chi_buffer_free(o, x[i]));
    H_CHECK(chi_client_finalize(o));
    while (n > 0) H_CHECK(chi_buffer_free(c, b[--n]));
    for (i = 0; i < 32 + 12; i++) { /* 11 MiB again, in 256 KiB buffers */
        rc = chi_buffer_alloc(c, 256 * 1024, &b[i]);
        if (rc < 0) t_failf(__FILE__, __LINE__, rc, "buffer %d after freeing the quota", i);
    }
    for (i = 0; i < 32 + 12; i++) H_CHECK(chi_buffer_free(c, b[i]));
    h_md_ok(c, H.pool, H_DQ(1), 2, 1, "Md after the quota");
    H_CHECK(chi_client_finalize(c));
}

static void depth(void) {
    static const uint32_t depths[] = {1000000000u, 2000};
    chi_client_t *c = h_client();
    h_md_ok(c, H.pool, H_DQ(0), 1000, 1, "Md of depth 1000");
    for (int i = 0; i < 2; i++) {
        chi_task_t *t = h_md_task(c, H.pool, H_DQ(0), depths[i]);
        int64_t t0 = t_now_ns();
        H_CHECK(chi_task_submit(c, t));
        int rc = h_wait(c, t, 30 * T_SEC_NS, "a runaway Md");
        if (rc != -CHI_ELIMIT)
            h_verdict("wrong", "Md of depth %u: rc %d (%s), want -CHI_ELIMIT", depths[i], rc,
                      chi_strerror(rc));
        printf("Md of depth %u: -CHI_ELIMIT after %.1f ms\n", depths[i],
               (double)(t_now_ns() - t0) / 1e6);
        H_CHECK(chi_task_del(c, t));
    }
    H_CHECK(chi_module_register(c, "bdev"));
    H_CHECK(chi_client_finalize(c));
}

static chi_client_t *flood_client;
static long flood_counts[4]; /* ret 1, -CHI_ELIMIT, submit -EAGAIN, total submitted */
static int64_t flood_end;

static void *flooder(void *arg) {
    chi_task_t **t = calloc(FLOOD_PER_THREAD, sizeof *t);
    int tid = (int)(intptr_t)arg, i, n = 0;
    long ok = 0, limit = 0, again = 0;
    T_ASSERT(t != NULL, "out of memory");
    for (i = 0; i < FLOOD_PER_THREAD; i++) {
        chi_task_t *x = h_md_task(flood_client, H.pool, H_DQ((uint64_t)(i + tid) % 2), 6);
        int rc = chi_task_submit(flood_client, x);
        if (rc == -EAGAIN || rc == -CHI_ELIMIT) {
            again++;
            H_CHECK(chi_task_del(flood_client, x));
            continue;
        }
        H_CHECK(rc);
        t[n++] = x;
        if (t_now_ns() > flood_end) h_verdict("hung", "thread %d: %d submitted in 90 s", tid, n);
    }
    for (i = 0; i < n; i++) {
        int64_t left = flood_end - t_now_ns();
        int rc = h_wait(flood_client, t[i], left > 0 ? left : 0, "a flooded Md");
        if (rc == 0 && ((chi_sm_md_task_t *)t[i])->ret == 1) ok++;
        else if (rc == -CHI_ELIMIT) limit++;
        else h_verdict("wrong", "thread %d: Md %d: rc %d (%s) ret %d", tid, i, rc,
                       chi_strerror(rc), ((chi_sm_md_task_t *)t[i])->ret);
        H_CHECK(chi_task_del(flood_client, t[i]));
    }
    __atomic_fetch_add(&flood_counts[0], ok, __ATOMIC_RELAXED);
    __atomic_fetch_add(&flood_counts[1], limit, __ATOMIC_RELAXED);
    __atomic_fetch_add(&flood_counts[2], again, __ATOMIC_RELAXED);
    __atomic_fetch_add(&flood_counts[3], n, __ATOMIC_RELAXED);
    free(t);
    return NULL;
}

static void flood(void) {
    pthread_t th[FLOOD_THREADS];
    int64_t t0 = t_now_ns();
    int i;
    flood_client = h_client();
    flood_end = t0 + FLOOD_NS;
    for (i = 0; i < FLOOD_THREADS; i++)
        T_ASSERT(pthread_create(&th[i], NULL, flooder, (void *)(intptr_t)i) == 0, "pthread");
    for (i = 0; i < FLOOD_THREADS; i++) pthread_join(th[i], NULL);
    printf("flood: %ld submitted in %.1f s: %ld answered 1, %ld -CHI_ELIMIT; %ld submits "
           "refused with -EAGAIN\n", flood_counts[3], (double)(t_now_ns() - t0) / 1e9,
           flood_counts[0], flood_counts[1], flood_counts[2]);
    T_ASSERT(flood_counts[0] > 0, "no flooded Md was answered");
    H_CHECK(chi_client_finalize(flood_client));
}

int main(int argc, char **argv) {
    static const char *const modes[] = {"max_clients", "quota", "depth", "flood", NULL};
    const char *mode = h_mode(argc, argv, modes);
    h_begin("h_limits", strcmp(mode, "flood") == 0 ? 150 : 80);
    if (strcmp(mode, "max_clients") == 0) max_clients();
    if (strcmp(mode, "quota") == 0) quota();
    if (strcmp(mode, "depth") == 0) depth();
    if (strcmp(mode, "flood") == 0) flood();
    h_end(strcmp(mode, "depth") == 0 || strcmp(mode, "flood") == 0 ? H_IDLE_FIBERS : 0);
    return T_EXIT_PASS;
}
