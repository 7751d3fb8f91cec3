/* worch_proc_round_robin (the seed's name): spreads client processes over the low-latency
 * workers round-robin: each new client's submission rings go to the next low-latency workers
 * in turn (all workers when there are none), whatever its slot. Lanes stay where they were
 * made. It pins and re-prioritises no process: only which worker drains a client changes. */
#include <errno.h>
#include <stdlib.h>

#include "chimaera/module.h"

#define MAXW 256

typedef struct pr_state {
    uint32_t nll;
    uint32_t ll[MAXW];
    uint32_t next;
} pr_state_t;

static void *pr_create(uint32_t nworkers, const uint32_t *kinds) {
    pr_state_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    for (uint32_t i = 0; i < nworkers && i < MAXW; i++)
        if (kinds[i] == CHI_WORKER_LOW_LATENCY) s->ll[s->nll++] = i;
    if (s->nll == 0)
        for (uint32_t i = 0; i < nworkers && i < MAXW; i++) s->ll[s->nll++] = i;
    return s;
}

static void pr_destroy(void *state) { free(state); }

static int pr_place(void *state, const chi_worch_snapshot_t *snap, uint32_t slot, uint32_t nrings,
                    uint32_t *workers) {
    pr_state_t *s = state;
    (void)snap;
    (void)slot;
    if (!s || s->nll == 0) return -EINVAL;
    for (uint32_t q = 0; q < nrings; q++) workers[q] = s->ll[(s->next + q) % s->nll];
    s->next = (s->next + 1) % s->nll;
    return 0;
}

static const chi_worch_ops_t pr_ops = {
    .size = sizeof(chi_worch_ops_t),
    .period_ms = 100,
    .create = pr_create,
    .destroy = pr_destroy,
    .place_client = pr_place,
};

static const chi_module_vtable_t pr_vtable = {
    .size = sizeof(chi_module_vtable_t),
    .abi_major = CHI_ABI_MAJOR,
    .abi_minor = CHI_ABI_MINOR,
    .name = "worch_proc_round_robin",
    .version = 1,
    .worch = &pr_ops,
};

CHI_MODULE_EXPORT(&pr_vtable)
