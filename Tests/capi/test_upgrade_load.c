/* Hot upgrade under load: 4 client threads submit Md non-stop (each alternates one sync call
 * with a window of async ones) for 5 s, and 2 s in, small_message is upgraded to the build
 * given as argv[1] (version 2, whose Md returns 2). Every task must complete exactly once with
 * rc 0; tasks done before the upgrade began return 1, tasks submitted after it returned 2;
 * each thread's sync calls switch from 1 to 2 once and never back; and the containers'
 * counters (the Served method), carried across the upgrade by its hook, add up to exactly the
 * number of Md tasks completed. Prints the runtime's report and the figures. */
#include <pthread.h>
#include <stdatomic.h>

#include "test_common.h"

#define NTHREADS 4
#define CONTAINERS 4
#define WINDOW 16
#define RUN_NS (5 * T_SEC_NS)
#define UPGRADE_AT_NS (2 * T_SEC_NS)

static chi_client_t *client;
static uint64_t pool;
static _Atomic int stop_flag;
static _Atomic int upgrading;  /* 1 from just before chi_module_upgrade is called */
static _Atomic int upgraded;   /* 1 once it returned */

struct tally {
    long sync1, sync2, async1, async2;
    long flips; /* 1 -> 2 changes seen by this thread's sync calls */
};
static struct tally tallies[NTHREADS];

static void check_ret(int tid, chi_task_t *t, int before, int after_submit) {
    int ret = ((chi_sm_md_task_t *)t)->ret;
    T_ASSERT(t->rc == 0, "thread %d: Md rc %d", tid, t->rc);
    T_ASSERT(t->runs == 1, "thread %d: Md ran %u times", tid, t->runs);
    T_ASSERT(ret == 1 || ret == 2, "thread %d: Md returned %d", tid, ret);
    /* Submitted after the upgrade returned: the new code. Done before it began: the old. */
    T_ASSERT(!after_submit || ret == 2, "thread %d: a task submitted after the upgrade returned %d", tid, ret);
    T_ASSERT(!before || ret == 1, "thread %d: a task done before the upgrade began returned %d", tid, ret);
}

static void *worker(void *arg) {
    int tid = (int)(intptr_t)arg;
    struct tally *ty = &tallies[tid];
    int last_sync = 1;
    uint64_t seq = (uint64_t)tid * 1000003u;
    chi_task_t *win[WINDOW];
    int win_after[WINDOW];
    while (!atomic_load(&stop_flag)) {
        /* One sync call. */
        chi_domain_query_t dq = chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, seq++);
        chi_task_t *t;
        int after = atomic_load(&upgraded);
        T_OK(chi_task_new(client, pool, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &t));
        int rc = chi_task_call(client, t, T_WAIT_NS);
        if (rc < 0) t_failf(__FILE__, __LINE__, rc, "thread %d: sync Md", tid);
        int before = !atomic_load(&upgrading);
        check_ret(tid, t, before, after);
        int ret = ((chi_sm_md_task_t *)t)->ret;
        T_ASSERT(ret >= last_sync, "thread %d: sync Md returned %d after %d", tid, ret, last_sync);
        if (ret != last_sync) ty->flips++;
        last_sync = ret;
        if (ret == 1) ty->sync1++; else ty->sync2++;
        T_OK(chi_task_del(client, t));
        /* A window of async ones, reaped in order. */
        for (int i = 0; i < WINDOW; i++) {
            dq = chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, seq++);
            win_after[i] = atomic_load(&upgraded);
            T_OK(chi_task_new(client, pool, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &win[i]));
            rc = chi_task_submit(client, win[i]);
            int64_t until = t_now_ns() + T_WAIT_NS;
            while (rc == -EAGAIN && t_now_ns() < until) {
                t_sleep_ms(1);
                rc = chi_task_submit(client, win[i]);
            }
            if (rc < 0) t_failf(__FILE__, __LINE__, rc, "thread %d: submit", tid);
        }
        for (int i = 0; i < WINDOW; i++) {
            rc = chi_task_wait(client, win[i], T_WAIT_NS);
            if (rc < 0) t_failf(__FILE__, __LINE__, rc, "thread %d: async wait", tid);
            before = !atomic_load(&upgrading);
            check_ret(tid, win[i], before, win_after[i]);
            if (((chi_sm_md_task_t *)win[i])->ret == 1) ty->async1++; else ty->async2++;
            T_OK(chi_task_del(client, win[i]));
        }
    }
    return NULL;
}

static uint64_t served(uint32_t container) {
    chi_domain_query_t dq = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, container);
    chi_task_t *t;
    T_OK(chi_task_new(client, pool, CHI_SM_SERVED, sizeof(chi_sm_served_task_t), &dq, &t));
    T_OK(chi_task_call(client, t, T_WAIT_NS));
    uint64_t n = ((chi_sm_served_task_t *)t)->served;
    T_OK(chi_task_del(client, t));
    return n;
}

int main(int argc, char **argv) {
    t_watchdog("test_upgrade_load", 50);
    if (argc < 2) t_skip("usage: test_upgrade_load PATH_OF_SMALL_MESSAGE_V2");
    client = t_attach();
    pool = t_sm_pool(client, "upgrade_load", CONTAINERS);
    uint64_t base = 0;
    for (uint32_t c = 0; c < CONTAINERS; c++) base += served(c);

    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        T_ASSERT(pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i) == 0, "pthread_create");
    int64_t t0 = t_now_ns();
    while (t_now_ns() - t0 < UPGRADE_AT_NS) t_sleep_ms(10);
    char report[4096];
    atomic_store(&upgrading, 1);
    int64_t u0 = t_now_ns();
    int rc = chi_module_upgrade_report(client, CHI_SM_MODULE_NAME, argv[1], 0, report, sizeof report);
    int64_t u1 = t_now_ns();
    if (rc < 0) t_failf(__FILE__, __LINE__, rc, "chi_module_upgrade");
    atomic_store(&upgraded, 1);
    while (t_now_ns() - t0 < RUN_NS) t_sleep_ms(10);
    atomic_store(&stop_flag, 1);
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);

    long s1 = 0, s2 = 0, a1 = 0, a2 = 0;
    for (int i = 0; i < NTHREADS; i++) {
        s1 += tallies[i].sync1;
        s2 += tallies[i].sync2;
        a1 += tallies[i].async1;
        a2 += tallies[i].async2;
        T_ASSERT(tallies[i].flips == 1, "thread %d saw the sync answer change %ld times", i, tallies[i].flips);
    }
    uint64_t total = 0;
    for (uint32_t c = 0; c < CONTAINERS; c++) total += served(c);
    long done = s1 + s2 + a1 + a2;
    printf("report: %s\n", report);
    printf("tasks: %ld (sync %ld x1 + %ld x2, async %ld x1 + %ld x2), upgrade call %.1f ms\n",
           done, s1, s2, a1, a2, (double)(u1 - u0) / 1e6);
    printf("served: %llu counted by the containers since the start, %ld completed\n",
           (unsigned long long)(total - base), done);
    T_ASSERT(s1 > 0 && s2 > 0 && a1 > 0 && a2 > 0, "both versions served sync and async tasks");
    T_ASSERT(total - base == (uint64_t)done,
             "the containers counted %llu Md, the clients completed %ld: lost, doubled or the counter was not carried",
             (unsigned long long)(total - base), done);
    T_ASSERT(strstr(report, "\"new_version\":2") != NULL && strstr(report, "\"old_version\":1") != NULL,
             "report: %s", report);
    T_OK(chi_client_finalize(client));
    puts("test_upgrade_load: ok");
    return T_EXIT_PASS;
}
