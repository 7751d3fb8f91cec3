/* Broadcast: a Md over every container of a 4-container pool returns 4, the sum of each
 * container's 1 folded by small_message's replica-aggregation hook; sub-ranges fold only
 * their own containers. */
#include "test_common.h"

int main(void) {
    const uint32_t G = CHI_SUBDOMAIN_GLOBAL_CONTAINERS;
    chi_client_t *c;
    uint64_t four, one;
    int i;

    t_watchdog("test_bcast", 40);
    c = t_attach();
    four = t_sm_pool(c, "bcast_test_4", 4);
    one = t_sm_pool(c, "bcast_test_1", 1);
    for (i = 0; i < 32; i++) T_MD_EXPECT(c, four, chi_dq_global_bcast(), 0, 4);
    T_MD_EXPECT(c, four, chi_dq_global(G, CHI_DQ_BCAST), 0, 4);
    T_MD_EXPECT(c, four, chi_dq_range(G, 1, 2, CHI_DQ_BCAST), 0, 2);
    T_MD_EXPECT(c, four, chi_dq_range(G, 1, 0, CHI_DQ_BCAST), 0, 3); /* count 0: to the end */
    T_MD_EXPECT(c, four, chi_dq_range(G, 3, 1, CHI_DQ_BCAST), 0, 1);
    T_MD_EXPECT(c, one, chi_dq_global_bcast(), 0, 1);
    /* A broadcast whose replicas spawn subtasks still folds to one answer per container. */
    T_MD_EXPECT(c, four, chi_dq_global_bcast(), 2, 4);
    T_OK(chi_client_finalize(c));
    puts("test_bcast: ok");
    return T_EXIT_PASS;
}
