/* chi_test_seq: checks that each stream's tasks start in the order they were sent, whatever
 * worker their lane is on. Method Seq (10): IN stream, seq; OUT prev (the seq this stream's
 * previous task carried). Streams map to lanes (stream % lanes of group 0), so a stream
 * stays on one lane; lanes are what the runtime moves. Method Stats (11): OUT tasks and
 * out-of-order starts of the container. */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>

#include "chimaera/module.h"

#define LANES 4
#define STREAMS 256

typedef struct seq_task {
    chi_task_t hdr;
    uint32_t stream;
    uint32_t pad;
    uint64_t seq;
    uint64_t prev;
} seq_task_t;

typedef struct stats_task {
    chi_task_t hdr;
    uint64_t tasks;
    uint64_t disorder;
} stats_task_t;

typedef struct seq_state {
    /* Each stream is run by one lane at a time; the runtime's hand-off orders its moves. */
    uint64_t last[STREAMS];
    atomic_uint_fast64_t tasks, disorder;
} seq_state_t;

#define F(type, m, t, d) {#m, (uint32_t)offsetof(type, m), (uint32_t)sizeof(((type *)0)->m), t, d, -1, 0}
static const chi_field_desc_t seq_fields[] = {
    F(seq_task_t, stream, CHI_FT_U32, CHI_DIR_IN),
    F(seq_task_t, seq, CHI_FT_U64, CHI_DIR_IN),
    F(seq_task_t, prev, CHI_FT_U64, CHI_DIR_OUT),
};
static const chi_field_desc_t stats_fields[] = {
    F(stats_task_t, tasks, CHI_FT_U64, CHI_DIR_OUT),
    F(stats_task_t, disorder, CHI_FT_U64, CHI_DIR_OUT),
};
static const chi_method_desc_t methods[] = {
    {10, sizeof(seq_task_t), 0, 3, "Seq", seq_fields, NULL},
    {11, sizeof(stats_task_t), 0, 2, "Stats", stats_fields, NULL},
};

static int seq_create(chi_container_t *c, const void *p, uint32_t n, void **state) {
    (void)p;
    (void)n;
    seq_state_t *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    int rc = chi_container_add_lanes(c, 0, LANES, CHI_PRIO_LOW_LATENCY);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *state = s;
    return 0;
}

static void seq_destroy(chi_container_t *c, void *state) {
    (void)c;
    free(state);
}

static int seq_run(void *state, chi_task_t *task, chi_rctx_t *rctx) {
    (void)rctx;
    seq_state_t *s = state;
    if (task->method == 10) {
        seq_task_t *t = (seq_task_t *)task;
        uint32_t st = t->stream % STREAMS;
        t->prev = s->last[st];
        if (t->seq != s->last[st] + 1) atomic_fetch_add(&s->disorder, 1);
        s->last[st] = t->seq;
        atomic_fetch_add(&s->tasks, 1);
        return 0;
    }
    if (task->method == 11) {
        stats_task_t *t = (stats_task_t *)task;
        t->tasks = atomic_load(&s->tasks);
        t->disorder = atomic_load(&s->disorder);
        return 0;
    }
    return -CHI_ENOMETHOD;
}

static int seq_lane(void *state, chi_container_t *c, const chi_task_t *task) {
    (void)state;
    uint32_t stream = task->method == 10 ? ((const seq_task_t *)task)->stream : 0;
    return chi_lane_by_hash(c, 0, stream);
}

static const chi_module_vtable_t vt = {
    .size = sizeof(chi_module_vtable_t),
    .abi_major = CHI_ABI_MAJOR,
    .abi_minor = CHI_ABI_MINOR,
    .name = "chi_test_seq",
    .version = 1,
    .nmethods = 2,
    .methods = methods,
    .create = seq_create,
    .destroy = seq_destroy,
    .run = seq_run,
    .map_task_to_lane = seq_lane,
};

CHI_MODULE_EXPORT(&vt)
