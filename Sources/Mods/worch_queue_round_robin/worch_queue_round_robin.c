/* worch_queue_round_robin: the static mapping. Lanes go round-robin over the workers of their
 * latency class (all workers when the class has none), in the order the snapshot lists them
 * (pools by id, containers, lanes): each look moves any lane that is elsewhere back to its
 * place, so switching to this policy undoes what a load-based one did. Clients' rings keep
 * the runtime's default placement (round-robin by client slot). */
#include <errno.h>
#include <stdlib.h>

#include "chimaera/module.h"

#define MAXW 256

typedef struct rr_state {
    uint32_t nworkers;
    uint32_t kinds[MAXW];
} rr_state_t;

static void *rr_create(uint32_t nworkers, const uint32_t *kinds) {
    rr_state_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->nworkers = nworkers > MAXW ? MAXW : nworkers;
    for (uint32_t i = 0; i < s->nworkers; i++) s->kinds[i] = kinds[i];
    return s;
}

static void rr_destroy(void *state) { free(state); }

static int rr_plan(void *state, const chi_worch_snapshot_t *snap, chi_lane_move_t *moves, uint32_t cap) {
    rr_state_t *s = state;
    if (!s) return 0;
    uint32_t of[2][MAXW], count[2] = {0, 0}, next[2] = {0, 0};
    for (uint32_t w = 0; w < s->nworkers && w < snap->nworkers; w++) {
        uint32_t k = s->kinds[w] == CHI_WORKER_LOW_LATENCY ? 0 : 1;
        of[k][count[k]++] = w;
    }
    int made = 0;
    for (uint32_t i = 0; i < snap->nlanes && (uint32_t)made < cap; i++) {
        const chi_lane_load_t *l = &snap->lanes[i];
        uint32_t k = l->prio == CHI_PRIO_LOW_LATENCY ? 0 : 1;
        if (count[k] == 0) k = 1 - k; /* no worker of its class: the others */
        if (count[k] == 0) return made;
        uint32_t target = of[k][next[k]++ % count[k]];
        if (l->worker != target && !l->moving) {
            moves[made].lane = i;
            moves[made].to_worker = target;
            made++;
        }
    }
    return made;
}

static const chi_worch_ops_t rr_ops = {
    .size = sizeof(chi_worch_ops_t),
    .period_ms = 20,
    .create = rr_create,
    .destroy = rr_destroy,
    .plan = rr_plan,
};

static const chi_module_vtable_t rr_vtable = {
    .size = sizeof(chi_module_vtable_t),
    .abi_major = CHI_ABI_MAJOR,
    .abi_minor = CHI_ABI_MINOR,
    .name = "worch_queue_round_robin",
    .version = 1,
    .worch = &rr_ops,
};

CHI_MODULE_EXPORT(&rr_vtable)
