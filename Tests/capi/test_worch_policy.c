/* test_worch_policy: the built-in work orchestrators decide from loads alone. Made-up snapshots
 * and a manual clock (5 ms a look), no runtime and no threads:
 *   skew     worker 0 busy with 2 lanes, worker 1 idle: one lane moves to worker 1 after the
 *            imbalance has lasted 3 looks, and then nothing moves back (hysteresis)
 *   burst    one busy look among quiet ones: nothing moves
 *   idle     nothing to do: nothing moves, for 100 looks
 *   stalled  worker 0 runs nothing while its lanes wait: a waiting lane moves
 *   classes  a low-latency lane never goes to a high-latency worker
 *   rr       worch_queue_round_robin puts lanes back round-robin within their class */
#include "test_common.h"

#include "chimaera/module.h"

const chi_module_vtable_t *chi_lb_entry(void);
const chi_module_vtable_t *chi_rr_entry(void);

#define LOOK_NS 5000000ull

typedef struct sim {
    const chi_worch_ops_t *ops;
    void *state;
    uint32_t nworkers;
    chi_worker_load_t workers[8];
    chi_lane_load_t lanes[16];
    uint32_t nlanes;
    uint64_t now;
} sim_t;

static void sim_init(sim_t *s, const chi_module_vtable_t *vt, uint32_t nworkers, const uint32_t *kinds) {
    memset(s, 0, sizeof *s);
    s->ops = vt->worch;
    T_ASSERT(s->ops && s->ops->plan, "%s is not a work orchestrator", vt->name);
    s->nworkers = nworkers;
    for (uint32_t i = 0; i < nworkers; i++) {
        s->workers[i].id = i;
        s->workers[i].kind = kinds[i];
    }
    s->state = s->ops->create ? s->ops->create(nworkers, kinds) : NULL;
    s->now = 1000000000ull;
}

static void lane(sim_t *s, uint32_t worker, uint32_t prio) {
    chi_lane_load_t *l = &s->lanes[s->nlanes];
    memset(l, 0, sizeof *l);
    l->pool_id = 7;
    l->container = s->nlanes;
    l->worker = worker;
    l->prio = prio;
    s->nlanes++;
}

/* Sets each lane's busy fraction (0..1) for this look and derives the workers'. */
static void load(sim_t *s, const double *busy) {
    for (uint32_t w = 0; w < s->nworkers; w++) {
        s->workers[w].busy_ns = 0;
        s->workers[w].tasks_run = 0;
        s->workers[w].queued = 0;
        s->workers[w].lanes = 0;
    }
    for (uint32_t i = 0; i < s->nlanes; i++) {
        chi_lane_load_t *l = &s->lanes[i];
        l->busy_ns = (uint64_t)(busy[i] * LOOK_NS);
        l->tasks_run = busy[i] > 0 ? 100 : 0;
        s->workers[l->worker].busy_ns += l->busy_ns;
        s->workers[l->worker].tasks_run += l->tasks_run;
        s->workers[l->worker].lanes++;
    }
}

/* One look: runs plan and applies its moves to the snapshot. Returns how many. */
static int look(sim_t *s) {
    chi_worch_snapshot_t snap = {sizeof snap, s->nworkers, s->now, LOOK_NS, s->workers, s->lanes, s->nlanes, 0};
    chi_lane_move_t moves[16];
    int n = s->ops->plan(s->state, &snap, moves, 16);
    T_ASSERT(n >= 0, "plan failed: %d", n);
    for (int i = 0; i < n; i++) {
        T_ASSERT(moves[i].lane < s->nlanes && moves[i].to_worker < s->nworkers, "a move out of range");
        s->lanes[moves[i].lane].worker = moves[i].to_worker;
    }
    s->now += LOOK_NS;
    return n;
}

static void sim_free(sim_t *s) {
    if (s->ops->destroy) s->ops->destroy(s->state);
}

static const uint32_t two_ll[] = {CHI_WORKER_LOW_LATENCY, CHI_WORKER_LOW_LATENCY};

static void skew(void) {
    sim_t s;
    sim_init(&s, chi_lb_entry(), 2, two_ll);
    lane(&s, 0, CHI_PRIO_LOW_LATENCY);
    lane(&s, 0, CHI_PRIO_LOW_LATENCY);
    lane(&s, 1, CHI_PRIO_LOW_LATENCY);
    const double hot[] = {0.45, 0.45, 0.0};
    int first = -1;
    for (int i = 0; i < 10 && first < 0; i++) {
        load(&s, hot);
        if (look(&s) > 0) first = i;
    }
    T_ASSERT(first >= 2, "moved after %d looks: the imbalance must last 3 looks first", first + 1);
    T_ASSERT(s.lanes[0].worker + s.lanes[1].worker == 1, "one of the two hot lanes should be on worker 1 now");
    /* Balanced now (each worker has one hot lane): nothing moves for 200 looks. */
    for (int i = 0; i < 200; i++) {
        load(&s, hot);
        T_ASSERT(look(&s) == 0, "a lane moved again on look %d: ping-pong", i);
    }
    sim_free(&s);
    puts("skew: one lane moved, then none");
}

static void burst(void) {
    sim_t s;
    sim_init(&s, chi_lb_entry(), 2, two_ll);
    lane(&s, 0, CHI_PRIO_LOW_LATENCY);
    lane(&s, 0, CHI_PRIO_LOW_LATENCY);
    const double quiet[] = {0.05, 0.05}, busy[] = {0.5, 0.5};
    for (int i = 0; i < 60; i++) {
        load(&s, i % 6 == 3 ? busy : quiet);
        T_ASSERT(look(&s) == 0, "a one-look burst moved a lane (look %d)", i);
    }
    sim_free(&s);
    puts("burst: nothing moved");
}

static void idle(void) {
    sim_t s;
    sim_init(&s, chi_lb_entry(), 2, two_ll);
    lane(&s, 0, CHI_PRIO_LOW_LATENCY);
    lane(&s, 0, CHI_PRIO_LOW_LATENCY);
    const double none[] = {0, 0};
    for (int i = 0; i < 100; i++) {
        load(&s, none);
        T_ASSERT(look(&s) == 0, "an idle runtime moved a lane");
    }
    sim_free(&s);
    puts("idle: nothing moved");
}

static void stalled(void) {
    sim_t s;
    sim_init(&s, chi_lb_entry(), 2, two_ll);
    lane(&s, 0, CHI_PRIO_LOW_LATENCY);
    lane(&s, 0, CHI_PRIO_LOW_LATENCY);
    lane(&s, 1, CHI_PRIO_LOW_LATENCY);
    int moved = -1;
    for (int i = 0; i < 20 && moved < 0; i++) {
        const double busy[] = {0, 0, 0.1};
        load(&s, busy);
        /* Worker 0 runs nothing (one long task): its lanes' tasks wait. */
        s.lanes[1].queued = 50;
        s.workers[0].queued = 50;
        s.workers[0].busy_ns = 0;
        s.workers[0].tasks_run = 0;
        if (look(&s) > 0) moved = i;
    }
    T_ASSERT(moved >= 0, "a stalled worker kept its waiting lanes");
    T_ASSERT(s.lanes[1].worker == 1, "the waiting lane (1) should have moved, not %s", s.lanes[0].worker == 1 ? "lane 0" : "nothing");
    sim_free(&s);
    puts("stalled: the waiting lane moved");
}

static void classes(void) {
    sim_t s;
    const uint32_t kinds[] = {CHI_WORKER_LOW_LATENCY, CHI_WORKER_HIGH_LATENCY};
    sim_init(&s, chi_lb_entry(), 2, kinds);
    lane(&s, 0, CHI_PRIO_LOW_LATENCY);
    lane(&s, 0, CHI_PRIO_LOW_LATENCY);
    const double hot[] = {0.5, 0.5};
    for (int i = 0; i < 50; i++) {
        load(&s, hot);
        look(&s);
        T_ASSERT(s.lanes[0].worker == 0 && s.lanes[1].worker == 0, "a low-latency lane went to a high-latency worker");
    }
    sim_free(&s);
    puts("classes: low-latency lanes stayed on the low-latency worker");
}

static void rr(void) {
    sim_t s;
    const uint32_t kinds[] = {CHI_WORKER_LOW_LATENCY, CHI_WORKER_LOW_LATENCY, CHI_WORKER_HIGH_LATENCY};
    sim_init(&s, chi_rr_entry(), 3, kinds);
    for (int i = 0; i < 4; i++) lane(&s, 0, CHI_PRIO_LOW_LATENCY);
    lane(&s, 0, CHI_PRIO_HIGH_LATENCY);
    const double some[] = {0.1, 0.1, 0.1, 0.1, 0.1};
    load(&s, some);
    look(&s);
    T_ASSERT(s.lanes[0].worker == 0 && s.lanes[1].worker == 1 && s.lanes[2].worker == 0 && s.lanes[3].worker == 1,
             "low-latency lanes are not round-robin over workers 0 and 1");
    T_ASSERT(s.lanes[4].worker == 2, "the high-latency lane is not on the high-latency worker");
    load(&s, some);
    T_ASSERT(look(&s) == 0, "round-robin kept moving lanes");
    sim_free(&s);
    puts("rr: round-robin within each class, then still");
}

int main(void) {
    t_watchdog("test_worch_policy", 30);
    skew();
    burst();
    idle();
    stalled();
    classes();
    rr();
    puts("test_worch_policy: ok");
    return T_EXIT_PASS;
}
