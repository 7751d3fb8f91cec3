/* Helpers shared by the C ABI tests (one program per feature, liburing's T_EXIT_* convention).
 *
 * Every failure prints file:line, the expression, the code's chi_strerror() text and the
 * thread's chi_last_error() text, then exits 1. chi_last_error() is only valid until the
 * thread's next chi_* call, so it is copied before chi_strerror() (itself a chi_* call) runs.
 * Tests that need a daemon read its segment from CHIMAERA_SEGMENT (set by Tests/e2e) and
 * skip (77) without it. A SIGALRM watchdog bounds every test, so a lost wake-up is a failure
 * with a message rather than a hang. */
#ifndef CHI_TEST_COMMON_H
#define CHI_TEST_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chimaera/chimaera.h"
#include "chimaera/small_message.h"

#define T_EXIT_PASS 0
#define T_EXIT_FAIL 1
#define T_EXIT_SKIP 77

/* 1 when built with AddressSanitizer (Tests/e2e/test_sanitized.py, clang or gcc): bounds that
 * time the library's own speed do not hold there, and the plain run checks them. */
#if defined(__SANITIZE_ADDRESS__)
#define T_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_SANITIZED 1
#endif
#endif
#ifndef T_SANITIZED
#define T_SANITIZED 0
#endif

#define T_SEC_NS 1000000000ll
/* The default bound on one task wait: far above any expected latency, far below the
 * runner's 60 s per-program timeout. */
#define T_WAIT_NS (10 * T_SEC_NS)

/* Called before a failing exit and from the watchdog: must be async-signal-safe
 * (unlink, kill, _exit ...). */
static void (*t_cleanup_hook)(void);

static void t_exit(int code) __attribute__((noreturn));
static void t_exit(int code) {
    if (t_cleanup_hook) t_cleanup_hook();
    fflush(NULL);
    /* _exit, not exit: the library's threads may still run, and atexit handlers racing
     * them could hang a failing test. */
    _exit(code);
}

static const char *t_prog = "test"; /* the program's name, set by t_watchdog */

static void t_failf(const char *file, int line, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), noreturn));
static void t_failf(const char *file, int line, int rc, const char *fmt, ...) {
    char last[1024];
    va_list ap;
    snprintf(last, sizeof last, "%s", chi_last_error());
    fprintf(stderr, "%s: %s:%d: FAIL: ", t_prog, file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (rc != 0) fprintf(stderr, " [rc %d: %s]", rc, chi_strerror(rc));
    fprintf(stderr, " [last error: \"%s\"]\n", last);
    t_exit(T_EXIT_FAIL);
}

static void t_failc(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), noreturn));
static void t_failc(const char *file, int line, const char *cond, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    t_failf(file, line, 0, "(%s) %s", cond, msg);
}

#define T_FAIL(...) t_failf(__FILE__, __LINE__, 0, __VA_ARGS__)
/* cond must be true; the message (a printf format and its arguments) is required. */
#define T_ASSERT(cond, ...) \
    do { if (!(cond)) t_failc(__FILE__, __LINE__, #cond, __VA_ARGS__); } while (0)
/* expr must succeed (>= 0); evaluates to its value. */
#define T_OK(expr) t_ok_impl((expr), #expr, __FILE__, __LINE__)
/* expr must return exactly want. */
#define T_EQ_RC(expr, want)                                                                \
    do {                                                                                   \
        int t_rc_ = (expr), t_want_ = (want);                                              \
        if (t_rc_ != t_want_)                                                              \
            t_failf(__FILE__, __LINE__, t_rc_, "%s returned %d, want %d (%s)", #expr,      \
                    t_rc_, t_want_, chi_strerror(t_want_));                                \
    } while (0)

static inline int t_ok_impl(int rc, const char *expr, const char *file, int line) {
    if (rc < 0) t_failf(file, line, rc, "%s", expr);
    return rc;
}

static inline int64_t t_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * T_SEC_NS + ts.tv_nsec;
}

static inline void t_sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000l};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void t_watchdog_fired(int sig) {
    static const char msg[] = ": FAIL: watchdog expired (a wait hung)\n";
    (void)sig;
    if (write(2, t_prog, strlen(t_prog)) < 0 || write(2, msg, sizeof msg - 1) < 0) {
    }
    t_exit(T_EXIT_FAIL);
}

/* Bounds the whole program to `seconds`. */
static inline void t_watchdog(const char *prog, unsigned seconds) {
    t_prog = prog;
    signal(SIGALRM, t_watchdog_fired);
    alarm(seconds);
}

static inline void t_skip(const char *why) {
    printf("SKIP: %s\n", why);
    t_exit(T_EXIT_SKIP);
}

/* Attaches to the daemon named by CHIMAERA_SEGMENT; skips when it is unset. */
static inline chi_client_t *t_attach(void) {
    const char *seg = getenv("CHIMAERA_SEGMENT");
    chi_client_opts_t o;
    chi_client_t *c = NULL;
    if (!seg || !*seg) t_skip("CHIMAERA_SEGMENT is not set (the e2e runner starts a daemon)");
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.mode = CHI_MODE_ATTACH;
    o.connect_timeout_ms = 5000;
    T_OK(chi_client_init(&o, &c));
    T_ASSERT(c != NULL, "chi_client_init succeeded but stored no handle");
    return c;
}

/* Registers small_message and creates (or finds) a pool of it. */
static inline uint64_t t_sm_pool(chi_client_t *c, const char *name, uint32_t containers) {
    chi_pool_create_opts_t po;
    uint64_t id = 0;
    T_OK(chi_module_register(c, CHI_SM_MODULE_NAME));
    memset(&po, 0, sizeof po);
    po.size = sizeof po;
    po.containers_per_node = containers;
    po.module = CHI_SM_MODULE_NAME;
    po.name = name;
    T_OK(chi_pool_create(c, &po, &id));
    T_ASSERT(id != 0 && id != CHI_ADMIN_POOL_ID, "pool %s got id %llu", name,
             (unsigned long long)id);
    return id;
}

/* chi_sm_md with a bounded wait. Returns the call's result; stores ret. A task still in
 * flight after a timeout is leaked on purpose: deleting it would fail with -EBUSY. */
static inline int t_md(chi_client_t *c, uint64_t pool, chi_domain_query_t dq, uint32_t depth,
                       int32_t *ret) {
    chi_task_t *t = NULL;
    int rc = chi_task_new(c, pool, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &t);
    if (rc < 0) return rc;
    ((chi_sm_md_task_t *)t)->depth = depth;
    ((chi_sm_md_task_t *)t)->ret = -12345;
    rc = chi_task_call(c, t, T_WAIT_NS);
    if (rc == -ETIMEDOUT) return rc;
    if (ret) *ret = ((chi_sm_md_task_t *)t)->ret;
    T_OK(chi_task_del(c, t));
    return rc;
}

/* One Io (small_message) to dq with a bounded wait: returns the call's result, stores ret.
 * The call's result must be the task's rc. */
static inline int t_sm_io(chi_client_t *c, uint64_t pool, chi_domain_query_t dq,
                          chi_shm_ptr_t data, uint64_t size, uint32_t flags, uint32_t pattern,
                          uint64_t *ret) {
    chi_task_t *t = NULL;
    chi_sm_io_task_t *x;
    int rc = T_OK(chi_task_new(c, pool, CHI_SM_IO, sizeof(chi_sm_io_task_t), &dq, &t));
    x = (chi_sm_io_task_t *)t;
    x->data = data;
    x->size = size;
    x->io_flags = flags;
    x->pattern = pattern;
    x->ret = UINT64_MAX;
    rc = chi_task_call(c, t, T_WAIT_NS);
    if (rc == -ETIMEDOUT) t_failf(__FILE__, __LINE__, rc, "Io of %llu B", (unsigned long long)size);
    T_ASSERT(rc == t->rc, "call returned %d but task rc is %d", rc, t->rc);
    *ret = x->ret;
    T_OK(chi_task_del(c, t));
    return rc;
}

/* One Md that must succeed with ret == want. */
#define T_MD_EXPECT(c, pool, dq, depth, want)                                               \
    do {                                                                                    \
        int32_t t_ret_ = -1;                                                                \
        int t_rc_ = t_md((c), (pool), (dq), (depth), &t_ret_);                              \
        if (t_rc_ < 0) t_failf(__FILE__, __LINE__, t_rc_, "Md(%s)", #dq);                   \
        if (t_ret_ != (want))                                                               \
            t_failf(__FILE__, __LINE__, 0, "Md(%s) ret %d, want %d", #dq, (int)t_ret_,       \
                    (int)(want));                                                           \
    } while (0)

/* Reads a field the runtime writes concurrently. */
#define T_LOAD(field) __atomic_load_n(&(field), __ATOMIC_ACQUIRE)

#endif
