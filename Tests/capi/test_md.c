/* The seed's client example as a test (256 sync Md over direct hashes, each ret == 1, with
 * its latency), then Md through every domain-query constructor in task.h, the pool calls'
 * idempotence and lookup, and a direct id past the last container. */
#include "test_common.h"

#define OPS 256
#define NCONT 4

static void seed_example(chi_client_t *c) {
    uint64_t pool = t_sm_pool(c, "ipc_test", 0), again = 0, found = 0;
    chi_pool_create_opts_t po;
    int64_t t0, ns;
    int32_t ret = 0;
    size_t i;

    T_OK(chi_module_register(c, CHI_SM_MODULE_NAME)); /* registering twice is fine */
    memset(&po, 0, sizeof po);
    po.size = sizeof po;
    po.module = CHI_SM_MODULE_NAME;
    po.name = "ipc_test";
    T_OK(chi_pool_create(c, &po, &again));
    T_ASSERT(again == pool, "creating ipc_test twice gave ids %llu and %llu",
             (unsigned long long)pool, (unsigned long long)again);
    T_OK(chi_pool_get_id(c, "ipc_test", &found));
    T_ASSERT(found == pool, "chi_pool_get_id(ipc_test) = %llu, want %llu",
             (unsigned long long)found, (unsigned long long)pool);
    T_EQ_RC(chi_pool_get_id(c, "no_such_pool_for_test_md", &found), -CHI_ENOPOOL);

    t0 = t_now_ns();
    for (i = 0; i < OPS; i++) {
        int32_t r = 0;
        int rc = t_md(c, pool, chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, i), 0, &r);
        if (rc < 0) t_failf(__FILE__, __LINE__, rc, "Md #%zu", i);
        T_ASSERT(r == 1, "Md #%zu ret %d", i, (int)r);
    }
    ns = t_now_ns() - t0;
    printf("OPS: %d\nLatency: %d ops, %.1f us total, %.3f us/op, %.3f MOps/s\n", OPS, OPS,
           (double)ns / 1e3, (double)ns / 1e3 / OPS, OPS / ((double)ns / 1e3));

    /* The header's convenience call (it waits without a timeout; the watchdog bounds it). */
    T_OK(chi_sm_md(c, pool, chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 9), 0, &ret));
    T_ASSERT(ret == 1, "chi_sm_md ret %d", (int)ret);
}

static void every_query(chi_client_t *c) {
    uint64_t pool = t_sm_pool(c, "md_queries", NCONT);
    const uint32_t G = CHI_SUBDOMAIN_GLOBAL_CONTAINERS, L = CHI_SUBDOMAIN_LOCAL_CONTAINERS;
    uint64_t i;
    int32_t ret = 0;
    int rc;

    for (i = 0; i < NCONT; i++) {
        T_MD_EXPECT(c, pool, chi_dq_local_id(L, i), 0, 1);
        T_MD_EXPECT(c, pool, chi_dq_direct_id(G, i), 0, 1);
    }
    for (i = 0; i < 64; i++) {
        T_MD_EXPECT(c, pool, chi_dq_direct_hash(G, i * 0x9E3779B97F4A7C15ull), 0, 1);
        T_MD_EXPECT(c, pool, chi_dq_direct_hash(L, i), 0, 1);
        T_MD_EXPECT(c, pool, chi_dq_local_hash(i), 0, 1);
    }
    T_MD_EXPECT(c, pool, chi_dq_range(G, 1, 2, CHI_DQ_CHOOSE_ONE), 0, 1);
    T_MD_EXPECT(c, pool, chi_dq_range(G, 0, 0, CHI_DQ_CHOOSE_ONE), 0, 1);
    T_MD_EXPECT(c, pool, chi_dq_global(G, CHI_DQ_CHOOSE_ONE), 0, 1);
    T_MD_EXPECT(c, pool, chi_dq_global(G, CHI_DQ_REP_UNTIL_SUCCESS), 0, 1);
    T_MD_EXPECT(c, pool, chi_dq_range(G, 2, 2, CHI_DQ_REP_UNTIL_SUCCESS), 0, 1);
    T_MD_EXPECT(c, pool, chi_dq_dynamic(), 0, 1);
    for (i = 0; i < 16; i++) T_MD_EXPECT(c, pool, chi_dq_dynamic(), 0, 1);

    /* Addresses past the last container select nothing. */
    rc = t_md(c, pool, chi_dq_direct_id(G, NCONT), 0, &ret);
    T_EQ_RC(rc, -CHI_ENOCONTAINER);
    rc = t_md(c, pool, chi_dq_range(G, NCONT, 1, CHI_DQ_CHOOSE_ONE), 0, &ret);
    T_EQ_RC(rc, -CHI_ENOCONTAINER);
    T_MD_EXPECT(c, pool, chi_dq_direct_id(G, 0), 0, 1);
}

int main(void) {
    chi_client_t *c;
    t_watchdog("test_md", 50);
    c = t_attach();
    seed_example(c);
    every_query(c);
    T_OK(chi_client_finalize(c));
    puts("test_md: ok");
    return T_EXIT_PASS;
}
