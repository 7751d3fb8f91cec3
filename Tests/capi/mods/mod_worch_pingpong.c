/* chi_test_worch_pingpong: a work orchestrator that moves every lane to the next worker on
 * every look (every 2 ms), whatever the load and the lanes' latency class: the most moves a
 * policy can ask for, to test the hand-off under load. */
#include "chimaera/module.h"

static int pp_plan(void *state, const chi_worch_snapshot_t *snap, chi_lane_move_t *moves, uint32_t cap) {
    (void)state;
    uint32_t n = 0;
    if (snap->nworkers < 2) return 0;
    for (uint32_t i = 0; i < snap->nlanes && n < cap; i++) {
        if (snap->lanes[i].moving) continue;
        moves[n].lane = i;
        moves[n].to_worker = (snap->lanes[i].worker + 1) % snap->nworkers;
        n++;
    }
    return (int)n;
}

static const chi_worch_ops_t ops = {.size = sizeof(chi_worch_ops_t), .period_ms = 2, .plan = pp_plan};

static const chi_module_vtable_t vt = {
    .size = sizeof(chi_module_vtable_t),
    .abi_major = CHI_ABI_MAJOR,
    .abi_minor = CHI_ABI_MINOR,
    .name = "chi_test_worch_pingpong",
    .version = 1,
    .worch = &ops,
};

CHI_MODULE_EXPORT(&vt)
