/* chimaera bench remote's measuring program.
 *
 *   chi_bench_remote --tcp [--iters N]
 *       The baselines: a raw TCP ping-pong between two processes on loopback (TCP_NODELAY,
 *       a 64-byte message each way: about one request frame), once with blocking reads and
 *       once busy-polling (non-blocking recv in a loop, as a runtime that spins would).
 *       Prints {"baseline_tcp_pingpong_ns_p50": ..., "baseline_tcp_pingpong_ns_p99": ...,
 *       "baseline_tcp_busy_ns_p50": ..., "baseline_tcp_busy_ns_p99": ...}.
 *   chi_bench_remote --segment NAME --nodes N [--iters N] [--seconds S]
 *       Attached to node 1 of an N-node cluster whose pool "bench_remote" has one container
 *       per node: sync Md to the container on node 2 (p50, p99), async Md to it with 256 in
 *       flight (tasks/s), and a broadcast Md over the containers of nodes 1..k for k = 1..N
 *       (p50 in microseconds). Prints one JSON object.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chimaera/chimaera.h"
#include "chimaera/small_message.h"
#include "bench_stream.h"

#define BULK (1u << 20)
#define BULK_N 256

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t pct(int64_t *v, int n, double p) {
    qsort(v, (size_t)n, sizeof v[0], cmp64);
    int i = (int)(p * (n - 1));
    return v[i];
}

static void die(const char *what, int rc) {
    fprintf(stderr, "chi_bench_remote: %s: %s (%s)\n", what, rc ? chi_strerror(rc) : strerror(errno),
            rc ? chi_last_error() : "");
    exit(1);
}

/* rd = 2: busy-poll (non-blocking recv until the bytes are in). */
static int full_io(int fd, char *buf, size_t n, int rd) {
    size_t done = 0;
    while (done < n) {
        ssize_t k = rd == 2 ? recv(fd, buf + done, n - done, MSG_DONTWAIT)
                    : rd ? read(fd, buf + done, n - done) : write(fd, buf + done, n - done);
        if (k < 0 && (errno == EINTR || (rd == 2 && (errno == EAGAIN || errno == EWOULDBLOCK)))) continue;
        if (k <= 0) return -1;
        done += (size_t)k;
    }
    return 0;
}

static void tcp_pingpong(int iters, int busy, int64_t *p50, int64_t *p99) {
    enum { MSG = 64 };
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0);
    char buf[MSG];
    int64_t *lat = malloc(sizeof(int64_t) * (size_t)iters);
    pid_t pid;
    int fd, i, status;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1) < 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &len) < 0 || !lat)
        die("listen", 0);
    pid = fork();
    if (pid < 0) die("fork", 0);
    if (pid == 0) { /* the echo side */
        int c = accept(lfd, NULL, NULL);
        if (c < 0) _exit(1);
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        while (full_io(c, buf, MSG, busy ? 2 : 1) == 0)
            if (full_io(c, buf, MSG, 0) < 0) break;
        _exit(0);
    }
    close(lfd);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect", 0);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    memset(buf, 7, MSG);
    for (i = -1000; i < iters; i++) {
        int64_t t0 = now_ns();
        if (full_io(fd, buf, MSG, 0) < 0 || full_io(fd, buf, MSG, busy ? 2 : 1) < 0) die("ping-pong", 0);
        if (i >= 0) lat[i] = now_ns() - t0;
    }
    close(fd);
    waitpid(pid, &status, 0);
    *p50 = pct(lat, iters, 0.50);
    *p99 = pct(lat, iters, 0.99);
    free(lat);
}


static void tcp_baseline(int iters) {
    int64_t b50, b99, s50, s99;
    tcp_pingpong(iters, 0, &b50, &b99);
    tcp_pingpong(iters, 1, &s50, &s99);
    printf("{\"baseline_tcp_pingpong_ns_p50\": %lld, \"baseline_tcp_pingpong_ns_p99\": %lld, "
           "\"baseline_tcp_busy_ns_p50\": %lld, \"baseline_tcp_busy_ns_p99\": %lld, "
           "\"baseline_tcp_stream_mbps\": %.1f}\n",
           (long long)b50, (long long)b99, (long long)s50, (long long)s99,
           bench_tcp_stream_mbps((uint64_t)BULK_N * BULK));
}

/* BULK_N sync 1 MiB Io tasks of one direction to container `dq`: seconds taken. */
static double bulk_io(chi_client_t *c, uint64_t pool, chi_domain_query_t dq, void *buf, uint32_t dir) {
    int64_t t0 = now_ns();
    for (int i = 0; i < BULK_N; i++) {
        chi_task_t *t;
        int rc = chi_task_new(c, pool, CHI_SM_IO, sizeof(chi_sm_io_task_t), &dq, &t);
        if (rc < 0) die("task_new", rc);
        chi_sm_io_task_t *io = (chi_sm_io_task_t *)t;
        if ((rc = chi_ptr_to_shm(c, buf, &io->data)) < 0) die("ptr_to_shm", rc);
        io->size = BULK;
        io->io_flags = dir;
        io->pattern = 0x5a;
        rc = chi_task_call(c, t, 30000000000ll);
        if (rc < 0 || t->rc < 0 || io->ret != BULK) die("Io", rc < 0 ? rc : t->rc < 0 ? t->rc : -EIO);
        chi_task_del(c, t);
    }
    return (double)(now_ns() - t0) / 1e9;
}

static void md_call(chi_client_t *c, uint64_t pool, chi_domain_query_t dq, int32_t want) {
    chi_task_t *t;
    int rc = chi_task_new(c, pool, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &t);
    if (rc < 0) die("task_new", rc);
    rc = chi_task_call(c, t, 30000000000ll);
    if (rc < 0 || ((chi_sm_md_task_t *)t)->ret != want) die("Md", rc < 0 ? rc : -EIO);
    chi_task_del(c, t);
}

static void cluster_client(const char *segment, int nodes, int iters, double seconds) {
    chi_client_opts_t o;
    chi_pool_create_opts_t po;
    chi_client_t *c;
    uint64_t pool;
    int64_t *lat = malloc(sizeof(int64_t) * (size_t)iters);
    chi_domain_query_t to2 = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 1);
    int i, k, rc;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.segment = segment;
    o.mode = CHI_MODE_ATTACH;
    o.connect_timeout_ms = 10000;
    if ((rc = chi_client_init(&o, &c)) < 0) die("attach", rc);
    memset(&po, 0, sizeof po);
    po.size = sizeof po;
    po.module = CHI_SM_MODULE_NAME;
    po.name = "bench_remote";
    po.containers_per_node = 1;
    if ((rc = chi_pool_create(c, &po, &pool)) < 0) die("pool_create", rc);

    for (i = 0; i < 2000; i++) md_call(c, pool, to2, 1);
    for (i = 0; i < iters; i++) {
        int64_t t0 = now_ns();
        md_call(c, pool, to2, 1);
        lat[i] = now_ns() - t0;
    }
    printf("{\"remote_rtt_ns_p50\": %lld, \"remote_rtt_ns_p99\": %lld",
           (long long)pct(lat, iters, 0.50), (long long)pct(lat, iters, 0.99));

    { /* async: keep a window in flight for `seconds` */
        enum { WINDOW = 256 };
        chi_task_t *w[WINDOW];
        long done = 0;
        int64_t t0 = now_ns(), end = t0 + (int64_t)(seconds * 1e9);
        while (now_ns() < end) {
            for (k = 0; k < WINDOW; k++) {
                if ((rc = chi_task_new(c, pool, CHI_SM_MD, sizeof(chi_sm_md_task_t), &to2, &w[k])) < 0)
                    die("task_new", rc);
                if ((rc = chi_task_submit(c, w[k])) < 0) die("submit", rc);
            }
            for (k = 0; k < WINDOW; k++) {
                if ((rc = chi_task_wait(c, w[k], 30000000000ll)) < 0 || w[k]->rc < 0)
                    die("async Md", rc < 0 ? rc : w[k]->rc);
                chi_task_del(c, w[k]);
            }
            done += WINDOW;
        }
        printf(", \"remote_async_tasks_per_s\": %.0f", done / ((double)(now_ns() - t0) / 1e9));
    }

    { /* bulk: 1 MiB Io writes (checked there), then reads (filled there, checked here) */
        void *buf;
        if ((rc = chi_buffer_alloc(c, BULK, &buf)) < 0) die("buffer", rc);
        memset(buf, 0x5a, BULK);
        double w = bulk_io(c, pool, to2, buf, CHI_SM_IO_WRITE);
        memset(buf, 0, BULK);
        double r = bulk_io(c, pool, to2, buf, CHI_SM_IO_READ);
        for (size_t j = 0; j < BULK; j++)
            if (((unsigned char *)buf)[j] != 0x5a) die("Io read back other bytes", -EIO);
        double mb = (double)BULK_N * BULK / 1e6;
        printf(", \"remote_bulk_write_mbps\": %.1f, \"remote_bulk_read_mbps\": %.1f, "
               "\"remote_bulk_mbps\": %.1f", mb / w, mb / r, 2 * mb / (w + r));
        chi_buffer_free(c, buf);
    }

    for (k = 1; k <= 4; k++) {
        int n = iters / 10 > 200 ? iters / 10 : 200;
        if (k > nodes) {
            printf(", \"bcast_us_p50_n%d\": null", k);
            continue;
        }
        chi_domain_query_t b = chi_dq_range(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0, (uint64_t)k, CHI_DQ_BCAST);
        for (i = 0; i < 100; i++) md_call(c, pool, b, k);
        for (i = 0; i < n; i++) {
            int64_t t0 = now_ns();
            md_call(c, pool, b, k);
            lat[i] = now_ns() - t0;
        }
        printf(", \"bcast_us_p50_n%d\": %.1f", k, (double)pct(lat, n, 0.50) / 1000.0);
    }
    printf("}\n");
    free(lat);
    chi_client_finalize(c);
}

int main(int argc, char **argv) {
    const char *segment = NULL;
    int tcp = 0, nodes = 2, iters = 20000, i;
    double seconds = 2;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tcp")) tcp = 1;
        else if (!strcmp(argv[i], "--segment") && i + 1 < argc) segment = argv[++i];
        else if (!strcmp(argv[i], "--nodes") && i + 1 < argc) nodes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "chi_bench_remote: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (iters < 100) iters = 100;
    if (tcp) {
        tcp_baseline(iters);
        return 0;
    }
    if (!segment || nodes < 2) {
        fprintf(stderr, "chi_bench_remote: --segment and --nodes >= 2 are required\n");
        return 2;
    }
    cluster_client(segment, nodes, iters, seconds);
    return 0;
}
