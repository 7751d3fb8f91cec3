/* Issue 12, case 8: periods are checked. A periodic task with a period outside
 * [runtime.min_period_us, runtime.max_period_s] (defaults 10 us, 604800 s), or on a method
 * without CHI_MF_PERIODIC_OK, completes at once with -CHI_EBADTASK:
 *   p1e19 pmax p0 p1ns  Md with a period of 10^19 ns, UINT64_MAX, 0, 1 ns
 *   admin               GetPoolId on the admin pool (not CHI_MF_PERIODIC_OK)
 *   io                  small_message Io (not CHI_MF_PERIODIC_OK)
 *   cancel              chi_task_cancel (ABI 1.2): a periodic Md at 1 ms, at the minimum period
 *                       and at the maximum one each stop with -ECANCELED; cancelling a task
 *                       never submitted, or of another client, is -EINVAL (skips without it)
 * A refused task that runs anyway is stopped (chi_task_cancel, else by destroying its pool)
 * before the verdict, so the case ends either way. */
#include "hostile.h"

static chi_client_t *c;
static uint64_t pool; /* the case's own pool: destroying it stops a periodic Md */

/* Stops a periodic task that should not be running; returns how often it ran. */
static uint32_t stop_it(chi_task_t *t, int destroyable) {
    uint32_t runs = T_LOAD(t->runs);
    if (chi_task_cancel) H_CHECK(chi_task_cancel(c, t));
    else if (destroyable) H_CHECK(chi_pool_destroy(c, pool));
    else h_verdict("wrong", "a refused periodic task ran %u times and cannot be stopped", runs);
    h_wait(c, t, 5 * T_SEC_NS, "stopping a periodic task");
    return runs;
}

static void refused(chi_task_t *t, const char *what, int destroyable) {
    H_CHECK(chi_task_submit(c, t));
    int rc = chi_task_wait(c, t, 3 * T_SEC_NS);
    if (rc == -ETIMEDOUT) {
        uint32_t runs = stop_it(t, destroyable);
        h_verdict("wrong", "%s was accepted: it ran %u times in 3 s", what, runs);
    }
    if (rc < 0) h_verdict(h_rc_verdict(rc, H.idle.pid), "%s: wait: rc %d", what, rc);
    if (t->rc != -CHI_EBADTASK)
        h_verdict("wrong", "%s: rc %d (%s), want -CHI_EBADTASK", what, t->rc, chi_strerror(t->rc));
    printf("%s: -CHI_EBADTASK after %u runs\n", what, t->runs);
    H_CHECK(chi_task_del(c, t));
}

static chi_task_t *periodic_md(uint64_t ns) {
    chi_task_t *t = h_md_task(c, pool, H_DQ(0), 0);
    chi_task_set_period_ns(t, ns);
    return t;
}

/* A valid periodic Md: it runs (at least `runs` times within 2 s) until cancelled. */
static void cancelled(uint64_t ns, uint32_t runs, const char *what) {
    chi_task_t *t = periodic_md(ns);
    int64_t t0 = t_now_ns();
    H_CHECK(chi_task_submit(c, t));
    while (T_LOAD(t->runs) < runs && t_now_ns() - t0 < 2 * T_SEC_NS) t_sleep_ms(1);
    T_ASSERT(T_LOAD(t->runs) >= runs && !chi_task_is_done(t), "%s: %u runs in 2 s, done %d",
             what, T_LOAD(t->runs), chi_task_is_done(t));
    H_CHECK(chi_task_cancel(c, t));
    if (h_wait(c, t, 2 * T_SEC_NS, "a cancelled periodic task") != -ECANCELED)
        h_verdict("wrong", "%s: cancelled, rc %d (%s), want -ECANCELED", what, t->rc,
                  chi_strerror(t->rc));
    uint32_t after = T_LOAD(t->runs);
    t_sleep_ms(50);
    T_ASSERT(T_LOAD(t->runs) == after, "%s ran again after its cancel completed", what);
    printf("%s: %u runs, then -ECANCELED\n", what, after);
    H_CHECK(chi_task_del(c, t));
}

static void cancel_cases(void) {
    chi_task_t *t;
    chi_client_t *o;
    if (!chi_task_cancel) {
        H_CHECK(chi_client_finalize(c));
        t_skip("chi_task_cancel is not in this library (ABI 1.2)");
    }
    cancelled(1000000, 3, "period 1 ms");
    cancelled(10000, 3, "period 10 us (runtime.min_period_us)");
    /* Whether a periodic task runs at once or after its first period is not specified. */
    cancelled(604800ull * T_SEC_NS, 0, "period 604800 s (runtime.max_period_s)");
    t = h_md_task(c, pool, H_DQ(0), 0);
    T_EQ_RC(chi_task_cancel(c, t), -EINVAL); /* never submitted */
    chi_task_set_period_ms(t, 5);
    H_CHECK(chi_task_submit(c, t));
    o = h_client();
    T_EQ_RC(chi_task_cancel(o, t), -EINVAL); /* not a task of o */
    H_CHECK(chi_client_finalize(o));
    H_CHECK(chi_task_cancel(c, t));
    T_EQ_RC(h_wait(c, t, 2 * T_SEC_NS, "cancel"), -ECANCELED);
    H_CHECK(chi_task_del(c, t));
}

int main(int argc, char **argv) {
    static const char *const modes[] = {"p1e19", "pmax", "p0", "p1ns", "admin", "io", "cancel",
                                        NULL};
    const char *mode = h_mode(argc, argv, modes);
    chi_domain_query_t dq = H_DQ(0);
    chi_task_t *t = NULL;
    void *b = NULL;

    h_begin("h_periodic", 55);
    c = h_client();
    pool = t_sm_pool(c, "hostile_periodic", 1);
    if (strcmp(mode, "p1e19") == 0)
        refused(periodic_md(10000000000000000000ull), "period 10^19 ns", 1);
    if (strcmp(mode, "pmax") == 0) refused(periodic_md(UINT64_MAX), "period UINT64_MAX ns", 1);
    if (strcmp(mode, "p0") == 0) refused(periodic_md(0), "period 0", 1);
    if (strcmp(mode, "p1ns") == 0) refused(periodic_md(1), "period 1 ns", 1);
    if (strcmp(mode, "admin") == 0) {
        H_CHECK(chi_task_new(c, CHI_ADMIN_POOL_ID, CHI_ADMIN_GET_POOL_ID,
                             sizeof(chi_admin_get_pool_id_task_t), &dq, &t));
        snprintf(((chi_admin_get_pool_id_task_t *)t)->name, CHI_NAME_MAX, "%s", H_POOL);
        chi_task_set_period_ms(t, 1);
        refused(t, "a periodic admin GetPoolId", 0);
    }
    if (strcmp(mode, "io") == 0) {
        chi_sm_io_task_t *io;
        H_CHECK(chi_buffer_alloc(c, 64, &b));
        H_CHECK(chi_task_new(c, pool, CHI_SM_IO, sizeof(chi_sm_io_task_t), &dq, &t));
        io = (chi_sm_io_task_t *)t;
        H_CHECK(chi_ptr_to_shm(c, b, &io->data));
        io->size = 64;
        io->io_flags = CHI_SM_IO_READ;
        chi_task_set_period_ms(t, 1);
        refused(t, "a periodic small_message Io", 1);
        H_CHECK(chi_buffer_free(c, b));
    }
    if (strcmp(mode, "cancel") == 0) cancel_cases();
    H_CHECK(chi_pool_destroy(c, pool));
    H_CHECK(chi_client_finalize(c));
    h_end(0);
    return T_EXIT_PASS;
}
