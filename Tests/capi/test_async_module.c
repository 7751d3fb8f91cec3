/* test_async_module: tasks that suspend their fiber and are resumed by a poller on the same
 * worker, or by another thread, all complete; the worker keeps serving Md meanwhile; the
 * pool (and its poller) can be destroyed. The runner builds mods/mod_async.c into a
 * directory on runtime.module_path. */
#include "test_common.h"

typedef struct {
    chi_task_t hdr;
    uint32_t worker;
    uint32_t workers;
} async_task_t;

static void run_batch(chi_client_t *c, uint64_t pool, uint32_t method, int n) {
    chi_task_t *t[256];
    chi_domain_query_t dq = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0);
    for (int i = 0; i < n; i++) {
        T_OK(chi_task_new(c, pool, method, sizeof(async_task_t), &dq, &t[i]));
        T_OK(chi_task_submit(c, t[i]));
    }
    for (int i = 0; i < n; i++) {
        T_OK(chi_task_wait(c, t[i], T_WAIT_NS));
        T_ASSERT(t[i]->rc == 0, "task %d rc %d (%s)", i, t[i]->rc, chi_strerror(t[i]->rc));
        async_task_t *a = (async_task_t *)t[i];
        T_ASSERT(a->workers >= 1 && a->worker < a->workers, "worker %u of %u", a->worker, a->workers);
        T_OK(chi_task_del(c, t[i]));
    }
}

int main(void) {
    chi_client_t *c;
    uint64_t pool, sm;
    int32_t ret = 0;
    t_watchdog("test_async_module", 60);
    T_OK(chi_client_init(NULL, &c));
    chi_pool_create_opts_t o = {.size = sizeof o, .module = "chi_test_async", .name = "async"};
    T_OK(chi_pool_create(c, &o, &pool));
    chi_pool_create_opts_t s = {.size = sizeof s, .module = "small_message", .name = "sm_async"};
    T_OK(chi_pool_create(c, &s, &sm));

    run_batch(c, pool, 10, 200);  /* resumed by the poller */
    run_batch(c, pool, 11, 16);   /* resumed by other threads */
    T_OK(chi_sm_md(c, sm, chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0), 0, &ret));
    T_ASSERT(ret == 1, "Md ret %d", ret);
    T_OK(chi_pool_destroy(c, pool));
    T_OK(chi_sm_md(c, sm, chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0), 0, &ret));
    T_OK(chi_client_finalize(c));
    puts("test_async_module: ok");
    return T_EXIT_PASS;
}
