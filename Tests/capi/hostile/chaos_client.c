/* The chaos test's client (Tests/e2e/test_chaos.py), in one of two roles:
 *
 *   chaos_client worker THREADS   attaches and keeps THREADS threads submitting until it is
 *       killed: fire-and-forget Md (half), async Md of depth 0..3 and Io Writes from buffers
 *       of 4..64 KiB (a window of 32 per thread), and one periodic Md (10 ms) per process.
 *       It appends one byte to $CHAOS_READY_FILE once its threads run. SIGTERM ends it
 *       cleanly.
 *   chaos_client observer SECONDS  attaches and runs sync Md (depth 1, and a broadcast every
 *       100th) with a 2 s timeout until SIGTERM or SECONDS: any timeout or failure prints
 *       "hostile: hung|wrong: ..." and exits 1. Prints how many ran and the slowest.
 *
 * Both use the pool "chaos_md" (small_message, 2 containers). */
#include "hostile.h"

#include <fcntl.h>

#define WINDOW 32
#define POOL "chaos_md"

static chi_client_t *c;
static uint64_t pool;
static volatile sig_atomic_t stopping;

static void on_term(int sig) {
    (void)sig;
    stopping = 1;
}

typedef struct {
    chi_task_t *t;
    void *buf; /* an Io's buffer, freed with its task */
} pending_t;

static void retire(pending_t *p) {
    /* Errors are expected here (the daemon may be busy reclaiming others): only a task that
     * completed can be deleted, so one that did not is left behind, like a killed client's. */
    if (chi_task_wait(c, p->t, 5 * T_SEC_NS) == 0) chi_task_del(c, p->t);
    if (p->buf) chi_buffer_free(c, p->buf);
    p->t = NULL;
    p->buf = NULL;
}

static void *worker(void *arg) {
    uint64_t r = 0x9E3779B97F4A7C15ull * ((uint64_t)(intptr_t)arg + 1) ^ (uint64_t)getpid();
    pending_t win[WINDOW] = {{0}};
    for (unsigned i = 0; !stopping; i = (i + 1) % WINDOW) {
        uint64_t x = h_rand(&r);
        chi_domain_query_t dq = H_DQ(x % 2);
        chi_task_t *t = NULL;
        if (win[i].t) retire(&win[i]);
        /* Half fire-and-forget: a thread that need not wait is most often inside a submit,
         * where a kill leaves a half-pushed submission behind. */
        switch ((x >> 8) % 8) {
        case 0: case 1: case 2: case 3: /* fire-and-forget: never touched again */
            if (chi_task_new(c, pool, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &t) < 0) break;
            t->flags |= CHI_TASK_FIRE_AND_FORGET;
            if (chi_task_submit(c, t) < 0) chi_task_del(c, t);
            break;
        case 4: { /* Io Write from a buffer */
            size_t n = 4096 << ((x >> 16) % 5);
            chi_sm_io_task_t *io;
            if (chi_buffer_alloc(c, n, &win[i].buf) < 0) break;
            memset(win[i].buf, 0x3c, n);
            if (chi_task_new(c, pool, CHI_SM_IO, sizeof *io, &dq, &t) < 0) break;
            io = (chi_sm_io_task_t *)t;
            chi_ptr_to_shm(c, win[i].buf, &io->data);
            io->size = n;
            io->io_flags = CHI_SM_IO_WRITE;
            io->pattern = 0x3c;
            if (chi_task_submit(c, t) == 0) win[i].t = t;
            else chi_task_del(c, t);
            break;
        }
        default: /* async Md */
            if (chi_task_new(c, pool, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &t) < 0) break;
            ((chi_sm_md_task_t *)t)->depth = (uint32_t)((x >> 24) % 4);
            if (chi_task_submit(c, t) == 0) win[i].t = t;
            else chi_task_del(c, t);
        }
        if (!win[i].t && win[i].buf) {
            chi_buffer_free(c, win[i].buf);
            win[i].buf = NULL;
        }
    }
    for (unsigned i = 0; i < WINDOW; i++)
        if (win[i].t) retire(&win[i]);
    return NULL;
}

static int run_worker(int threads) {
    pthread_t th[16];
    chi_task_t *periodic = NULL;
    chi_domain_query_t dq = H_DQ(0);
    const char *ready = getenv("CHAOS_READY_FILE");
    int i;
    if (threads < 1 || threads > 16) threads = 3;
    c = t_attach();
    pool = t_sm_pool(c, POOL, 2);
    if (chi_task_new(c, pool, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &periodic) == 0) {
        chi_task_set_period_ms(periodic, 10);
        if (chi_task_submit(c, periodic) < 0) chi_task_del(c, periodic), periodic = NULL;
    }
    for (i = 0; i < threads; i++)
        T_ASSERT(pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i) == 0, "pthread");
    if (ready && *ready) {
        int fd = open(ready, O_WRONLY | O_APPEND | O_CREAT, 0600);
        if (fd >= 0 && write(fd, "r", 1) == 1) close(fd);
    }
    for (i = 0; i < threads; i++) pthread_join(th[i], NULL);
    if (periodic && chi_task_cancel) { /* a clean exit stops its periodic task if it can */
        if (chi_task_cancel(c, periodic) == 0 && chi_task_wait(c, periodic, T_WAIT_NS) == 0)
            chi_task_del(c, periodic);
    }
    T_OK(chi_client_finalize(c));
    return T_EXIT_PASS;
}

static int run_observer(int seconds) {
    int64_t end = t_now_ns() + (int64_t)seconds * T_SEC_NS, slowest = 0;
    long n = 0;
    c = t_attach();
    pool = t_sm_pool(c, POOL, 2);
    H_CHECK(h_read_stats(c, &H.idle)); /* the daemon's pid, for h_wait's verdicts */
    printf("observer: attached\n");
    while (!stopping && t_now_ns() < end) {
        int bcast = n % 100 == 99;
        chi_task_t *t = h_md_task(c, pool, bcast ? chi_dq_global_bcast() : H_DQ(n % 2), 1);
        int64_t t0 = t_now_ns();
        H_CHECK(chi_task_submit(c, t));
        int rc = h_wait(c, t, 2 * T_SEC_NS, "the observer's Md");
        int32_t ret = ((chi_sm_md_task_t *)t)->ret;
        if (rc != 0 || ret != (bcast ? 2 : 1))
            h_verdict("wrong", "the observer's Md %ld: rc %d (%s) ret %d", n, rc,
                      chi_strerror(rc), ret);
        H_CHECK(chi_task_del(c, t));
        if (t_now_ns() - t0 > slowest) slowest = t_now_ns() - t0;
        n++;
        t_sleep_ms(1);
    }
    T_OK(chi_client_finalize(c));
    printf("observer: %ld Md, slowest %.1f ms\n", n, (double)slowest / 1e6);
    printf("hostile: ok: observer\n");
    return T_EXIT_PASS;
}

int main(int argc, char **argv) {
    static const char *const modes[] = {"worker", "observer", NULL};
    const char *mode = h_mode(argc, argv, modes);
    int n = argc > 2 ? atoi(argv[2]) : 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGTERM, on_term);
    if (strcmp(mode, "worker") == 0) {
        t_watchdog("chaos worker", 60); /* a worker nobody kills still ends */
        return run_worker(n);
    }
    t_watchdog("chaos observer", (unsigned)(n > 0 ? n : 60) + 30);
    return run_observer(n > 0 ? n : 60);
}
