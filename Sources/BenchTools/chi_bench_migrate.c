/* `chimaera bench migrate`: the pause a container migration costs, under load.
 *
 * Against a two-node cluster (node 1's segment given): a small_message pool with one container
 * per node; two client threads on node 1 call Md on container 0 without a break. First the
 * baseline: their round trips for 1 s with no move. Then container 0 moves MOVES times between
 * node 1 and node 2 (the MigrateContainer admin task, whose pause_ns is the time the container
 * was plugged on its node), 100 ms apart. Reports migrate_pause_us_p50/max, the call's time,
 * the clients' longest round trip during the moves beside their baseline, and tasks_lost:
 * tasks that failed plus the difference between the Md the container counted (Served, carried
 * by every move) and those completed.
 *
 * Then a large state: a ram:// bdev pool whose container 0 holds STATE_MB MiB of written
 * blocks moves to node 2 (migrate_state_mbps: the state's bytes over the call's time, and
 * migrate_state_pause_ms), beside two figures of the same run: the cluster transport
 * streaming the same bytes as 4 MiB bdev Writes from node 1 to a container on node 2
 * (remote_bulk_write_mbps: what the migration's 4 MiB pieces could reach at best), and a
 * plain loopback TCP stream between two threads (baseline_tcp_stream_mbps: the wire). The
 * moved blocks are read back and compared; a difference fails the bench.
 *
 * usage: chi_bench_migrate --segment NAME [--moves N] [--state-mb N]. Prints one JSON
 * object. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_samples.h"
#include "bench_stream.h"
#include "chimaera/admin.h"
#include "chimaera/bdev.h"
#include "chimaera/chimaera.h"
#include "chimaera/small_message.h"

#define THREADS 2

static chi_client_t *client;
static uint64_t pool;
static _Atomic int phase;
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
    while (atomic_load(&phase) < 2) {
        int ph = atomic_load(&phase);
        chi_domain_query_t dq = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0);
        int32_t ret = 0;
        uint64_t t0 = now_ns();
        int rc = chi_sm_md(client, pool, dq, 0, &ret);
        uint64_t dt = now_ns() - t0;
        if (rc < 0 || ret != 1) {
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

static uint64_t served0(void) {
    chi_domain_query_t dq = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0);
    chi_task_t *t;
    if (chi_task_new(client, pool, CHI_SM_SERVED, sizeof(chi_sm_served_task_t), &dq, &t) < 0 ||
        chi_task_call(client, t, 10000000000ll) < 0) {
        fprintf(stderr, "chi_bench_migrate: Served: %s\n", chi_last_error());
        exit(1);
    }
    uint64_t n = ((chi_sm_served_task_t *)t)->served;
    chi_task_del(client, t);
    return n;
}

/* One move through the admin task, for its pause; returns 0 or the error. */
static int move_of(uint64_t pool_id, uint32_t to, uint64_t *pause_ns);
static int move(uint32_t to, uint64_t *pause_ns) { return move_of(pool, to, pause_ns); }

static int move_of(uint64_t pool_id, uint32_t to, uint64_t *pause_ns) {
    chi_domain_query_t dq = chi_dq_local_id(CHI_SUBDOMAIN_LOCAL_CONTAINERS, 0);
    chi_task_t *t;
    int rc = chi_task_new(client, CHI_ADMIN_POOL_ID, CHI_ADMIN_MIGRATE_CONTAINER,
                          sizeof(chi_admin_migrate_container_task_t), &dq, &t);
    if (rc < 0) return rc;
    chi_admin_migrate_container_task_t *m = (chi_admin_migrate_container_task_t *)t;
    m->pool_id = pool_id;
    m->container = 0;
    m->to_node = to;
    rc = chi_task_call(client, t, 60000000000ll);
    if (rc == 0) rc = t->rc;
    *pause_ns = m->pause_ns;
    chi_task_del(client, t);
    return rc;
}

/* ---- a large state ------------------------------------------------------------------------ */

#define PIECE (4u << 20)

static void die(const char *what, int rc) {
    fprintf(stderr, "chi_bench_migrate: %s: %s (%s)\n", what, chi_strerror(rc), chi_last_error());
    exit(1);
}

static void fill(unsigned char *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t v = (seed + i) * 0x9E3779B97F4A7C15ull;
        memcpy(p + i, &v, 8);
    }
}

/* Writes `bytes` from the start of block b in PIECE writes; returns the seconds taken. */
static double write_block(uint64_t pool_id, uint32_t container, chi_bdev_block_t b, uint64_t bytes,
                          unsigned char *buf) {
    chi_domain_query_t dq = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, container);
    uint64_t t0 = now_ns();
    for (uint64_t off = 0; off < bytes; off += PIECE) {
        fill(buf, PIECE, off);
        chi_bdev_block_t piece = b;
        piece.offset += off;
        piece.size = PIECE;
        int rc = chi_bdev_write(client, pool_id, dq, buf, PIECE, piece, 0, 60000000000ll);
        if (rc < 0) die("bdev Write", rc);
    }
    return (now_ns() - t0) / 1e9;
}

struct state_figures {
    double migrate_mbps, pause_ms, remote_mbps, tcp_mbps;
};

static struct state_figures large_state(uint64_t mb) {
    struct state_figures f = {0};
    uint64_t bytes = mb << 20, bdev_pool;
    chi_bdev_create_params_t p = chi_bdev_params("ram://", 2 * bytes, 0);
    int rc = chi_bdev_create(client, "bench_migrate_bdev", 1, &p, &bdev_pool);
    if (rc < 0) die("bdev pool", rc);
    unsigned char *buf;
    rc = chi_buffer_alloc(client, PIECE, (void **)&buf);
    if (rc < 0) die("buffer", rc);
    chi_bdev_block_t b[2];
    uint32_t n = 0;
    for (uint32_t c = 0; c < 2; c++) {
        chi_domain_query_t dq = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, c);
        rc = chi_bdev_allocate(client, bdev_pool, dq, bytes, &b[c], 1, &n, 60000000000ll);
        if (rc < 0 || n != 1) die("bdev Allocate", rc < 0 ? rc : -ENOSPC);
    }
    /* Container 0 is on node 1, container 1 on node 2. */
    write_block(bdev_pool, 0, b[0], bytes, buf);
    f.remote_mbps = bytes / 1e6 / write_block(bdev_pool, 1, b[1], bytes, buf);
    f.tcp_mbps = bench_tcp_stream_mbps(bytes);
    uint64_t pause = 0, t0 = now_ns();
    rc = move_of(bdev_pool, 2, &pause);
    double s = (now_ns() - t0) / 1e9;
    if (rc < 0) die("moving the bdev container", rc);
    f.migrate_mbps = bytes / 1e6 / s;
    f.pause_ms = pause / 1e6;
    /* Read the moved blocks back (from node 2 now) and compare. */
    unsigned char *want = malloc(PIECE);
    chi_domain_query_t dq = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0);
    for (uint64_t off = 0; off < bytes; off += PIECE) {
        chi_bdev_block_t piece = b[0];
        piece.offset += off;
        piece.size = PIECE;
        rc = chi_bdev_read(client, bdev_pool, dq, buf, PIECE, piece, 60000000000ll);
        if (rc < 0) die("bdev Read after the move", rc);
        fill(want, PIECE, off);
        if (memcmp(buf, want, PIECE) != 0) {
            fprintf(stderr, "chi_bench_migrate: the moved state differs at %llu\n", (unsigned long long)off);
            exit(3);
        }
    }
    free(want);
    chi_buffer_free(client, buf);
    chi_pool_destroy(client, bdev_pool);
    return f;
}

int main(int argc, char **argv) {
    const char *segment = getenv("CHIMAERA_SEGMENT");
    int moves = 20, state_mb = 256;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--segment") && i + 1 < argc) segment = argv[++i];
        else if (!strcmp(argv[i], "--moves") && i + 1 < argc) moves = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--state-mb") && i + 1 < argc) state_mb = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: chi_bench_migrate --segment NAME [--moves N] [--state-mb N]\n");
            return 2;
        }
    }
    if (moves < 1 || moves > 1000) moves = 20;
    if (state_mb < 4 || state_mb > 4096) state_mb = 256;
    state_mb &= ~3; /* whole 4 MiB pieces */
    (void)print_samples;
    chi_client_opts_t o = {.size = sizeof o, .mode = CHI_MODE_ATTACH, .segment = segment,
                           .connect_timeout_ms = 5000};
    if (chi_client_init(&o, &client) < 0) {
        fprintf(stderr, "chi_bench_migrate: attach: %s\n", chi_last_error());
        return 1;
    }
    chi_pool_create_opts_t po = {.size = sizeof po, .module = CHI_SM_MODULE_NAME, .name = "bench_migrate"};
    if (chi_module_register(client, CHI_SM_MODULE_NAME) < 0 || chi_pool_create(client, &po, &pool) < 0) {
        fprintf(stderr, "chi_bench_migrate: pool: %s\n", chi_last_error());
        return 1;
    }
    uint64_t s0 = served0();
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, load, &outs[i]);
    usleep(1000000);
    atomic_store(&phase, 1);
    uint64_t *pause = calloc((size_t)moves, sizeof *pause), *call = calloc((size_t)moves, sizeof *call);
    int done_moves = 0;
    for (int i = 0; i < moves; i++) {
        uint64_t p = 0, t0 = now_ns();
        int rc = move(i % 2 == 0 ? 2 : 1, &p);
        uint64_t dt = now_ns() - t0;
        if (rc < 0) {
            fprintf(stderr, "chi_bench_migrate: move %d: %s (%s)\n", i, chi_strerror(rc), chi_last_error());
            break;
        }
        pause[done_moves] = p;
        call[done_moves] = dt;
        done_moves++;
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
    uint64_t counted = served0() - s0;
    long lost = atomic_load(&failed) +
                (long)(counted > (uint64_t)done ? counted - (uint64_t)done : (uint64_t)done - counted);
    if (done_moves == 0) return 1;
    struct state_figures sf = large_state((uint64_t)state_mb);
    qsort(pause, (size_t)done_moves, sizeof *pause, cmp_u64);
    qsort(call, (size_t)done_moves, sizeof *call, cmp_u64);
    printf("{\"moves\":%d,\"migrate_pause_us_p50\":%.1f,\"migrate_pause_us_max\":%.1f,"
           "\"migrate_call_ms_p50\":%.2f,\"client_rtt_us_max_during_moves\":%.1f,"
           "\"baseline_rtt_us_p50\":%.2f,\"baseline_rtt_us_p99\":%.2f,\"tasks\":%ld,\"tasks_lost\":%ld,"
           "\"migrate_state_mb\":%d,\"migrate_state_mbps\":%.1f,\"migrate_state_pause_ms\":%.1f,"
           "\"remote_bulk_write_mbps\":%.1f,\"baseline_tcp_stream_mbps\":%.1f}\n",
           done_moves, percentile(pause, (size_t)done_moves, 0.5) / 1e3, pause[done_moves - 1] / 1e3,
           percentile(call, (size_t)done_moves, 0.5) / 1e6, max_during / 1e3,
           nbase ? percentile(base, nbase, 0.5) / 1e3 : 0, nbase ? percentile(base, nbase, 0.99) / 1e3 : 0,
           done, lost, state_mb, sf.migrate_mbps, sf.pause_ms, sf.remote_mbps, sf.tcp_mbps);
    chi_client_finalize(client);
    return lost == 0 ? 0 : 3;
}
