/* Helpers of the hostile-client suite (issue 12): one small program per way a buggy or hostile
 * client can misuse the runtime, each run by Tests/e2e/test_hostile.py against its own daemon.
 *
 * Every program starts with h_begin() (creates the pool the final check uses and measures the
 * daemon at rest through a fresh client) and ends with h_end(), which checks, through a fresh
 * client again, that the daemon (the pid in the statistics) is alive, that shm.heap_used is
 * back to its baseline and that an Md returns ret 1. Every client the case made must be
 * finalized (or its process dead) before h_end.
 *
 * A failure prints "hostile: <verdict>: <why>" (verdicts: crashed, hung, leaked, wrong) or
 * test_common.h's FAIL line, then exits 1; the runner classifies the rest from the rc in the
 * FAIL line (-ETIMEDOUT is a hang) and from whether the daemon is still running. */
#ifndef CHI_HOSTILE_H
#define CHI_HOSTILE_H

#include "../test_common.h" /* first: it defines _GNU_SOURCE */

#include <pthread.h>
#include <sys/types.h>

#include "chimaera/admin.h"

/* NEW in ABI 1.2 (spec-issue12.md). Defined here so the suite builds against 1.1 headers. */
#ifndef CHI_ELIMIT
#define CHI_ELIMIT (CHI_EBASE + 11)
#endif
/* Weak: against a library without it the address is NULL and the case skips that part. */
int chi_task_cancel(chi_client_t *c, chi_task_t *t) __attribute__((weak));

#define H_MiB (1ull << 20)
#define H_POOL "hostile_md" /* small_message, 2 containers: the final Md's pool */
#define H_SETTLE_NS (10 * T_SEC_NS) /* how long h_end waits for the daemon to come to rest */

static void h_verdict(const char *verdict, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
static void h_verdict(const char *verdict, const char *fmt, ...) {
    /* Held until exit: when threads fail at once, one verdict is printed whole. */
    static pthread_mutex_t once = PTHREAD_MUTEX_INITIALIZER;
    char last[512];
    va_list ap;
    snprintf(last, sizeof last, "%s", chi_last_error());
    pthread_mutex_lock(&once);
    fflush(stdout);
    fprintf(stderr, "hostile: %s: %s: ", verdict, t_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " [last error: \"%s\"]\n", last);
    t_exit(T_EXIT_FAIL);
}

/* ---- the statistics JSON: just enough of a reader for chi_runtime_stats' output ---------- */

static inline const char *h_ws(const char *s) {
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
    return s;
}

/* The first character after the JSON value at s. */
static inline const char *h_json_skip(const char *s) {
    int depth = 0, in_str = 0;
    s = h_ws(s);
    if (*s != '{' && *s != '[' && *s != '"') {
        while (*s && *s != ',' && *s != '}' && *s != ']') s++;
        return s;
    }
    for (; *s; s++) {
        if (in_str) {
            if (*s == '\\' && s[1]) {
                s++;
            } else if (*s == '"') {
                in_str = 0;
                if (depth == 0) return s + 1; /* the value was this string */
            }
        } else if (*s == '"') {
            in_str = 1;
        } else if (*s == '{' || *s == '[') {
            depth++;
        } else if ((*s == '}' || *s == ']') && --depth == 0) {
            return s + 1;
        }
    }
    return s;
}

/* The value of member `key` of the object at obj, or NULL. */
static inline const char *h_json_member(const char *obj, const char *key) {
    size_t n = strlen(key);
    const char *s, *k, *v;
    if (obj == NULL || *(obj = h_ws(obj)) != '{') return NULL;
    for (s = obj + 1;; s++) {
        s = h_ws(s);
        if (*s != '"') return NULL;
        k = s + 1;
        v = h_json_skip(s);
        int match = (size_t)(v - 1 - k) == n && memcmp(k, key, n) == 0;
        v = h_ws(v);
        if (*v != ':') return NULL;
        v = h_ws(v + 1);
        if (match) return v;
        s = h_ws(h_json_skip(v));
        if (*s != ',') return NULL;
    }
}

/* Element i of the array at arr, or NULL. */
static inline const char *h_json_elem(const char *arr, int i) {
    const char *s;
    if (arr == NULL || *(arr = h_ws(arr)) != '[') return NULL;
    s = h_ws(arr + 1);
    if (*s == ']') return NULL;
    for (; i > 0; i--) {
        s = h_ws(h_json_skip(s));
        if (*s != ',') return NULL;
        s = h_ws(s + 1);
    }
    return s;
}

static inline long long h_json_int(const char *v, long long missing) {
    return v != NULL && (*v == '-' || (*v >= '0' && *v <= '9')) ? strtoll(v, NULL, 10) : missing;
}

/* ---- the daemon as seen from outside ------------------------------------------------------ */

typedef struct h_stats {
    long long pid, heap_used, heap_capacity, shm_size;
    long long workers, fibers, idle_fibers; /* fibers and idle_fibers summed over workers */
    long long maps;                         /* lines of /proc/<pid>/maps, -1 if unreadable */
} h_stats_t;

static char h_json[4 << 20];

static inline int h_pid_alive(long long pid) {
    char path[64], buf[512], *close;
    FILE *f;
    if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno != EPERM)) return 0;
    snprintf(path, sizeof path, "/proc/%lld/stat", pid);
    if ((f = fopen(path, "r")) == NULL) return 0;
    buf[0] = 0;
    if (fgets(buf, sizeof buf, f) == NULL) buf[0] = 0;
    fclose(f);
    close = strrchr(buf, ')');
    return close != NULL && close[1] == ' ' && close[2] != 'Z' && close[2] != 'X';
}

static inline long long h_maps(long long pid) {
    char path[64];
    long long n = 0;
    int ch;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%lld/maps", pid);
    if ((f = fopen(path, "r")) == NULL) return -1;
    while ((ch = getc(f)) != EOF) n += ch == '\n';
    fclose(f);
    return n;
}

/* Reads the statistics through c. Returns chi_runtime_stats' error, or 0. */
static inline int h_read_stats(chi_client_t *c, h_stats_t *s) {
    const char *shm, *workers, *w;
    int rc = chi_runtime_stats(c, h_json, sizeof h_json), i;
    memset(s, 0, sizeof *s);
    if (rc < 0) return rc;
    shm = h_json_member(h_json, "shm");
    s->pid = h_json_int(h_json_member(h_json, "pid"), -1);
    s->heap_used = h_json_int(h_json_member(shm, "heap_used"), -1);
    s->heap_capacity = h_json_int(h_json_member(shm, "heap_capacity"), -1);
    s->shm_size = h_json_int(h_json_member(shm, "size"), -1);
    workers = h_json_member(h_json, "workers");
    for (i = 0; (w = h_json_elem(workers, i)) != NULL; i++) {
        s->fibers += h_json_int(h_json_member(w, "fibers"), 0);
        s->idle_fibers += h_json_int(h_json_member(w, "idle_fibers"), 0);
    }
    s->workers = i;
    s->maps = h_maps(s->pid);
    if (s->pid <= 0 || s->heap_used < 0 || s->workers == 0)
        h_verdict("wrong", "the statistics lack pid, shm.heap_used or workers: %.300s", h_json);
    return 0;
}

/* The verdict for a call that failed with rc: a timeout, or no answer from a live daemon,
 * is a hang; no daemon is a crash. */
static inline const char *h_rc_verdict(int rc, long long pid) {
    if (rc == -ETIMEDOUT) return "hung";
    if (rc == -CHI_ENORUNTIME) return pid > 0 && h_pid_alive(pid) ? "hung" : "crashed";
    return "wrong";
}

static struct {
    uint64_t pool;   /* H_POOL's id */
    h_stats_t idle;  /* the daemon at rest, measured by h_begin */
} H;

#define H_CHECK(expr)                                                                      \
    do {                                                                                   \
        int h_rc_ = (expr);                                                                \
        if (h_rc_ < 0)                                                                     \
            h_verdict(h_rc_verdict(h_rc_, H.idle.pid), "%s:%d: %s: rc %d (%s)", __FILE__,   \
                      __LINE__, #expr, h_rc_, chi_strerror(h_rc_));                         \
    } while (0)

/* A fresh client whose attach failing is a verdict, not just a failure. */
static inline chi_client_t *h_client(void) {
    const char *seg = getenv("CHIMAERA_SEGMENT");
    chi_client_opts_t o;
    chi_client_t *c = NULL;
    if (!seg || !*seg) t_skip("CHIMAERA_SEGMENT is not set (Tests/e2e/test_hostile.py sets it)");
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.mode = CHI_MODE_ATTACH;
    o.connect_timeout_ms = 5000;
    H_CHECK(chi_client_init(&o, &c));
    T_ASSERT(c != NULL, "chi_client_init stored no handle");
    return c;
}

static inline void h_probe(h_stats_t *s) {
    chi_client_t *c = h_client();
    H_CHECK(h_read_stats(c, s));
    H_CHECK(chi_client_finalize(c));
}

/* Waits up to ns for t; a timeout is a hang. Returns the task's rc. */
static inline int h_wait(chi_client_t *c, chi_task_t *t, int64_t ns, const char *what) {
    int rc = chi_task_wait(c, t, ns);
    if (rc < 0)
        h_verdict(h_rc_verdict(rc, H.idle.pid), "%s: no completion within %lld ms: rc %d (%s)",
                  what, (long long)(ns / 1000000), rc, chi_strerror(rc));
    return t->rc;
}

static inline chi_task_t *h_md_task(chi_client_t *c, uint64_t pool, chi_domain_query_t dq,
                             uint32_t depth) {
    chi_task_t *t = NULL;
    H_CHECK(chi_task_new(c, pool, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &t));
    ((chi_sm_md_task_t *)t)->depth = depth;
    ((chi_sm_md_task_t *)t)->ret = -12345;
    return t;
}

/* One Md that must complete with rc 0 and ret == want. */
static inline void h_md_ok(chi_client_t *c, uint64_t pool, chi_domain_query_t dq, uint32_t depth,
                    int32_t want, const char *what) {
    chi_task_t *t = h_md_task(c, pool, dq, depth);
    H_CHECK(chi_task_submit(c, t));
    int rc = h_wait(c, t, T_WAIT_NS, what);
    int32_t ret = ((chi_sm_md_task_t *)t)->ret;
    if (rc < 0 || ret != want)
        h_verdict("wrong", "%s: Md(depth %u) rc %d (%s) ret %d, want rc 0 ret %d", what, depth,
                  rc, chi_strerror(rc), (int)ret, (int)want);
    H_CHECK(chi_task_del(c, t));
}

#define H_DQ(i) chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, (i))

/* Starts a case: the watchdog, the final check's pool, and the daemon's idle figures. */
static inline void h_begin(const char *prog, unsigned seconds) {
    chi_client_t *c;
    setvbuf(stdout, NULL, _IOLBF, 0);
    t_watchdog(prog, seconds);
    c = h_client();
    H.pool = t_sm_pool(c, H_POOL, 2);
    h_md_ok(c, H.pool, H_DQ(0), 0, 1, "warm-up");
    h_md_ok(c, H.pool, H_DQ(1), 3, 1, "warm-up");
    h_md_ok(c, H.pool, chi_dq_global_bcast(), 0, 2, "warm-up");
    H_CHECK(chi_client_finalize(c));
    /* A finalized client's memory may come back asynchronously: the baseline is the first
     * figure that two probes 200 ms apart agree on. */
    h_probe(&H.idle);
    for (int i = 0; i < 10; i++) {
        h_stats_t again;
        t_sleep_ms(200);
        h_probe(&again);
        if (again.heap_used == H.idle.heap_used) break;
        H.idle = again;
    }
    printf("%s: baseline: daemon pid %lld, heap_used %lld of %lld, %lld workers, %lld fibers "
           "(%lld idle), %lld mappings\n", prog, H.idle.pid, H.idle.heap_used,
           H.idle.heap_capacity, H.idle.workers, H.idle.fibers, H.idle.idle_fibers, H.idle.maps);
}

/* Flags for h_end. */
#define H_IDLE_FIBERS 1 /* also wait for fibers and mappings to come back near idle */

/* Idle fibers a worker may still hold mapped once it is back at rest (a sleeping worker
 * keeps one; a worker that has not slept yet keeps up to runtime.fiber_cache), each with a
 * stack mapping and a guard page: what "back near idle" allows above the baseline. */
#define H_FIBER_CACHE 4

/* Ends a case: through fresh clients, waits (bounded) until heap_used is back to the baseline
 * (and, with H_IDLE_FIBERS, fibers and mappings are near idle), then runs one Md. */
static inline void h_end(int flags) {
    int64_t deadline = t_now_ns() + H_SETTLE_NS;
    long long fib_slack = H.idle.workers * H_FIBER_CACHE, map_slack = 2 * fib_slack + 64;
    int heap_ok, idle_ok;
    chi_client_t *c;
    h_stats_t s;
    for (;;) {
        c = h_client();
        H_CHECK(h_read_stats(c, &s));
        if (s.pid != H.idle.pid || !h_pid_alive(H.idle.pid))
            h_verdict("crashed", "the daemon pid %lld is gone (statistics now say pid %lld)",
                      H.idle.pid, s.pid);
        heap_ok = s.heap_used <= H.idle.heap_used;
        /* Under the sanitizers the daemon's mappings include ASan's shadow and fake stacks:
         * they say nothing about fiber stacks there, so only the fibers are compared. */
        idle_ok = !(flags & H_IDLE_FIBERS) || (s.fibers <= H.idle.fibers + fib_slack &&
                                               (T_SANITIZED || s.maps <= H.idle.maps + map_slack));
        if ((heap_ok && idle_ok) || t_now_ns() > deadline) break;
        H_CHECK(chi_client_finalize(c));
        t_sleep_ms(100);
    }
    /* Whether it still answers counts first: a daemon that leaks but hangs has hung. */
    h_md_ok(c, H.pool, H_DQ(0), 0, 1, "final check");
    h_md_ok(c, H.pool, H_DQ(1), 1, 1, "final check");
    H_CHECK(chi_client_finalize(c));
    if (!heap_ok || !idle_ok)
        h_verdict("leaked", "after waiting %lld s: heap_used %lld, baseline %lld (%+lld "
                  "bytes); fibers %lld, idle %lld (+%lld allowed); mappings %lld, idle %lld "
                  "(+%lld allowed)%s", (long long)(H_SETTLE_NS / T_SEC_NS), s.heap_used,
                  H.idle.heap_used, s.heap_used - H.idle.heap_used, s.fibers, H.idle.fibers,
                  fib_slack, s.maps, H.idle.maps, map_slack,
                  flags & H_IDLE_FIBERS ? "" : " (fibers and mappings not checked)");
    printf("%s: final: heap_used %lld (baseline %lld), fibers %lld, mappings %lld\n", t_prog,
           s.heap_used, H.idle.heap_used, s.fibers, s.maps);
    printf("hostile: ok: %s\n", t_prog);
    fflush(NULL);
}

/* ---- small helpers ---------------------------------------------------------------------- */

static inline uint64_t h_rand(uint64_t *s) { /* xorshift64 */
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The mode a multi-case program runs (argv[1]), checked against the list it knows. */
static inline const char *h_mode(int argc, char **argv, const char *const *modes) {
    int i;
    if (argc >= 2)
        for (i = 0; modes[i]; i++)
            if (strcmp(argv[1], modes[i]) == 0) return modes[i];
    fprintf(stderr, "usage: %s MODE; modes:", argv[0]);
    for (i = 0; modes[i]; i++) fprintf(stderr, " %s", modes[i]);
    fprintf(stderr, "\n");
    exit(2);
}

#endif
