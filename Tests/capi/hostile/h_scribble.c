/* Issue 12, case 5: a client rewrites the header of its tasks while they are in flight.
 * Two threads submit rounds of tasks; a third keeps writing hostile values into the header of
 * whichever is in flight: size, method, pool_id, task_id, dom_query, prio, flags (never
 * fire-and-forget: the task would leave our hands), period_ns (only values outside the
 * allowed range, so a task made periodic is refused, not run forever), lane_hash, parent and
 * the reserved words. Before waiting, a submitter puts its header back as it was.
 *   md     Md of depth 2 (the method waits on subtasks while the header changes)
 *   bcast  broadcast Md of depth 1 (the runtime copies the task into replicas)
 *   admin  GetPoolId, Flush and PollStats (with a buffer) on the admin pool
 * The daemon must survive, every task must complete (with any status), and a task the
 * scribbler never touched must be answered correctly. */
#include "hostile.h"

#define NSUB 2
#define PER_SUB 24
#define NSLOT (NSUB * PER_SUB)
#define RUN_NS (3 * T_SEC_NS)
#define STATS_CAP (64 * 1024)

enum { EMPTY, LIVE, BUSY }; /* slot states: only LIVE slots are written by the scribbler */

typedef struct {
    chi_task_t *t;
    unsigned state, touched;
    void *buf; /* admin: PollStats' buffer */
} slot_t;

static slot_t slots[NSLOT];
static const char *mode;
static chi_client_t *c;
static volatile int stop;
static uint64_t seg_size;
static long counts[3]; /* untouched ok, touched and rc >= 0, touched and rc < 0 */

static chi_task_t *make(int i, uint64_t *r) {
    chi_task_t *t = NULL;
    chi_domain_query_t dq = H_DQ(h_rand(r) % 2);
    if (strcmp(mode, "md") == 0) return h_md_task(c, H.pool, dq, 2);
    if (strcmp(mode, "bcast") == 0) return h_md_task(c, H.pool, chi_dq_global_bcast(), 1);
    dq = H_DQ(0);
    switch (i % 3) {
    case 0:
        H_CHECK(chi_task_new(c, CHI_ADMIN_POOL_ID, CHI_ADMIN_GET_POOL_ID,
                             sizeof(chi_admin_get_pool_id_task_t), &dq, &t));
        snprintf(((chi_admin_get_pool_id_task_t *)t)->name, CHI_NAME_MAX, "%s", H_POOL);
        break;
    case 1:
        H_CHECK(chi_task_new(c, CHI_ADMIN_POOL_ID, CHI_ADMIN_FLUSH,
                             sizeof(chi_admin_flush_task_t), &dq, &t));
        break;
    default:
        H_CHECK(chi_task_new(c, CHI_ADMIN_POOL_ID, CHI_ADMIN_POLL_STATS,
                             sizeof(chi_admin_poll_stats_task_t), &dq, &t));
        H_CHECK(chi_ptr_to_shm(c, slots[i].buf, &((chi_admin_poll_stats_task_t *)t)->buf));
        ((chi_admin_poll_stats_task_t *)t)->cap = STATS_CAP;
    }
    return t;
}

/* Whether an untouched task was answered correctly. */
static int correct(int i, chi_task_t *t) {
    if (t->rc < 0) return 0;
    if (strcmp(mode, "md") == 0) return ((chi_sm_md_task_t *)t)->ret == 1;
    if (strcmp(mode, "bcast") == 0) return ((chi_sm_md_task_t *)t)->ret == 2;
    if (i % 3 == 0) return ((chi_admin_get_pool_id_task_t *)t)->pool_id == H.pool;
    if (i % 3 == 2) return ((chi_admin_poll_stats_task_t *)t)->len > 0;
    return 1;
}

/* The header fields the scribbler writes, put back from a copy taken after submit. */
static void restore(chi_task_t *t, const chi_task_t *h) {
    t->size = h->size;
    t->method = h->method;
    t->pool_id = h->pool_id;
    t->task_id = h->task_id;
    t->dom_query = h->dom_query;
    t->prio = h->prio;
    t->flags = h->flags;
    t->period_ns = h->period_ns;
    t->lane_hash = h->lane_hash;
    t->parent = h->parent;
    memcpy(t->reserved, h->reserved, sizeof t->reserved);
}

static void *submitter(void *arg) {
    int first = (int)(intptr_t)arg * PER_SUB, i;
    uint64_t r = 0x2545F4914F6CDD1Dull * (uint64_t)(first + 1);
    chi_task_t saved[PER_SUB];
    int64_t end = t_now_ns() + RUN_NS;
    while (t_now_ns() < end) {
        for (i = first; i < first + PER_SUB; i++) {
            slot_t *s = &slots[i];
            s->t = make(i, &r);
            s->touched = 0;
            H_CHECK(chi_task_submit(c, s->t));
            saved[i - first] = *s->t;
            __atomic_store_n(&s->state, LIVE, __ATOMIC_RELEASE);
        }
        t_sleep_ms(1);
        for (i = first; i < first + PER_SUB; i++) {
            slot_t *s = &slots[i];
            unsigned live = LIVE;
            while (!__atomic_compare_exchange_n(&s->state, &live, EMPTY, 0, __ATOMIC_ACQ_REL,
                                                __ATOMIC_ACQUIRE))
                live = LIVE; /* BUSY: the scribbler is writing; it gives it back at once */
            restore(s->t, &saved[i - first]);
            if (chi_task_wait(c, s->t, 5 * T_SEC_NS) == -ETIMEDOUT && chi_task_cancel &&
                chi_task_cancel(c, s->t) == 0)
                printf("slot %d: cancelled after 5 s (made periodic?)\n", i);
            h_wait(c, s->t, 2 * T_SEC_NS, "a scribbled task");
            if (!s->touched)
                T_ASSERT(correct(i, s->t), "slot %d: an untouched task was answered rc %d (%s)",
                         i, s->t->rc, chi_strerror(s->t->rc));
            __atomic_fetch_add(&counts[!s->touched ? 0 : s->t->rc >= 0 ? 1 : 2], 1,
                               __ATOMIC_RELAXED);
            H_CHECK(chi_task_del(c, s->t));
        }
    }
    return NULL;
}

/* One hostile write into the header of t. */
static void scribble(chi_task_t *t, uint64_t *r) {
    static const uint32_t sizes[] = {0, 1, 127, 128, 135, 4096, 1u << 20, UINT32_MAX};
    static const uint32_t md_methods[] = {9999, UINT32_MAX, 6, 99, CHI_SM_IO};
    static const uint32_t admin_methods[] = {9999, UINT32_MAX, 6, CHI_ADMIN_GET_POOL_ID,
                                             CHI_ADMIN_FLUSH, CHI_ADMIN_POLL_STATS};
    static const uint64_t periods[] = {0, 1, 5, 10000000000000000000ull, UINT64_MAX};
    static const uint32_t dq_flags[] = {0, UINT32_MAX, CHI_DQ_DIRECT | CHI_DQ_ID,
                                        CHI_DQ_GLOBAL | CHI_DQ_RANGE | CHI_DQ_BCAST,
                                        CHI_DQ_DYNAMIC, CHI_DQ_LOCAL | CHI_DQ_HASH};
    static const uint32_t subs[] = {0, 1, 2, 3, 99, UINT32_MAX};
    uint64_t x = h_rand(r), v = h_rand(r);
    int admin = strcmp(mode, "admin") == 0;
    switch (x % 12) {
    case 0: t->size = sizes[v % 8]; break;
    case 1: t->method = admin ? admin_methods[v % 6] : md_methods[v % 5]; break;
    case 2: {
        const uint64_t pools[] = {0, CHI_ADMIN_POOL_ID, H.pool, H.pool + 1, UINT64_MAX, 1ull << 40};
        t->pool_id = pools[v % 6];
        break;
    }
    case 3: t->task_id = v; break;
    case 4:
        t->dom_query = chi_dq_make(dq_flags[v % 6], subs[(v >> 8) % 6], h_rand(r) % 5,
                                   (v >> 16) % 3 == 0 ? UINT64_MAX : (v >> 16) % 4);
        break;
    case 5: t->prio = (uint32_t)v; break;
    case 6: t->flags = (uint32_t)v & ~CHI_TASK_FIRE_AND_FORGET; break;
    case 7: t->period_ns = periods[v % 5]; break;
    case 8: t->lane_hash = (uint32_t)v; break;
    case 9: /* another task of ours, or anywhere in the segment */
        if ((v & 1) || chi_ptr_to_shm(c, slots[v % NSLOT].t, &t->parent) < 0) {
            t->parent.segment = (uint32_t)(v >> 40) % 2;
            t->parent.offset = (v % seg_size) & ~63ull;
        }
        break;
    default: t->reserved[v % 4] = (v & 1) ? h_rand(r) : (uint64_t)(uintptr_t)&slots[v % NSLOT];
    }
}

static void *scribbler(void *arg) {
    uint64_t r = 0x9E3779B97F4A7C15ull;
    long writes = 0;
    (void)arg;
    while (!stop) {
        slot_t *s = &slots[h_rand(&r) % NSLOT];
        unsigned live = LIVE;
        if (!__atomic_compare_exchange_n(&s->state, &live, BUSY, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_RELAXED))
            continue;
        scribble(s->t, &r);
        s->touched = 1;
        writes++;
        __atomic_store_n(&s->state, LIVE, __ATOMIC_RELEASE);
    }
    printf("scribbler: %ld writes\n", writes);
    return NULL;
}

int main(int argc, char **argv) {
    static const char *const modes[] = {"md", "bcast", "admin", NULL};
    pthread_t sub[NSUB], scr;
    int i;

    mode = h_mode(argc, argv, modes);
    h_begin("h_scribble", 55);
    seg_size = (uint64_t)H.idle.shm_size;
    c = h_client();
    for (i = 0; i < NSLOT && strcmp(mode, "admin") == 0; i++)
        H_CHECK(chi_buffer_alloc(c, STATS_CAP, &slots[i].buf));
    T_ASSERT(pthread_create(&scr, NULL, scribbler, NULL) == 0, "pthread_create");
    for (i = 0; i < NSUB; i++)
        T_ASSERT(pthread_create(&sub[i], NULL, submitter, (void *)(intptr_t)i) == 0, "pthread");
    for (i = 0; i < NSUB; i++) pthread_join(sub[i], NULL);
    stop = 1;
    pthread_join(scr, NULL);
    printf("%s: %ld untouched tasks correct; scribbled: %ld rc >= 0, %ld rc < 0\n", mode,
           counts[0], counts[1], counts[2]);
    T_ASSERT(counts[1] + counts[2] > 0, "the scribbler never caught a task in flight");
    for (i = 0; i < NSLOT && slots[i].buf; i++) H_CHECK(chi_buffer_free(c, slots[i].buf));
    H_CHECK(chi_client_finalize(c));
    h_end(0);
    return T_EXIT_PASS;
}
