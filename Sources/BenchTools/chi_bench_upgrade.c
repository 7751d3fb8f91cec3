/* `chimaera bench upgrade`: the pause a hot upgrade costs the containers of a pool under load.
 *
 * Two client threads call Md synchronously without a break on a 4-container small_message
 * pool. First the baseline: their round trips for 1 s with no upgrade. Then small_message is
 * upgraded UPGRADES times (to the version 2 build staged beside this program, then again to
 * the same build with CHI_UPGRADE_FORCE), 100 ms apart, while the threads go on. Reports the
 * runtime's pause per upgrade (upgrade_pause_us_p50/max: plug to unplug on the containers),
 * the whole call's time, the clients' longest round trip during the upgrades beside their
 * baseline, and tasks_lost: tasks that failed plus the difference between the Md the
 * containers counted (the Served method, carried across every upgrade) and those completed.
 *
 * usage: chi_bench_upgrade --segment NAME [--upgrades N]. Prints one JSON object. */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_samples.h"
#include "chimaera/chimaera.h"
#include "chimaera/small_message.h"

#define THREADS 2
#define CONTAINERS 4

static chi_client_t *client;
static uint64_t pool;
static _Atomic int phase; /* 0 baseline, 1 upgrades, 2 stop */
static _Atomic long failed;

struct thread_out {
    long done;
    uint64_t *base;
    size_t nbase, capbase;
    uint64_t max_during;
};
static struct thread_out outs[THREADS];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *load(void *arg) {
    struct thread_out *o = arg;
    uint64_t seq = (uint64_t)(o - outs) * 7919u;
    while (atomic_load(&phase) < 2) {
        int ph = atomic_load(&phase);
        chi_domain_query_t dq = chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, seq++);
        int32_t ret = 0;
        uint64_t t0 = now_ns();
        int rc = chi_sm_md(client, pool, dq, 0, &ret);
        uint64_t dt = now_ns() - t0;
        if (rc < 0 || (ret != 1 && ret != 2)) {
            atomic_fetch_add(&failed, 1);
            continue;
        }
        o->done++;
        if (ph == 0) {
            if (o->nbase == o->capbase) {
                o->capbase = o->capbase ? 2 * o->capbase : 1 << 16;
                o->base = realloc(o->base, o->capbase * sizeof *o->base);
                if (!o->base) abort();
            }
            o->base[o->nbase++] = dt;
        } else if (dt > o->max_during) {
            o->max_during = dt;
        }
    }
    return NULL;
}

static uint64_t served_total(void) {
    uint64_t n = 0;
    for (uint32_t c = 0; c < CONTAINERS; c++) {
        chi_domain_query_t dq = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, c);
        chi_task_t *t;
        if (chi_task_new(client, pool, CHI_SM_SERVED, sizeof(chi_sm_served_task_t), &dq, &t) < 0 ||
            chi_task_call(client, t, 10000000000ll) < 0) {
            fprintf(stderr, "chi_bench_upgrade: Served: %s\n", chi_last_error());
            exit(1);
        }
        n += ((chi_sm_served_task_t *)t)->served;
        chi_task_del(client, t);
    }
    return n;
}

/* The number after "key": in a JSON text, or -1. */
static double json_number(const char *text, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(text, pat);
    return p ? atof(p + strlen(pat)) : -1;
}

int main(int argc, char **argv) {
    const char *segment = getenv("CHIMAERA_SEGMENT");
    int upgrades = 21;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--segment") && i + 1 < argc) segment = argv[++i];
        else if (!strcmp(argv[i], "--upgrades") && i + 1 < argc) upgrades = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: chi_bench_upgrade --segment NAME [--upgrades N]\n");
            return 2;
        }
    }
    if (upgrades < 1 || upgrades > 1000) upgrades = 21;
    (void)print_samples; /* the header's; this program prints figures, not samples */
    char self[PATH_MAX], v2[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 1;
    self[n] = 0;
    *strrchr(self, '/') = 0;
    snprintf(v2, sizeof v2, "%s/libsmall_message_v2.so", self);
    if (access(v2, R_OK) != 0) {
        fprintf(stderr, "chi_bench_upgrade: %s is missing (make bench-tools builds it)\n", v2);
        return 1;
    }
    chi_client_opts_t o = {.size = sizeof o, .mode = CHI_MODE_ATTACH, .segment = segment,
                           .connect_timeout_ms = 5000};
    if (chi_client_init(&o, &client) < 0) {
        fprintf(stderr, "chi_bench_upgrade: attach: %s\n", chi_last_error());
        return 1;
    }
    chi_pool_create_opts_t po = {.size = sizeof po, .module = CHI_SM_MODULE_NAME,
                                 .name = "bench_upgrade", .containers_per_node = CONTAINERS};
    if (chi_module_register(client, CHI_SM_MODULE_NAME) < 0 || chi_pool_create(client, &po, &pool) < 0) {
        fprintf(stderr, "chi_bench_upgrade: pool: %s\n", chi_last_error());
        return 1;
    }
    uint64_t served0 = served_total();
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, load, &outs[i]);
    usleep(1000000);
    atomic_store(&phase, 1);
    uint64_t *pause = calloc((size_t)upgrades, sizeof *pause);
    uint64_t *call = calloc((size_t)upgrades, sizeof *call);
    int done_upgrades = 0;
    for (int i = 0; i < upgrades; i++) {
        char report[4096];
        uint64_t t0 = now_ns();
        int rc = chi_module_upgrade_report(client, CHI_SM_MODULE_NAME, v2, i == 0 ? 0 : CHI_UPGRADE_FORCE,
                                           report, sizeof report);
        uint64_t dt = now_ns() - t0;
        if (rc < 0) {
            fprintf(stderr, "chi_bench_upgrade: upgrade %d: %s (%s)\n", i, chi_strerror(rc), chi_last_error());
            break;
        }
        pause[done_upgrades] = (uint64_t)(json_number(report, "pause_us_max") * 1000);
        call[done_upgrades] = dt;
        done_upgrades++;
        usleep(100000);
    }
    atomic_store(&phase, 2);
    long done = 0;
    uint64_t max_during = 0;
    size_t nbase = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        done += outs[i].done;
        if (outs[i].max_during > max_during) max_during = outs[i].max_during;
        nbase += outs[i].nbase;
    }
    uint64_t *base = malloc((nbase ? nbase : 1) * sizeof *base);
    size_t k = 0;
    for (int i = 0; i < THREADS; i++) {
        memcpy(base + k, outs[i].base, outs[i].nbase * sizeof *base);
        k += outs[i].nbase;
    }
    qsort(base, nbase, sizeof *base, cmp_u64);
    uint64_t counted = served_total() - served0;
    long lost = atomic_load(&failed) + (long)(counted > (uint64_t)done ? counted - (uint64_t)done
                                                                         : (uint64_t)done - counted);
    if (done_upgrades == 0) return 1;
    qsort(pause, (size_t)done_upgrades, sizeof *pause, cmp_u64);
    qsort(call, (size_t)done_upgrades, sizeof *call, cmp_u64);
    printf("{\"upgrades\":%d,\"upgrade_pause_us_p50\":%.1f,\"upgrade_pause_us_max\":%.1f,"
           "\"upgrade_call_ms_p50\":%.2f,\"client_rtt_us_max_during_upgrades\":%.1f,"
           "\"baseline_rtt_us_p50\":%.2f,\"baseline_rtt_us_p99\":%.2f,\"baseline_rtt_us_max\":%.1f,"
           "\"tasks\":%ld,\"tasks_lost\":%ld}\n",
           done_upgrades, percentile(pause, (size_t)done_upgrades, 0.5) / 1e3,
           pause[done_upgrades - 1] / 1e3, percentile(call, (size_t)done_upgrades, 0.5) / 1e6,
           max_during / 1e3, nbase ? percentile(base, nbase, 0.5) / 1e3 : 0,
           nbase ? percentile(base, nbase, 0.99) / 1e3 : 0, nbase ? base[nbase - 1] / 1e3 : 0, done,
           lost);
    chi_client_finalize(client);
    return lost == 0 ? 0 : 3;
}
