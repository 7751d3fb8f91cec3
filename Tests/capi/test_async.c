/* 100,000 asynchronous Md from 4 client threads, each keeping up to 256 in flight: every one
 * completes with ret 1, none is lost or completed twice. */
#include <pthread.h>

#include "test_common.h"

#define NTHREADS 4
#define TOTAL 100000
#define WINDOW 256

static chi_client_t *client;
static uint64_t pool;
static int64_t deadline;
static long done_count[NTHREADS];

static void reap(int tid, chi_task_t *t) {
    int rc = chi_task_wait(client, t, T_WAIT_NS);
    if (rc < 0) t_failf(__FILE__, __LINE__, rc, "thread %d: wait", tid);
    T_ASSERT(t->rc >= 0 && ((chi_sm_md_task_t *)t)->ret == 1 && t->runs == 1,
             "thread %d: rc %d ret %d runs %u", tid, t->rc, ((chi_sm_md_task_t *)t)->ret,
             t->runs);
    T_OK(chi_task_del(client, t));
    done_count[tid]++;
}

static void *worker(void *arg) {
    int tid = (int)(intptr_t)arg;
    chi_task_t *ring[WINDOW];
    long n = TOTAL / NTHREADS, head = 0, tail = 0; /* submitted, reaped */
    while (tail < n) {
        while (head < n && head - tail < WINDOW) {
            chi_domain_query_t dq =
                chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, (uint64_t)(tid + head));
            chi_task_t *t = NULL;
            int rc = chi_task_new(client, pool, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &t);
            if (rc < 0) t_failf(__FILE__, __LINE__, rc, "thread %d: new #%ld", tid, head);
            rc = chi_task_submit(client, t);
            if (rc == -EAGAIN && head > tail) { /* queue full: make room, then retry */
                reap(tid, ring[tail++ % WINDOW]);
                rc = chi_task_submit(client, t);
            }
            while (rc == -EAGAIN && t_now_ns() < deadline) {
                t_sleep_ms(1);
                rc = chi_task_submit(client, t);
            }
            if (rc < 0) t_failf(__FILE__, __LINE__, rc, "thread %d: submit #%ld", tid, head);
            ring[head++ % WINDOW] = t;
        }
        reap(tid, ring[tail++ % WINDOW]);
        T_ASSERT(t_now_ns() < deadline, "thread %d: only %ld of %ld done in time", tid, tail, n);
    }
    return NULL;
}

int main(void) {
    pthread_t th[NTHREADS];
    int64_t t0, ns;
    long total = 0;
    int i;

    t_watchdog("test_async", 55);
    client = t_attach();
    pool = t_sm_pool(client, "async_test", 4);
    deadline = t_now_ns() + 45 * T_SEC_NS;
    t0 = t_now_ns();
    for (i = 0; i < NTHREADS; i++)
        T_ASSERT(pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i) == 0, "pthread_create");
    for (i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    ns = t_now_ns() - t0;
    for (i = 0; i < NTHREADS; i++) total += done_count[i];
    T_ASSERT(total == TOTAL, "%ld of %d tasks completed", total, TOTAL);
    printf("%d async Md from %d threads (window %d): %.1f ms, %.3f MOps/s\n", TOTAL, NTHREADS,
           WINDOW, (double)ns / 1e6, TOTAL / ((double)ns / 1e3));
    T_OK(chi_client_finalize(client));
    puts("test_async: ok");
    return T_EXIT_PASS;
}
