/* Md with a depth runs a chain of subtasks (each on the next container). The runner starts
 * this one against a one-worker daemon (low_latency_workers: 1, high_latency_workers: 0):
 * a method waiting on its subtask must not block that worker, or the chain never finishes
 * (the watchdog turns that into a failure). */
#include "test_common.h"

#define DEPTH 8
#define CONCURRENT 16

static void chain(chi_client_t *c, uint64_t pool, const char *what) {
    uint32_t d;
    int64_t t0 = t_now_ns();
    for (d = 0; d <= DEPTH; d++)
        T_MD_EXPECT(c, pool, chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, d), d, 1);
    printf("%s: depths 0..%d in %.1f us\n", what, DEPTH, (double)(t_now_ns() - t0) / 1e3);
}

/* Several depth-8 chains in flight at once on the one worker. */
static void concurrent_chains(chi_client_t *c, uint64_t pool) {
    chi_task_t *t[CONCURRENT];
    int i;
    for (i = 0; i < CONCURRENT; i++) {
        chi_domain_query_t dq = chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, (uint64_t)i);
        T_OK(chi_task_new(c, pool, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &t[i]));
        ((chi_sm_md_task_t *)t[i])->depth = DEPTH;
        T_OK(chi_task_submit(c, t[i]));
    }
    for (i = 0; i < CONCURRENT; i++) {
        T_EQ_RC(chi_task_wait(c, t[i], T_WAIT_NS), 0);
        T_ASSERT(t[i]->rc >= 0 && ((chi_sm_md_task_t *)t[i])->ret == 1,
                 "chain %d: rc %d ret %d", i, t[i]->rc, ((chi_sm_md_task_t *)t[i])->ret);
        T_OK(chi_task_del(c, t[i]));
    }
}

int main(void) {
    chi_client_t *c;
    uint64_t one, four;
    t_watchdog("test_md_depth", 50);
    c = t_attach();
    one = t_sm_pool(c, "md_depth_1", 1);
    four = t_sm_pool(c, "md_depth_4", 4);
    chain(c, one, "1 container");
    chain(c, four, "4 containers");
    concurrent_chains(c, four);
    concurrent_chains(c, one);
    T_OK(chi_client_finalize(c));
    puts("test_md_depth: ok");
    return T_EXIT_PASS;
}
