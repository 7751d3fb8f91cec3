/* test_pool_cycles: pools created and destroyed many times (10,000 by default, and for at
 * least 4 s, since an id is free again a second after its pool went) leave the
 * runtime able to create pools, with their ids reused (a destroyed pool's id comes back once
 * nothing can reach the pool), and chi_pool_info finds pools by name and by id in one
 * lookup. Before ids were recycled, create failed after 65,534 cycles. */
#include "test_common.h"

int main(int argc, char **argv) {
    int cycles = argc > 1 ? atoi(argv[1]) : 10000;
    t_watchdog("test_pool_cycles", 240);
    chi_client_t *c = t_attach();
    uint64_t first = 0, highest = 0;
    int64_t t0 = t_now_ns();
    int i = 0, at_2s = -1;
    for (; i < cycles || t_now_ns() - t0 < 4000000000LL; i++) {
        if (at_2s < 0 && t_now_ns() - t0 >= 2000000000LL) at_2s = i;
        char name[32];
        snprintf(name, sizeof name, "cycle_%d", i % 7);
        chi_pool_create_opts_t o = {.size = sizeof o, .module = "small_message", .name = name};
        uint64_t id;
        T_OK(chi_pool_create(c, &o, &id));
        if (i == 0) first = id;
        if (id > highest) highest = id;
        chi_pool_info_t info = {.size = sizeof info};
        T_OK(chi_pool_info(c, 0, name, &info));
        T_ASSERT(info.id == id && strcmp(info.module, "small_message") == 0 && info.containers == 1,
                 "chi_pool_info by name: id %llu module %s", (unsigned long long)info.id, info.module);
        T_OK(chi_pool_destroy(c, id));
        T_EQ_RC(chi_pool_info(c, id, NULL, &info), -CHI_ENOPOOL);
    }
    int64_t ms = (t_now_ns() - t0) / 1000000;
    cycles = i;
    printf("test_pool_cycles: %d create/destroy cycles in %lld ms; ids from %llu, never above %llu\n",
           cycles, (long long)ms, (unsigned long long)first, (unsigned long long)highest);
    /* Ids come back a second after their pool went: after 2 s every create can take a
     * recycled id, so no more ids are used than by then (without reuse: one per cycle). */
    T_ASSERT(at_2s > 0 && highest - first <= (uint64_t)at_2s,
             "ids are not reused: %llu ids for %d cycles, %d of them in the first 2 s",
             (unsigned long long)(highest - first), cycles, at_2s);
    uint64_t pool = t_sm_pool(c, "after_cycles", 2);
    int32_t ret = 0;
    T_OK(t_md(c, pool, chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 1), 1, &ret));
    T_ASSERT(ret == 1, "Md after the cycles: ret %d", ret);
    chi_pool_info_t info = {.size = sizeof info};
    T_OK(chi_pool_info(c, pool, NULL, &info));
    T_ASSERT(strcmp(info.name, "after_cycles") == 0 && info.containers == 2, "chi_pool_info by id: %s", info.name);
    T_OK(chi_client_finalize(c));
    puts("test_pool_cycles: ok");
    return T_EXIT_PASS;
}
