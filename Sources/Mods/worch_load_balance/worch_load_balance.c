/* worch_load_balance, the default work orchestrator: moves busy lanes off a worker that is
 * busier than another of the same kind, with hysteresis so that lanes do not ping-pong.
 *
 * Each look it smooths each worker's busy fraction (busy time / interval, or 1 for a worker
 * whose lanes wait while it ran nothing: a stalled worker). Within each kind (low latency,
 * high latency) it compares the busiest and the idlest worker; when the gap is above
 * GAP for SUSTAIN looks in a row, it moves one lane of the busiest: the busiest lane that
 * fits in half the gap (so the move narrows it without turning it around), never one moved
 * in the last COOLDOWN_NS, never the only lane with work unless its worker stalled. A lane
 * moves only among the workers of its own kind (low-latency lanes stay on low-latency
 * workers) when that kind has workers. One move per kind per look. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chimaera/module.h"

#define GAP 0.25            /* busy-fraction difference that counts as imbalance */
#define SUSTAIN 3           /* looks in a row before acting */
#define COOLDOWN_NS 200000000ull /* a lane that moved stays this long */
#define RECENT 1024         /* lanes remembered as recently moved (a hash table) */
#define MAXW 256

typedef struct recent {
    uint64_t key; /* pool id, container and lane, mixed; 0: empty */
    uint64_t when;
} recent_t;

typedef struct lb_state {
    uint32_t nworkers;
    uint32_t kinds[MAXW];
    double smooth[MAXW];
    int warm;
    uint32_t sustain[2];
    recent_t recent[RECENT];
} lb_state_t;

static uint64_t lane_key(const chi_lane_load_t *l) {
    uint64_t k = l->pool_id * 0x9E3779B97F4A7C15ull ^ ((uint64_t)l->container << 20) ^ l->lane;
    return k ? k : 1;
}

static int moved_lately(lb_state_t *s, const chi_lane_load_t *l, uint64_t now) {
    uint64_t k = lane_key(l);
    for (uint32_t i = 0; i < 8; i++) {
        recent_t *r = &s->recent[(k + i) % RECENT];
        if (r->key == k) return now - r->when < COOLDOWN_NS;
        if (r->key == 0) return 0;
    }
    return 0;
}

static void remember(lb_state_t *s, const chi_lane_load_t *l, uint64_t now) {
    uint64_t k = lane_key(l);
    for (uint32_t i = 0; i < 8; i++) {
        recent_t *r = &s->recent[(k + i) % RECENT];
        if (r->key == k || r->key == 0 || now - r->when >= COOLDOWN_NS) {
            r->key = k;
            r->when = now;
            return;
        }
    }
    s->recent[k % RECENT] = (recent_t){k, now}; /* full probe run: overwrite */
}

static void *lb_create(uint32_t nworkers, const uint32_t *kinds) {
    lb_state_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->nworkers = nworkers > MAXW ? MAXW : nworkers;
    for (uint32_t i = 0; i < s->nworkers; i++) s->kinds[i] = kinds[i];
    return s;
}

static void lb_destroy(void *state) { free(state); }

/* The kind of workers lane l may use: its own latency class, if there are workers of it. */
static uint32_t lane_kind(const lb_state_t *s, const chi_lane_load_t *l) {
    uint32_t want = l->prio == CHI_PRIO_LOW_LATENCY ? CHI_WORKER_LOW_LATENCY : CHI_WORKER_HIGH_LATENCY;
    for (uint32_t i = 0; i < s->nworkers; i++)
        if (s->kinds[i] == want) return want;
    return UINT32_MAX; /* any worker */
}

static int lb_plan(void *state, const chi_worch_snapshot_t *snap, chi_lane_move_t *moves, uint32_t cap) {
    lb_state_t *s = state;
    if (!s || snap->interval_ns == 0 || cap == 0) return 0;
    uint32_t n = snap->nworkers < s->nworkers ? snap->nworkers : s->nworkers;
    for (uint32_t w = 0; w < n; w++) {
        const chi_worker_load_t *wl = &snap->workers[w];
        double b = (double)wl->busy_ns / (double)snap->interval_ns;
        if (b > 1) b = 1;
        if (wl->tasks_run == 0 && wl->queued > 0) b = 1; /* stalled: its lanes wait */
        s->smooth[w] = s->warm ? 0.5 * s->smooth[w] + 0.5 * b : b;
    }
    s->warm = 1;
    int made = 0;
    for (uint32_t kind = 0; kind < 2 && (uint32_t)made < cap; kind++) {
        int hot = -1, cold = -1;
        for (uint32_t w = 0; w < n; w++) {
            if (s->kinds[w] != kind) continue;
            if (hot < 0 || s->smooth[w] > s->smooth[hot]) hot = (int)w;
            if (cold < 0 || s->smooth[w] < s->smooth[cold]) cold = (int)w;
        }
        if (hot < 0 || hot == cold || s->smooth[hot] - s->smooth[cold] < GAP) {
            s->sustain[kind] = 0;
            continue;
        }
        if (++s->sustain[kind] < SUSTAIN) continue;
        const chi_worker_load_t *hw = &snap->workers[hot];
        int stalled = hw->tasks_run == 0 && hw->queued > 0;
        double gap = s->smooth[hot] - s->smooth[cold];
        int pick = -1, working = 0;
        double pick_load = -1;
        for (uint32_t i = 0; i < snap->nlanes; i++) {
            const chi_lane_load_t *l = &snap->lanes[i];
            if (l->worker != (uint32_t)hot) continue;
            if (l->busy_ns == 0 && l->queued == 0) continue;
            working++;
            uint32_t lk = lane_kind(s, l);
            if (lk != UINT32_MAX && lk != kind) continue;
            if (l->moving || moved_lately(s, l, snap->now_ns)) continue;
            double load = (double)l->busy_ns / (double)snap->interval_ns;
            if (stalled) load = l->queued; /* the waiting lanes go first */
            else if (load > gap / 2 + 0.05) continue; /* would turn the imbalance around */
            if (load > pick_load) {
                pick = (int)i;
                pick_load = load;
            }
        }
        if (pick < 0 || (working < 2 && !stalled)) continue;
        moves[made].lane = (uint32_t)pick;
        moves[made].to_worker = (uint32_t)cold;
        made++;
        remember(s, &snap->lanes[pick], snap->now_ns);
        s->sustain[kind] = 0;
        if (!stalled) {
            double load = (double)snap->lanes[pick].busy_ns / (double)snap->interval_ns;
            s->smooth[hot] -= load;
            s->smooth[cold] += load;
        }
    }
    return made;
}

/* New clients: their rings go to the least busy low-latency workers. */
static int lb_place(void *state, const chi_worch_snapshot_t *snap, uint32_t slot, uint32_t nrings,
                    uint32_t *workers) {
    lb_state_t *s = state;
    (void)slot;
    if (!s) return -EINVAL;
    uint32_t n = snap->nworkers < s->nworkers ? snap->nworkers : s->nworkers;
    uint32_t ll[MAXW], nll = 0;
    for (uint32_t w = 0; w < n; w++)
        if (s->kinds[w] == CHI_WORKER_LOW_LATENCY) ll[nll++] = w;
    if (nll == 0)
        for (uint32_t w = 0; w < n; w++) ll[nll++] = w;
    if (nll == 0) return -EINVAL;
    /* The idlest first, then round the others. */
    uint32_t best = 0;
    for (uint32_t i = 1; i < nll; i++)
        if (s->smooth[ll[i]] < s->smooth[ll[best]]) best = i;
    for (uint32_t q = 0; q < nrings; q++) workers[q] = ll[(best + q) % nll];
    return 0;
}

static const chi_worch_ops_t lb_ops = {
    .size = sizeof(chi_worch_ops_t),
    .period_ms = 5,
    .create = lb_create,
    .destroy = lb_destroy,
    .plan = lb_plan,
    .place_client = lb_place,
};

static const chi_module_vtable_t lb_vtable = {
    .size = sizeof(chi_module_vtable_t),
    .abi_major = CHI_ABI_MAJOR,
    .abi_minor = CHI_ABI_MINOR,
    .name = "worch_load_balance",
    .version = 1,
    .worch = &lb_ops,
};

CHI_MODULE_EXPORT(&lb_vtable)
