/* A periodic Md (every 5 ms) runs again and again without completing; destroying its pool
 * completes it with -CHI_ESTOPPED and it never runs again; the pool is gone afterwards. */
#include "test_common.h"

int main(void) {
    chi_client_t *c;
    chi_domain_query_t dq = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0);
    chi_task_t *t = NULL;
    uint64_t pool, id = 0;
    uint32_t runs, r0, r1;
    int64_t t0, ms;
    int32_t ret = 0;

    t_watchdog("test_periodic", 40);
    c = t_attach();
    pool = t_sm_pool(c, "periodic_test", 1);
    T_OK(chi_task_new(c, pool, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &t));
    chi_task_set_period_ms(t, 5);
    T_ASSERT(t->period_ns == 5000000ull && (t->flags & CHI_TASK_PERIODIC), "set_period_ms");
    T_OK(chi_task_submit(c, t));

    t0 = t_now_ns();
    while ((runs = T_LOAD(t->runs)) <= 5 && t_now_ns() - t0 < 2 * T_SEC_NS) t_sleep_ms(1);
    ms = (t_now_ns() - t0) / 1000000;
    T_ASSERT(runs > 5, "runs is %u after %lld ms (period 5 ms)", runs, (long long)ms);
    T_ASSERT(!chi_task_is_done(t), "the periodic task completed on its own");
    printf("periodic: %u runs after %lld ms\n", runs, (long long)ms);

    /* A 5 ms period is a period, not a spin: generous upper bound over 200 ms. */
    r0 = T_LOAD(t->runs);
    t_sleep_ms(200);
    r1 = T_LOAD(t->runs);
    T_ASSERT(r1 > r0 && r1 - r0 <= 100, "%u runs in 200 ms with a 5 ms period", r1 - r0);
    T_ASSERT(((chi_sm_md_task_t *)t)->ret == 1, "periodic Md ret %d", ((chi_sm_md_task_t *)t)->ret);

    /* Other tasks on the same container still run alongside the periodic one. */
    T_MD_EXPECT(c, pool, chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0), 0, 1);

    T_OK(chi_pool_destroy(c, pool));
    T_EQ_RC(chi_task_wait(c, t, 2 * T_SEC_NS), 0);
    T_EQ_RC(t->rc, -CHI_ESTOPPED);
    r0 = T_LOAD(t->runs);
    t_sleep_ms(100);
    r1 = T_LOAD(t->runs);
    T_ASSERT(r1 == r0, "runs grew from %u to %u after the pool was destroyed", r0, r1);
    T_OK(chi_task_del(c, t));

    T_EQ_RC(chi_pool_get_id(c, "periodic_test", &id), -CHI_ENOPOOL);
    T_EQ_RC(t_md(c, pool, dq, 0, &ret), -CHI_ENOPOOL);
    T_EQ_RC(chi_pool_destroy(c, pool), -CHI_ENOPOOL);
    T_OK(chi_client_finalize(c));
    puts("test_periodic: ok");
    return T_EXIT_PASS;
}
