/* chi_bench_pingpong: the hardware floor the Chimaera numbers are compared against. Two
 * processes share one anonymous mapping, as a client and the daemon share a segment, and
 * measure (1) a cache-line ping-pong round trip and (2) a single-producer single-consumer
 * ring of 64-bit values. No Chimaera calls.
 *
 *   chi_bench_pingpong [--iters N] [--msgs M] [--no-ring] [--pin] [--samples]
 *
 * Prints one JSON object line; with --samples, then the ping-pong's samples on a second. Every phase has a time budget so the whole run stays under
 * 10 s even on an oversubscribed VM; a phase cut short reports what it measured and says so
 * on stderr. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_samples.h"

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define cpu_relax() __asm__ __volatile__("" ::: "memory")
#endif

#define RING_CAP 4096u /* a power of two: indexes wrap with a mask */
#define WARMUP_TRIPS 10000u
#define WARMUP_BUDGET_NS 300000000ull
#define PING_BUDGET_NS 3000000000ull
#define RING_BUDGET_NS 4000000000ull
#define HARD_LIMIT_NS 9000000000ull /* past this the run is abandoned, not reported */
#define PING_STOP UINT64_MAX        /* tells the child the ping-pong phase is over */
#define NOT_YET UINT64_MAX          /* ring.total before the producer has finished */

/* Each word that one side writes and the other polls sits on its own cache line, so the
 * measurement is one line transfer each way and nothing else. */
struct shared {
    _Alignas(64) _Atomic uint64_t ping;
    _Alignas(64) _Atomic uint64_t pong;
    _Alignas(64) _Atomic uint64_t head;  /* next slot the producer writes */
    _Alignas(64) _Atomic uint64_t tail;  /* next slot the consumer reads */
    _Alignas(64) _Atomic uint64_t total; /* messages pushed, once the producer is done */
    _Atomic int child_error;
    _Alignas(64) uint64_t slots[RING_CAP];
};

static pid_t g_child = -1;
static uint64_t g_start_ns;
static int g_pin;
static pid_t g_parent;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *msg) {
    fprintf(stderr, "chi_bench_pingpong: %s\n", msg);
    if (g_child > 0) {
        kill(g_child, SIGKILL);
        waitpid(g_child, NULL, 0);
    }
    exit(1);
}

/* Called from the parent's spin loops; returns true once the child has exited. The checks
 * run rarely, so they cost nothing on the fast path, but a dead child or a blown time limit
 * would otherwise leave the parent spinning forever. */
static bool parent_relax(uint32_t *spins) {
    cpu_relax();
    if ((++*spins & 0xffffu) != 0) return false;
    /* With both processes on one CPU, spinning only burns the other's time slice. */
    sched_yield();
    if (now_ns() - g_start_ns > HARD_LIMIT_NS) die("time limit exceeded");
    /* WNOWAIT leaves the child to main's waitpid, which reads its status. */
    siginfo_t info;
    info.si_pid = 0;
    return waitid(P_PID, (id_t)g_child, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           info.si_pid == g_child;
}

static void child_gone(void) {
    die(g_pin ? "child exited early (could it pin itself to CPU 1?)" : "child exited early");
}

/* The child dies with the parent (PR_SET_PDEATHSIG, checked in child_main), so its loops
 * need no deadline. */
static void child_relax(uint32_t *spins) {
    cpu_relax();
    if ((++*spins & 0xffffu) == 0) sched_yield();
}

static int pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set);
}

static void child_main(struct shared *sh, int pin) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != g_parent) _exit(1); /* the parent died before prctl took effect */
    if (pin && pin_to(1) != 0) {
        atomic_store(&sh->child_error, 1);
        _exit(1);
    }
    uint32_t spins = 0;
    uint64_t last = 0;
    for (;;) {
        uint64_t v;
        while ((v = atomic_load_explicit(&sh->ping, memory_order_acquire)) == last)
            child_relax(&spins);
        if (v == PING_STOP) break;
        atomic_store_explicit(&sh->pong, v, memory_order_release);
        last = v;
    }
    /* Consumer. head is re-read only when the cached copy says the ring is empty, so the
     * producer's line moves only when it must. */
    uint64_t tail = 0, head = 0, expect = 1;
    for (;;) {
        if (tail == head) {
            head = atomic_load_explicit(&sh->head, memory_order_acquire);
            if (tail == head) {
                if (atomic_load_explicit(&sh->total, memory_order_acquire) == tail) break;
                child_relax(&spins);
                continue;
            }
        }
        if (sh->slots[tail & (RING_CAP - 1)] != expect) {
            atomic_store(&sh->child_error, 2);
            _exit(1);
        }
        expect++;
        tail++;
        atomic_store_explicit(&sh->tail, tail, memory_order_release);
    }
    _exit(0);
}

/* One round trip: returns its time in ns. */
static uint64_t trip(struct shared *sh, uint64_t i, uint32_t *spins) {
    uint64_t t0 = now_ns();
    atomic_store_explicit(&sh->ping, i, memory_order_release);
    while (atomic_load_explicit(&sh->pong, memory_order_acquire) != i)
        if (parent_relax(spins)) child_gone();
    return now_ns() - t0;
}

/* Returns the number of timed trips recorded into samples. */
static size_t run_pingpong(struct shared *sh, uint64_t *samples, size_t iters) {
    uint32_t spins = 0;
    uint64_t i = 1;
    uint64_t end = now_ns() + WARMUP_BUDGET_NS;
    for (; i <= WARMUP_TRIPS && now_ns() < end; i++) trip(sh, i, &spins);
    end = now_ns() + PING_BUDGET_NS;
    size_t n = 0;
    while (n < iters) {
        samples[n++] = trip(sh, i++, &spins);
        if (now_ns() > end && n < iters) {
            fprintf(stderr, "chi_bench_pingpong: ping-pong cut short after %zu of %zu trips\n",
                    n, iters);
            break;
        }
    }
    atomic_store_explicit(&sh->ping, PING_STOP, memory_order_release);
    return n;
}

/* Returns messages per second, counted from the first push until the consumer has taken
 * the last one. */
static double run_ring(struct shared *sh, uint64_t msgs) {
    uint32_t spins = 0;
    uint64_t head = 0, tail = 0;
    uint64_t t0 = now_ns(), budget_end = t0 + RING_BUDGET_NS;
    while (head < msgs) {
        if (head - tail == RING_CAP) {
            tail = atomic_load_explicit(&sh->tail, memory_order_acquire);
            if (head - tail == RING_CAP) {
                if (parent_relax(&spins)) child_gone();
                continue;
            }
        }
        sh->slots[head & (RING_CAP - 1)] = head + 1;
        head++;
        atomic_store_explicit(&sh->head, head, memory_order_release);
        if ((head & 0xffffu) == 0 && now_ns() > budget_end) {
            fprintf(stderr, "chi_bench_pingpong: ring cut short after %" PRIu64 " of %" PRIu64
                    " messages\n", head, msgs);
            break;
        }
    }
    atomic_store_explicit(&sh->total, head, memory_order_release);
    /* The child exits as soon as it has taken the last message, so here its exit is only an
     * error if the count it published falls short. */
    while (atomic_load_explicit(&sh->tail, memory_order_acquire) != head)
        if (parent_relax(&spins) && atomic_load_explicit(&sh->tail, memory_order_acquire) != head)
            child_gone();
    uint64_t t1 = now_ns();
    return (double)head * 1e9 / (double)(t1 - t0);
}

static uint64_t parse_count(const char *flag, const char *arg) {
    char *end;
    errno = 0;
    unsigned long long v = arg ? strtoull(arg, &end, 10) : 0;
    if (arg == NULL || errno != 0 || *end != '\0' || v == 0 || v > 1000000000ull) {
        fprintf(stderr, "chi_bench_pingpong: %s wants a count from 1 to 1e9\n", flag);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    size_t iters = 200000;
    uint64_t msgs = 20000000;
    bool ring = true, samples_out = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iters") == 0)
            iters = (size_t)parse_count("--iters", i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "--msgs") == 0)
            msgs = parse_count("--msgs", i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "--no-ring") == 0)
            ring = false;
        else if (strcmp(argv[i], "--pin") == 0)
            g_pin = 1;
        else if (strcmp(argv[i], "--samples") == 0)
            samples_out = true;
        else {
            fprintf(stderr, "usage: chi_bench_pingpong [--iters N] [--msgs M] [--no-ring] [--pin]"
                            " [--samples]\n");
            return 2;
        }
    }
    g_start_ns = now_ns();
    uint64_t *samples = malloc(iters * sizeof(*samples));
    struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (samples == NULL || sh == MAP_FAILED) die("out of memory");
    atomic_store(&sh->total, NOT_YET);
    if (g_pin) {
        cpu_set_t allowed;
        if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0 || !CPU_ISSET(0, &allowed) ||
            !CPU_ISSET(1, &allowed))
            die("--pin needs CPUs 0 and 1");
    }
    fflush(NULL); /* or the child would inherit, and later flush, buffered output */
    g_parent = getpid();
    g_child = fork();
    if (g_child < 0) die(strerror(errno));
    if (g_child == 0) child_main(sh, g_pin);
    if (g_pin && pin_to(0) != 0) die("cannot pin to CPU 0");

    size_t n = run_pingpong(sh, samples, iters);
    /* Without the ring phase the consumer sees total == 0 == tail at once and exits. */
    if (!ring) atomic_store_explicit(&sh->total, 0, memory_order_release);
    double ring_rate = ring ? run_ring(sh, msgs) : 0;
    int status;
    if (waitpid(g_child, &status, 0) != g_child) die("waitpid failed");
    g_child = -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || atomic_load(&sh->child_error) != 0)
        die(atomic_load(&sh->child_error) == 2 ? "ring delivered a wrong value"
                                               : "child failed");
    if (n == 0) die("no ping-pong trip completed in time");

    qsort(samples, n, sizeof(*samples), cmp_u64);
    printf("{\"baseline_pingpong_ns_p50\":%" PRIu64 ",\"baseline_pingpong_ns_p99\":%" PRIu64
           ",\"baseline_pingpong_ns_p999\":%" PRIu64,
           percentile(samples, n, 0.50), percentile(samples, n, 0.99),
           percentile(samples, n, 0.999));
    if (ring) printf(",\"baseline_ring_msgs_per_s\":%.0f", ring_rate);
    printf("}\n");
    if (samples_out) print_samples(samples, n);
    free(samples);
    munmap(sh, sizeof(*sh));
    return 0;
}
