/* Work orchestrators (ABI 1.3): policies, packaged as modules, that move lanes between worker
 * threads by load and choose the workers that drain a new client's rings.
 *
 * A module is a work orchestrator when its vtable's `worch` field points at a chi_worch_ops_t.
 * The runtime loads it by name like any module (runtime.work_orchestrator in the config, or
 * `chimaera worch set NAME` while running) and, while any worker is awake, calls `plan` every
 * `period_ms` on its orchestrator thread with a snapshot of the load. An idle runtime calls
 * nothing. A policy is a pure function of its snapshots: it may keep state, but should read no
 * clock and touch nothing of the runtime's; the moves it returns are carried out by the
 * runtime, a lane at a time, without losing, repeating or reordering its tasks. The runtime
 * never calls into one policy from two threads at once. */
#ifndef CHIMAERA_WORCH_H
#define CHIMAERA_WORCH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Worker kinds (chi_worker_load_t.kind). */
#define CHI_WORKER_LOW_LATENCY  0u
#define CHI_WORKER_HIGH_LATENCY 1u

/** One worker in a snapshot. Busy time and tasks are counted since the previous snapshot. */
typedef struct chi_worker_load {
    uint32_t id;
    uint32_t kind;       /* CHI_WORKER_* */
    uint64_t busy_ns;    /* time spent running tasks (sampled: 1 task in 16 per lane is timed) */
    uint64_t tasks_run;
    uint32_t queued;     /* tasks waiting in the lanes it owns, now */
    uint32_t lanes;      /* lanes it owns, now */
    uint32_t asleep;     /* 1 if it sleeps now */
    uint32_t reserved;
} chi_worker_load_t;

/** One lane in a snapshot. Busy time and tasks are counted since the previous snapshot. */
typedef struct chi_lane_load {
    uint64_t pool_id;
    uint32_t container;
    uint32_t lane;       /* its index in the container */
    uint32_t worker;     /* the worker that owns it now */
    uint32_t prio;       /* CHI_PRIO_LOW_LATENCY or CHI_PRIO_HIGH_LATENCY */
    uint64_t busy_ns;
    uint64_t tasks_run;
    uint32_t queued;     /* tasks waiting in it now */
    uint32_t moving;     /* 1 while a move of it is under way: moving it again is ignored */
} chi_lane_load_t;

/** What `plan` sees. The arrays are valid for the call only. */
typedef struct chi_worch_snapshot {
    uint32_t size;                    /* sizeof(chi_worch_snapshot_t) of the runtime */
    uint32_t nworkers;
    uint64_t now_ns;                  /* a monotonic clock */
    uint64_t interval_ns;             /* since the previous snapshot */
    const chi_worker_load_t *workers; /* by id */
    const chi_lane_load_t *lanes;
    uint32_t nlanes;
    uint32_t reserved;
} chi_worch_snapshot_t;

/** A move `plan` asks for: snapshot lane `lane` (an index into snapshot->lanes) to worker
 *  `to_worker`. */
typedef struct chi_lane_move {
    uint32_t lane;
    uint32_t to_worker;
} chi_lane_move_t;

/** A work orchestrator's hooks. */
typedef struct chi_worch_ops {
    uint32_t size;      /* sizeof(chi_worch_ops_t) the module was built with */
    uint32_t period_ms; /* how often `plan` runs while there is load; 0: every 5 ms */
    /** Makes the policy's state for a runtime of `nworkers` workers (`kinds[i]` is worker i's
     *  CHI_WORKER_* kind); NULL is a valid state. May be NULL. */
    void *(*create)(uint32_t nworkers, const uint32_t *kinds);
    /** Frees the state. May be NULL. */
    void (*destroy)(void *state);
    /** Writes up to `cap` moves into `moves`; returns how many, or -errno (no move made).
     *  Runs on the orchestrator thread. May be NULL (lanes stay where they are). */
    int (*plan)(void *state, const chi_worch_snapshot_t *snap, chi_lane_move_t *moves, uint32_t cap);
    /** Chooses the workers that drain a new client's `nrings` submission rings: writes
     *  `workers[0..nrings)`, among the low-latency workers when there are any; returns 0, or
     *  -errno to leave the runtime's default (round-robin by client slot). `snap` has no lanes.
     *  Runs on the registry thread. May be NULL. */
    int (*place_client)(void *state, const chi_worch_snapshot_t *snap, uint32_t slot, uint32_t nrings,
                        uint32_t *workers);
} chi_worch_ops_t;

#ifdef __cplusplus
}
#endif
#endif
