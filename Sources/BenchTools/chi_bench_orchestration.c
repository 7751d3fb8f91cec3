/* chi_bench_orchestration: a skewed load, with and without load balancing (`chimaera bench
 * orchestration` runs it against a runtime of two low-latency workers it starts).
 *
 * A small_message pool of 4 containers, one lane each, placed round-robin over the two
 * workers by worch_queue_round_robin. Client threads send Io writes (the module checks every
 * byte of a 1 MiB buffer: ~0.5 ms of CPU work on the lane's worker, so that the clients' own
 * CPU (they share the two cores) is small beside it) only to the containers whose lanes
 * start on one worker. Measured:
 *   rr_tasks_per_s        the throughput under worch_queue_round_robin (one worker busy)
 *   balanced_tasks_per_s  the throughput under worch_load_balance once it moved a lane
 *   balance_speedup       the ratio
 *   rebalance_ms          from switching to worch_load_balance to the hot lanes on two workers
 *   tasks_lost            tasks sent that did not complete once with rc 0 (must be 0)
 *
 * usage: chi_bench_orchestration --segment NAME [--seconds S]. Prints one JSON object. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chimaera/chimaera.h"
#include "chimaera/small_message.h"

#define CONTAINERS 4
#define THREADS 2
#define WINDOW 32
#define BUF (1 << 20)

static chi_client_t *c;
static uint64_t pool;
static uint32_t hot[CONTAINERS];
static int nhot;
static atomic_int phase; /* 0 wait, 1 run, 2 stop */
static atomic_uint_fast64_t done_ok, sent, failed;
static char stats[1 << 20];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int rc) {
    fprintf(stderr, "chi_bench_orchestration: %s: %s (%s)\n", what, chi_strerror(rc), chi_last_error());
    exit(1);
}

/* The worker each container's lane is on, from the statistics. */
static void lane_workers(int *worker) {
    int rc = chi_runtime_stats(c, stats, sizeof stats);
    if (rc < 0) die("chi_runtime_stats", rc);
    const char *p = strstr(stats, "\"name\":\"orch\"");
    if (!p) die("no pool orch in the statistics", -ENOENT);
    for (int k = 0; k < CONTAINERS; k++) worker[k] = -1;
    const char *end = strstr(p, "]}");
    for (const char *q = strstr(p, "\"container\":"); q && (!end || q < end); q = strstr(q + 1, "\"container\":")) {
        int cont = atoi(q + 12);
        const char *w = strstr(q, "\"worker\":");
        if (w && cont >= 0 && cont < CONTAINERS) worker[cont] = atoi(w + 9);
    }
}

static void *client(void *arg) {
    (void)arg;
    void *buf;
    int rc = chi_buffer_alloc(c, BUF, &buf);
    if (rc < 0) die("chi_buffer_alloc", rc);
    memset(buf, 0x5a, BUF);
    chi_shm_ptr_t shm;
    chi_ptr_to_shm(c, buf, &shm);
    chi_task_t *win[WINDOW];
    int head = 0, n = 0;
    uint64_t k = (uint64_t)(uintptr_t)&k;
    while (atomic_load(&phase) == 0) usleep(100);
    while (atomic_load(&phase) == 1 || n > 0) {
        if (atomic_load(&phase) == 1 && n < WINDOW) {
            chi_domain_query_t dq = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, hot[k++ % (uint64_t)nhot]);
            chi_task_t *t;
            if ((rc = chi_task_new(c, pool, CHI_SM_IO, sizeof(chi_sm_io_task_t), &dq, &t)) < 0) die("chi_task_new", rc);
            chi_sm_io_task_t *io = (chi_sm_io_task_t *)t;
            io->data = shm;
            io->size = BUF;
            io->io_flags = CHI_SM_IO_WRITE;
            io->pattern = 0x5a;
            if ((rc = chi_task_submit(c, t)) < 0) die("chi_task_submit", rc);
            atomic_fetch_add(&sent, 1);
            win[(head + n++) % WINDOW] = t;
            continue;
        }
        chi_task_t *t = win[head];
        head = (head + 1) % WINDOW;
        n--;
        if ((rc = chi_task_wait(c, t, 30000000000ll)) < 0) die("chi_task_wait", rc);
        if (t->rc == 0) atomic_fetch_add(&done_ok, 1);
        else atomic_fetch_add(&failed, 1);
        chi_task_del(c, t);
    }
    chi_buffer_free(c, buf);
    return NULL;
}

/* Runs the clients for `seconds` and returns the rate of tasks completed meanwhile. */
static double measure(double seconds) {
    uint64_t before = atomic_load(&done_ok), t0 = now_ns();
    usleep((useconds_t)(seconds * 1e6));
    return (double)(atomic_load(&done_ok) - before) * 1e9 / (double)(now_ns() - t0);
}

int main(int argc, char **argv) {
    const char *segment = getenv("CHIMAERA_SEGMENT");
    double seconds = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--segment") && i + 1 < argc) segment = argv[++i];
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: chi_bench_orchestration --segment NAME [--seconds S]\n");
            return 2;
        }
    }
    chi_client_opts_t o = {.size = sizeof o, .mode = CHI_MODE_ATTACH, .segment = segment, .connect_timeout_ms = 5000};
    int rc = chi_client_init(&o, &c);
    if (rc < 0) die("chi_client_init", rc);
    chi_pool_create_opts_t po = {.size = sizeof po, .module = "small_message", .name = "orch",
                                 .containers_per_node = CONTAINERS};
    if ((rc = chi_pool_create(c, &po, &pool)) < 0) die("chi_pool_create", rc);
    if ((rc = chi_runtime_set_worch(c, "worch_queue_round_robin")) < 0) die("set worch_queue_round_robin", rc);
    int worker[CONTAINERS];
    for (int tries = 0; tries < 200; tries++) {
        usleep(20000);
        lane_workers(worker);
        int a = 0;
        for (int k = 0; k < CONTAINERS; k++) a += worker[k] == worker[0];
        if (a == CONTAINERS / 2) break; /* round-robin: half of them beside container 0 */
    }
    for (int k = 0; k < CONTAINERS; k++)
        if (worker[k] == worker[0]) hot[nhot++] = (uint32_t)k;
    if (nhot < 2) die("the lanes are not spread over two workers", -EINVAL);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, client, NULL);
    atomic_store(&phase, 1);
    usleep(300000); /* warm up */
    double rr = measure(seconds);
    uint64_t t0 = now_ns();
    if ((rc = chi_runtime_set_worch(c, "worch_load_balance")) < 0) die("set worch_load_balance", rc);
    double rebalance_ms = -1;
    while (now_ns() - t0 < 10000000000ull) {
        lane_workers(worker);
        int spread = 0;
        for (int i = 1; i < nhot; i++) spread |= worker[hot[i]] != worker[hot[0]];
        if (spread) {
            rebalance_ms = (double)(now_ns() - t0) / 1e6;
            break;
        }
        usleep(5000);
    }
    usleep(200000);
    double balanced = measure(seconds);
    atomic_store(&phase, 2);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    uint64_t lost = atomic_load(&sent) - atomic_load(&done_ok);
    printf("{\"rr_tasks_per_s\":%.0f,\"balanced_tasks_per_s\":%.0f,\"balance_speedup\":%.2f,"
           "\"rebalance_ms\":%.1f,\"tasks_lost\":%" PRIu64 ",\"tasks_sent\":%" PRIu64 ",\"hot_lanes\":%d}\n",
           rr, balanced, rr > 0 ? balanced / rr : 0, rebalance_ms, lost, (uint64_t)atomic_load(&sent), nhot);
    chi_client_finalize(c);
    return lost != 0 || rebalance_ms < 0;
}
