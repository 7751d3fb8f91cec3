/* The suite's control: a well-behaved client (Md of several depths, a broadcast, tasks of
 * Md's size only) must pass every final check of hostile.h, on any build. If this fails, the
 * checks are wrong, not the runtime. */
#include "hostile.h"

int main(void) {
    chi_client_t *c;
    int i;
    h_begin("h_control", 30);
    c = h_client();
    for (i = 0; i < 200; i++) h_md_ok(c, H.pool, H_DQ(i % 2), (uint32_t)(i % 4), 1, "Md");
    h_md_ok(c, H.pool, chi_dq_global_bcast(), 1, 2, "broadcast Md");
    H_CHECK(chi_client_finalize(c));
    h_end(H_IDLE_FIBERS);
    return T_EXIT_PASS;
}
