/* chi_bench_client: a C client that measures a running Chimaera runtime with small_message
 * Md tasks: synchronous round-trip latency, then asynchronous throughput with a window of
 * tasks in flight per thread.
 *
 *   chi_bench_client [--segment NAME] [--sync N] [--async N] [--threads 1,4] [--window W]
 *                    [--depth D] [--samples]
 *
 * Prints one JSON object line; with --samples, then the synchronous samples on a second.
 * A count of 0 skips that part. Every wait has a finite timeout, so a stuck runtime ends the
 * run with exit status 1 instead of hanging the bench. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chimaera/chimaera.h"
#include "chimaera/small_message.h"

#include "bench_samples.h"

#define WAIT_TIMEOUT_NS 10000000000ll
#define SYNC_WARMUP 1000u
#define MAX_THREAD_COUNTS 16
#define MAX_THREADS 256

typedef struct bench_opts {
    const char *segment;
    uint64_t sync_n;
    uint64_t async_n;
    uint32_t threads[MAX_THREAD_COUNTS];
    uint32_t nthreads;
    uint32_t window;
    uint32_t depth;
    int samples;
} bench_opts_t;

/* One async worker. err is filled by the worker itself because chi_last_error() is per
 * thread: main could not read it after the fact. */
typedef struct worker {
    pthread_t thread;
    chi_client_t *client;
    uint64_t pool_id;
    uint32_t depth;
    uint32_t window;
    uint64_t share;
    char err[512];
} worker_t;

static pthread_barrier_t g_start;
static atomic_int g_failed; /* any worker failed: the others stop early */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Formats a chi_* failure with both the code's name and the thread's detailed message. */
static void format_err(char *buf, size_t cap, const char *what, int rc) {
    snprintf(buf, cap, "%s: %s (%s)", what, chi_strerror(rc), chi_last_error());
}

static void fail(const char *what, int rc) {
    char buf[512];
    format_err(buf, sizeof(buf), what, rc);
    fprintf(stderr, "chi_bench_client: %s\n", buf);
    exit(1);
}

/* Allocates and fills an Md task; returns 0 or a chi_* error. */
static int md_new(chi_client_t *client, uint64_t pool_id, uint32_t depth, chi_task_t **out) {
    int rc = chi_task_new(client, pool_id, CHI_SM_MD, sizeof(chi_sm_md_task_t), NULL, out);
    if (rc < 0) return rc;
    ((chi_sm_md_task_t *)*out)->depth = depth;
    return 0;
}

/* Checks a completed Md task. Returns 0, the task's negative rc, or 1 for a wrong ret. */
static int md_check(const chi_task_t *t) {
    if (t->rc < 0) return t->rc;
    return ((const chi_sm_md_task_t *)t)->ret == 1 ? 0 : 1;
}

/* One synchronous Md, as chi_sm_md does it but with a finite wait. */
static void md_sync(chi_client_t *client, uint64_t pool_id, uint32_t depth) {
    chi_task_t *t;
    int rc = md_new(client, pool_id, depth, &t);
    if (rc < 0) fail("chi_task_new", rc);
    rc = chi_task_call(client, t, WAIT_TIMEOUT_NS);
    if (rc < 0) fail("chi_task_call", rc);
    if (((chi_sm_md_task_t *)t)->ret != 1) {
        fprintf(stderr, "chi_bench_client: Md returned ret=%" PRId32 ", expected 1\n",
                ((chi_sm_md_task_t *)t)->ret);
        exit(1);
    }
    rc = chi_task_del(client, t);
    if (rc < 0) fail("chi_task_del", rc);
}

/* Records a worker's failure; returns -1 so callers can `return worker_fail(...)`. */
static int worker_fail(worker_t *w, const char *what, int rc) {
    if (rc > 0)
        snprintf(w->err, sizeof(w->err), "%s: returned a ret other than 1", what);
    else
        format_err(w->err, sizeof(w->err), what, rc);
    atomic_store(&g_failed, 1);
    return -1;
}

/* Runs the worker's share keeping `inflight` tasks in flight, always waiting on the oldest.
 * A finished task is deleted and a new one allocated rather than resubmitted: the header
 * does not say a completed task may be submitted again. Returns 0, or -1 after recording
 * the failure. On failure the tasks still in flight are abandoned: the process exits. */
static int worker_loop(worker_t *w, chi_task_t **tasks, uint64_t inflight) {
    uint64_t submitted = 0;
    int rc;
    for (; submitted < inflight; submitted++)
        if ((rc = chi_task_submit(w->client, tasks[submitted])) < 0)
            return worker_fail(w, "chi_task_submit", rc);
    for (uint64_t done = 0, slot = 0; done < w->share; done++, slot = (slot + 1) % inflight) {
        if (atomic_load_explicit(&g_failed, memory_order_relaxed)) return -1;
        chi_task_t *t = tasks[slot];
        if ((rc = chi_task_wait(w->client, t, WAIT_TIMEOUT_NS)) < 0)
            return worker_fail(w, "chi_task_wait", rc);
        if ((rc = md_check(t)) != 0) return worker_fail(w, "Md", rc);
        if ((rc = chi_task_del(w->client, t)) < 0) return worker_fail(w, "chi_task_del", rc);
        if (submitted == w->share) continue;
        if ((rc = md_new(w->client, w->pool_id, w->depth, &tasks[slot])) < 0)
            return worker_fail(w, "chi_task_new", rc);
        if ((rc = chi_task_submit(w->client, tasks[slot])) < 0)
            return worker_fail(w, "chi_task_submit", rc);
        submitted++;
    }
    return 0;
}

static void *worker_main(void *arg) {
    worker_t *w = arg;
    uint64_t inflight = w->share < w->window ? w->share : w->window;
    chi_task_t **tasks = calloc(inflight ? inflight : 1, sizeof(*tasks));
    if (tasks == NULL) {
        snprintf(w->err, sizeof(w->err), "out of memory");
        atomic_store(&g_failed, 1);
    }
    /* Allocation happens before the start barrier, so the timed part is steady state. Every
     * worker reaches the barrier, failed or not, or main would wait there forever. */
    for (uint64_t k = 0; tasks != NULL && k < inflight && !atomic_load(&g_failed); k++) {
        int rc = md_new(w->client, w->pool_id, w->depth, &tasks[k]);
        if (rc < 0) worker_fail(w, "chi_task_new", rc);
    }
    pthread_barrier_wait(&g_start);
    if (!atomic_load(&g_failed)) worker_loop(w, tasks, inflight);
    free(tasks);
    return NULL;
}

/* Returns tasks per second for `threads` workers sharing opts->async_n tasks. */
static double run_async(chi_client_t *client, uint64_t pool_id, const bench_opts_t *o,
                        uint32_t threads) {
    worker_t *w = calloc(threads, sizeof(*w));
    if (w == NULL || pthread_barrier_init(&g_start, NULL, threads + 1) != 0) {
        fprintf(stderr, "chi_bench_client: cannot set up %" PRIu32 " threads\n", threads);
        exit(1);
    }
    for (uint32_t i = 0; i < threads; i++) {
        w[i].client = client;
        w[i].pool_id = pool_id;
        w[i].depth = o->depth;
        w[i].window = o->window;
        w[i].share = o->async_n / threads + (i < o->async_n % threads ? 1 : 0);
        /* Workers already started wait at the barrier; exiting ends them with the process. */
        if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]) != 0) {
            fprintf(stderr, "chi_bench_client: pthread_create failed\n");
            exit(1);
        }
    }
    pthread_barrier_wait(&g_start);
    uint64_t t0 = now_ns();
    for (uint32_t i = 0; i < threads; i++) pthread_join(w[i].thread, NULL);
    uint64_t t1 = now_ns();
    pthread_barrier_destroy(&g_start);
    if (atomic_load(&g_failed)) {
        for (uint32_t i = 0; i < threads; i++)
            if (w[i].err[0] != '\0') fprintf(stderr, "chi_bench_client: %s\n", w[i].err);
        exit(1);
    }
    free(w);
    return (double)o->async_n * 1e9 / (double)(t1 - t0);
}

static void bad_arg(const char *flag, const char *why) {
    fprintf(stderr, "chi_bench_client: %s %s\n", flag, why);
    exit(2);
}

static uint64_t parse_u64(const char *flag, const char *arg, uint64_t min, uint64_t max) {
    char *end;
    errno = 0;
    unsigned long long v = arg ? strtoull(arg, &end, 10) : 0;
    if (arg == NULL || arg[0] == '-' || errno != 0 || end == arg || *end != '\0' || v < min ||
        v > max) {
        fprintf(stderr, "chi_bench_client: %s wants a number from %" PRIu64 " to %" PRIu64 "\n",
                flag, min, max);
        exit(2);
    }
    return v;
}

/* Parses "1,4,8" into o->threads; each count appears once, as it names a JSON key. */
static void parse_threads(bench_opts_t *o, const char *arg) {
    char buf[256];
    if (arg == NULL || strlen(arg) >= sizeof(buf)) bad_arg("--threads", "wants a list like 1,4");
    strcpy(buf, arg);
    o->nthreads = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        uint32_t t = (uint32_t)parse_u64("--threads", tok, 1, MAX_THREADS);
        for (uint32_t i = 0; i < o->nthreads; i++)
            if (o->threads[i] == t) bad_arg("--threads", "lists a count twice");
        if (o->nthreads == MAX_THREAD_COUNTS) bad_arg("--threads", "lists too many counts");
        o->threads[o->nthreads++] = t;
    }
    if (o->nthreads == 0) bad_arg("--threads", "wants a list like 1,4");
}

static void parse_args(bench_opts_t *o, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(f, "--segment") == 0 && v)
            o->segment = v;
        else if (strcmp(f, "--sync") == 0)
            o->sync_n = parse_u64(f, v, 0, 1000000000);
        else if (strcmp(f, "--async") == 0)
            o->async_n = parse_u64(f, v, 0, 1000000000000ull);
        else if (strcmp(f, "--threads") == 0)
            parse_threads(o, v);
        else if (strcmp(f, "--window") == 0)
            o->window = (uint32_t)parse_u64(f, v, 1, 65536);
        else if (strcmp(f, "--depth") == 0)
            o->depth = (uint32_t)parse_u64(f, v, 0, UINT32_MAX);
        else if (strcmp(f, "--samples") == 0) {
            o->samples = 1;
            continue;
        } else {
            fprintf(stderr, "usage: chi_bench_client [--segment NAME] [--sync N] [--async N]"
                            " [--threads 1,4] [--window W] [--depth D] [--samples]\n");
            exit(2);
        }
        i++;
    }
}

int main(int argc, char **argv) {
    bench_opts_t o = {.sync_n = 100000, .async_n = 1000000, .window = 256};
    parse_threads(&o, "1,4");
    parse_args(&o, argc, argv);

    chi_client_opts_t copts;
    memset(&copts, 0, sizeof(copts));
    copts.size = sizeof(copts);
    copts.mode = CHI_MODE_AUTO;
    copts.segment = o.segment;
    chi_client_t *client;
    int rc = chi_client_init(&copts, &client);
    if (rc < 0) fail("chi_client_init", rc);

    chi_pool_create_opts_t popts;
    memset(&popts, 0, sizeof(popts));
    popts.size = sizeof(popts);
    popts.containers_per_node = 1;
    popts.module = CHI_SM_MODULE_NAME;
    popts.name = "bench_sm";
    uint64_t pool_id;
    rc = chi_pool_create(client, &popts, &pool_id);
    if (rc < 0) fail("chi_pool_create", rc);

    for (uint32_t i = 0; i < SYNC_WARMUP; i++) md_sync(client, pool_id, o.depth);
    uint64_t *rtt = malloc((o.sync_n ? o.sync_n : 1) * sizeof(*rtt));
    if (rtt == NULL) {
        fprintf(stderr, "chi_bench_client: out of memory for %" PRIu64 " samples\n", o.sync_n);
        return 1;
    }
    /* The whole call is timed, allocation and free included, as an application pays it. */
    for (uint64_t i = 0; i < o.sync_n; i++) {
        uint64_t t0 = now_ns();
        md_sync(client, pool_id, o.depth);
        rtt[i] = now_ns() - t0;
    }
    qsort(rtt, o.sync_n, sizeof(*rtt), cmp_u64);

    double rate[MAX_THREAD_COUNTS];
    for (uint32_t i = 0; o.async_n > 0 && i < o.nthreads; i++)
        rate[i] = run_async(client, pool_id, &o, o.threads[i]);

    rc = chi_client_finalize(client);
    if (rc < 0) fail("chi_client_finalize", rc);

    const char *sep = "";
    putchar('{');
    if (o.sync_n > 0) {
        printf("\"sync_rtt_ns_p50\":%" PRIu64 ",\"sync_rtt_ns_p99\":%" PRIu64
               ",\"sync_rtt_ns_p999\":%" PRIu64,
               percentile(rtt, o.sync_n, 0.50), percentile(rtt, o.sync_n, 0.99),
               percentile(rtt, o.sync_n, 0.999));
        sep = ",";
    }
    for (uint32_t i = 0; o.async_n > 0 && i < o.nthreads; i++, sep = ",")
        printf("%s\"async_tasks_per_s_%" PRIu32 "t\":%.0f", sep, o.threads[i], rate[i]);
    printf("}\n");
    if (o.samples && o.sync_n > 0) print_samples(rtt, o.sync_n);
    free(rtt);
    return 0;
}
