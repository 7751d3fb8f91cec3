/* example_worch_spread: an example work-orchestration policy, written as a user would
 * (docs/modules.md, "A work-orchestration policy"). It spreads busy lanes evenly: a lane is
 * busy when it ran at least MIN_TASKS tasks since the previous look (one that ran a stray
 * task or two is not); when, within one latency class, the worker with the most busy lanes
 * has two or more than the worker with the fewest, for PERSIST looks in a row, one of its
 * busy lanes moves there. At most one move per look, so that it never chases its own moves.
 * It reads only the snapshot: no clock, nothing of the runtime's. */
#include <stdlib.h>

#include <chimaera/module.h>

#define MAXW 256
#define PERSIST 3    /* looks in a row an imbalance must last */
#define MIN_TASKS 16 /* tasks in one look that make a lane busy */

typedef struct spread {
    uint32_t nworkers;
    uint32_t kinds[MAXW];
    uint32_t seen; /* consecutive looks that found an imbalance */
} spread_t;

static void *spread_create(uint32_t nworkers, const uint32_t *kinds) {
    spread_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->nworkers = nworkers > MAXW ? MAXW : nworkers;
    for (uint32_t i = 0; i < s->nworkers; i++) s->kinds[i] = kinds[i];
    return s;
}

static void spread_destroy(void *state) { free(state); }

static int spread_plan(void *state, const chi_worch_snapshot_t *snap, chi_lane_move_t *moves,
                       uint32_t cap) {
    spread_t *s = state;
    if (!s || cap == 0) return 0;
    uint32_t busy[MAXW] = {0};
    uint32_t n = s->nworkers < snap->nworkers ? s->nworkers : snap->nworkers;
    for (uint32_t i = 0; i < snap->nlanes; i++) {
        const chi_lane_load_t *l = &snap->lanes[i];
        if (l->tasks_run >= MIN_TASKS && l->worker < n) busy[l->worker]++;
    }
    for (uint32_t kind = CHI_WORKER_LOW_LATENCY; kind <= CHI_WORKER_HIGH_LATENCY; kind++) {
        int most = -1, fewest = -1;
        for (uint32_t w = 0; w < n; w++) {
            if (s->kinds[w] != kind) continue;
            if (most < 0 || busy[w] > busy[most]) most = (int)w;
            if (fewest < 0 || busy[w] < busy[fewest]) fewest = (int)w;
        }
        if (most < 0 || busy[most] < busy[fewest] + 2) continue;
        if (++s->seen < PERSIST) return 0;
        s->seen = 0;
        for (uint32_t i = 0; i < snap->nlanes; i++) {
            const chi_lane_load_t *l = &snap->lanes[i];
            if (l->worker == (uint32_t)most && l->tasks_run >= MIN_TASKS && !l->moving) {
                moves[0].lane = i;
                moves[0].to_worker = (uint32_t)fewest;
                return 1;
            }
        }
        return 0;
    }
    s->seen = 0;
    return 0;
}

static const chi_worch_ops_t spread_ops = {
    .size = sizeof(chi_worch_ops_t),
    .period_ms = 10,
    .create = spread_create,
    .destroy = spread_destroy,
    .plan = spread_plan,
};

static const chi_module_vtable_t spread_vtable = {
    .size = sizeof(chi_module_vtable_t),
    .abi_major = CHI_ABI_MAJOR,
    .abi_minor = CHI_ABI_MINOR,
    .name = "example_worch_spread",
    .version = 1,
    .worch = &spread_ops,
};

CHI_MODULE_EXPORT(&spread_vtable)
