/* chi_bench_scale: how the cost of the task path and of the admin path grows with work, each
 * figure beside the single-unit figure of the same run (`chimaera bench scale` runs it
 * against a runtime it starts).
 *
 *   clients_N_tasks_per_s        async Md (a window of 64 per process), N client processes
 *                                together, N = 1, 4, 16, 64
 *   clients_N_sync_tasks_per_s   sync Md, the same processes
 *   pools_N_create_us_p50        creating a pool when N exist (N = 1, 100, 10000)
 *   pools_N_md_ns_p50            sync Md to the newest of N pools
 *   pool_4096_create_ms          a pool of 4,096 containers on this node
 *   pool_4096_bcast_us_p50       a broadcast Md over its 4,096 containers
 *   cycles_10000_s               10,000 create/destroy cycles; then a create must still work
 *
 * usage: chi_bench_scale --segment NAME [--seconds S] [--quick]
 * Clients are processes forked before this one attaches. Prints one JSON object. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chimaera/chimaera.h"
#include "chimaera/small_message.h"

#define WINDOW 64
#define WAIT_NS (30 * 1000000000ll)

static const char *segment;
static double seconds = 1.0;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int rc) {
    fprintf(stderr, "chi_bench_scale: %s: %s (%s)\n", what, chi_strerror(rc), chi_last_error());
    exit(1);
}

static chi_client_t *attach(void) {
    chi_client_opts_t o = {.size = sizeof o, .mode = CHI_MODE_ATTACH, .segment = segment,
                           .connect_timeout_ms = 5000};
    chi_client_t *c;
    int rc = chi_client_init(&o, &c);
    if (rc < 0) die("chi_client_init", rc);
    return c;
}

static uint64_t md_pool(chi_client_t *c, const char *name, uint32_t containers) {
    chi_pool_create_opts_t o = {.size = sizeof o, .module = "small_message", .name = name,
                                .containers_per_node = containers};
    uint64_t id;
    int rc = chi_pool_create(c, &o, &id);
    if (rc < 0) die("chi_pool_create", rc);
    return id;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t p50(uint64_t *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_u64);
    return v[n / 2];
}

/* ---- N client processes ------------------------------------------------------------- */

typedef struct shared {
    atomic_int ready, go, done;
    atomic_uint_fast64_t async_tasks, sync_tasks;
    atomic_int failed;
} shared_t;

static void client_main(shared_t *sh, uint64_t pool) {
    chi_client_t *c = attach();
    chi_domain_query_t dq = chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, (uint64_t)getpid());
    chi_task_t *win[WINDOW];
    atomic_fetch_add(&sh->ready, 1);
    while (!atomic_load(&sh->go)) usleep(100);
    uint64_t end = now_ns() + (uint64_t)(seconds * 1e9), n = 0;
    int k = 0, inflight = 0;
    while (now_ns() < end || inflight > 0) {
        if (now_ns() < end && inflight < WINDOW) {
            if (chi_task_new(c, pool, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &win[(k + inflight) % WINDOW]) < 0 ||
                chi_task_submit(c, win[(k + inflight) % WINDOW]) < 0) {
                atomic_store(&sh->failed, 1);
                break;
            }
            inflight++;
            continue;
        }
        chi_task_t *t = win[k];
        if (chi_task_wait(c, t, WAIT_NS) < 0 || t->rc < 0) {
            atomic_store(&sh->failed, 1);
            break;
        }
        chi_task_del(c, t);
        k = (k + 1) % WINDOW;
        inflight--;
        n++;
    }
    atomic_fetch_add(&sh->async_tasks, n);
    /* Then sync, as long. */
    atomic_fetch_add(&sh->done, 1);
    while (atomic_load(&sh->go) != 2) usleep(100);
    end = now_ns() + (uint64_t)(seconds * 1e9);
    n = 0;
    int32_t ret;
    while (now_ns() < end) {
        if (chi_sm_md(c, pool, dq, 0, &ret) < 0 || ret != 1) {
            atomic_store(&sh->failed, 1);
            break;
        }
        n++;
    }
    atomic_fetch_add(&sh->sync_tasks, n);
    chi_client_finalize(c);
    _exit(0);
}

static void clients(int n, uint64_t pool, double *async_rate, double *sync_rate) {
    shared_t *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) die("mmap", -errno);
    memset(sh, 0, sizeof *sh);
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    for (int i = 0; i < n; i++) {
        fflush(NULL);
        pids[i] = fork();
        if (pids[i] == 0) client_main(sh, pool);
        if (pids[i] < 0) die("fork", -errno);
    }
    uint64_t deadline = now_ns() + 60000000000ull;
    while (atomic_load(&sh->ready) < n && now_ns() < deadline) usleep(1000);
    uint64_t t0 = now_ns();
    atomic_store(&sh->go, 1);
    while (atomic_load(&sh->done) < n && now_ns() < deadline) usleep(1000);
    uint64_t t1 = now_ns();
    atomic_store(&sh->go, 2);
    for (int i = 0; i < n; i++) {
        int st;
        waitpid(pids[i], &st, 0);
    }
    uint64_t t2 = now_ns();
    if (atomic_load(&sh->failed) || atomic_load(&sh->ready) < n) {
        fprintf(stderr, "chi_bench_scale: a client of %d failed\n", n);
        exit(1);
    }
    *async_rate = (double)atomic_load(&sh->async_tasks) * 1e9 / (double)(t1 - t0);
    *sync_rate = (double)atomic_load(&sh->sync_tasks) * 1e9 / (double)(t2 - t1 > 0 ? t2 - t1 : 1);
    munmap(sh, sizeof *sh);
    free(pids);
}

/* ---- many pools ---------------------------------------------------------------------- */

static uint64_t md_p50(chi_client_t *c, uint64_t pool, int iters) {
    uint64_t *v = malloc((size_t)iters * sizeof *v);
    int32_t ret = 0;
    chi_domain_query_t dq = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0);
    for (int i = 0; i < 2000; i++) chi_sm_md(c, pool, dq, 0, &ret);
    for (int i = 0; i < iters; i++) {
        uint64_t t = now_ns();
        int rc = chi_sm_md(c, pool, dq, 0, &ret);
        v[i] = now_ns() - t;
        if (rc < 0 || ret != 1) die("Md", rc < 0 ? rc : -EIO);
    }
    uint64_t r = p50(v, (size_t)iters);
    free(v);
    return r;
}

int main(int argc, char **argv) {
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--segment") && i + 1 < argc) segment = argv[++i];
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else {
            fprintf(stderr, "usage: chi_bench_scale --segment NAME [--seconds S] [--quick]\n");
            return 2;
        }
    }
    if (!segment) segment = getenv("CHIMAERA_SEGMENT");
    signal(SIGPIPE, SIG_IGN);
    printf("{");
    /* The clients first: they fork before this process attaches. A pool for them: */
    {
        chi_client_t *c = attach();
        uint64_t pool = md_pool(c, "scale_clients", 2);
        chi_client_finalize(c);
        const int ns[] = {1, 4, 16, 64};
        for (int i = 0; i < 4; i++) {
            if (quick && ns[i] > 4) break;
            double a, s;
            clients(ns[i], pool, &a, &s);
            printf("\"clients_%d_tasks_per_s\":%.0f,\"clients_%d_sync_tasks_per_s\":%.0f,", ns[i], a, ns[i], s);
            fflush(stdout);
        }
    }
    chi_client_t *c = attach();
    /* Pools: creation time when N exist, then Md to the newest. */
    const int counts[] = {1, 100, 10000};
    int have = 0;
    for (int i = 0; i < 3; i++) {
        int target = quick && counts[i] > 100 ? 300 : counts[i];
        uint64_t times[128], last = 0;
        int nt = 0;
        while (have < target) {
            char name[32];
            snprintf(name, sizeof name, "scale_%d", have);
            uint64_t t = now_ns();
            last = md_pool(c, name, 1);
            uint64_t dt = now_ns() - t;
            if (target - have <= 100 && nt < 128) times[nt++] = dt;
            have++;
        }
        printf("\"pools_%d_create_us_p50\":%.1f,\"pools_%d_md_ns_p50\":%" PRIu64 ",", counts[i],
               (double)p50(times, (size_t)nt) / 1000.0, counts[i], md_p50(c, last, quick ? 5000 : 20000));
        fflush(stdout);
    }
    /* A pool of 4,096 containers on this node. */
    {
        uint64_t t = now_ns();
        uint64_t big = md_pool(c, "scale_big_4096", 4096);
        double create_ms = (double)(now_ns() - t) / 1e6;
        uint64_t v[21];
        for (int i = 0; i < 21; i++) {
            chi_task_t *tk;
            chi_domain_query_t dq = chi_dq_global_bcast();
            int rc = chi_task_new(c, big, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &tk);
            if (rc < 0) die("chi_task_new", rc);
            uint64_t t0 = now_ns();
            rc = chi_task_call(c, tk, WAIT_NS);
            v[i] = now_ns() - t0;
            if (rc < 0 || ((chi_sm_md_task_t *)tk)->ret != 4096) {
                fprintf(stderr, "chi_bench_scale: a broadcast Md over 4096 containers: rc %d, ret %d: %s\n", rc,
                        ((chi_sm_md_task_t *)tk)->ret, chi_last_error());
                exit(1);
            }
            chi_task_del(c, tk);
        }
        printf("\"pool_4096_create_ms\":%.1f,\"pool_4096_bcast_us_p50\":%.1f,", create_ms, (double)p50(v, 21) / 1000.0);
        fflush(stdout);
    }
    /* Create/destroy cycles: ids and retired pools must come back. */
    {
        int cycles = quick ? 1000 : 10000;
        uint64_t t = now_ns();
        for (int i = 0; i < cycles; i++) {
            uint64_t id = md_pool(c, "scale_cycle", 1);
            int rc = chi_pool_destroy(c, id);
            if (rc < 0) die("chi_pool_destroy", rc);
        }
        double s = (double)(now_ns() - t) / 1e9;
        uint64_t after = md_pool(c, "scale_after_cycles", 1);
        int32_t ret = 0;
        int rc = chi_sm_md(c, after, chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0), 0, &ret);
        printf("\"cycles_%d_s\":%.2f,\"cycles_then_create_ok\":%d", cycles, s, rc == 0 && ret == 1);
    }
    printf("}\n");
    chi_client_finalize(c);
    return 0;
}
