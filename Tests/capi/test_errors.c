/* Error paths that need no daemon: NULL handles give -EINVAL (never a trap), chi_strerror
 * names every code, the ABI version matches the header, and attaching to a segment nobody
 * serves fails with -CHI_ENORUNTIME within the connect timeout and names the segment, also
 * when a stale segment file (empty, or garbage) is left in /dev/shm. */
#include <fcntl.h>
#include <sys/stat.h>

#include "chimaera/module.h"
#include "test_common.h"

static char stale_path[2][128];

static void remove_stale_files(void) { /* async-signal-safe: the watchdog calls it */
    int i;
    for (i = 0; i < 2; i++)
        if (stale_path[i][0]) unlink(stale_path[i]);
}

#define T_EINVAL(expr) T_EQ_RC((expr), -EINVAL)

static void null_handles(void) {
    char buf[64];
    void *p = buf;
    chi_task_t *t = NULL;
    chi_task_t fake;
    chi_shm_ptr_t sp;
    uint64_t id = 0;
    chi_pool_create_opts_t po;
    chi_domain_query_t dq = chi_dq_local_hash(0);

    memset(&fake, 0, sizeof fake);
    memset(&sp, 0, sizeof sp);
    memset(&po, 0, sizeof po);
    po.size = sizeof po;
    po.module = CHI_SM_MODULE_NAME;
    po.name = "x";

    T_EINVAL(chi_client_init(NULL, NULL));
    T_EINVAL(chi_client_finalize(NULL));
    T_EINVAL(chi_client_segment(NULL, buf, sizeof buf));
    T_EINVAL(chi_task_new(NULL, 2, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &t));
    T_ASSERT(t == NULL, "chi_task_new(NULL client) stored a task");
    T_EINVAL(chi_task_submit(NULL, &fake));
    T_EINVAL(chi_task_submit(NULL, NULL));
    T_EINVAL(chi_task_wait(NULL, &fake, 0));
    T_EINVAL(chi_task_wait(NULL, NULL, 0));
    T_EINVAL(chi_task_call(NULL, &fake, 0));
    T_EINVAL(chi_task_del(NULL, &fake));
    T_EINVAL(chi_task_del(NULL, NULL));
    T_ASSERT(!chi_task_is_done(NULL), "chi_task_is_done(NULL) is true");
    T_EINVAL(chi_buffer_alloc(NULL, 64, &p));
    T_EINVAL(chi_buffer_free(NULL, buf));
    T_EINVAL(chi_ptr_to_shm(NULL, buf, &sp));
    T_EINVAL(chi_shm_to_ptr(NULL, sp, 1, &p));
    T_EINVAL(chi_module_register(NULL, CHI_SM_MODULE_NAME));
    T_EINVAL(chi_pool_create(NULL, &po, &id));
    T_EINVAL(chi_pool_get_id(NULL, "x", &id));
    T_EINVAL(chi_pool_destroy(NULL, 2));
    T_EINVAL(chi_runtime_flush(NULL));
    T_EINVAL(chi_runtime_stop(NULL));
    T_EINVAL(chi_runtime_stats(NULL, buf, sizeof buf));

    /* The module API, called from outside any hook with NULL objects. */
    T_EINVAL(chi_container_add_lanes(NULL, 0, 1, CHI_PRIO_LOW_LATENCY));
    (void)chi_container_id(NULL); /* returns a plain id: only "no crash" is promised */
    (void)chi_container_count(NULL);
    (void)chi_container_pool_id(NULL);
    T_ASSERT(chi_lane_by_hash(NULL, 0, 1) < 0, "chi_lane_by_hash(NULL) succeeded");
    T_ASSERT(chi_lane_least_loaded(NULL, 0) < 0, "chi_lane_least_loaded(NULL) succeeded");
    T_ASSERT(chi_rctx_container(NULL) == NULL, "chi_rctx_container(NULL)");
    T_ASSERT(chi_rctx_client(NULL) == NULL, "chi_rctx_client(NULL)");
    T_ASSERT(chi_rctx_replica_count(NULL) == 0, "chi_rctx_replica_count(NULL)");
    T_ASSERT(chi_rctx_replica(NULL, 0) == NULL, "chi_rctx_replica(NULL)");
    T_ASSERT(chi_rctx_shm_ptr(NULL, sp, 1) == NULL, "chi_rctx_shm_ptr(NULL)");
    T_ASSERT(chi_rctx_state(NULL) == NULL, "chi_rctx_state(NULL)");
    T_ASSERT(chi_rctx_worker(NULL) == UINT32_MAX, "chi_rctx_worker(NULL)");
    T_EINVAL(chi_rctx_suspend(NULL));
    T_EINVAL(chi_rctx_resume(NULL));
    T_ASSERT(chi_container_worker_count(NULL) == 0, "chi_container_worker_count(NULL)");
    T_EINVAL(chi_container_add_poller(NULL, NULL, NULL));
    T_EINVAL(chi_container_add_waiting_poller(NULL, NULL, NULL, NULL));
    {
        const chi_module_vtable_t *vt = NULL;
        T_EINVAL(chi_module_describe(NULL, &vt));
        T_EINVAL(chi_module_describe(CHI_SM_MODULE_NAME, NULL));
    }
    T_EINVAL(chi_rt_module_register(NULL, CHI_SM_MODULE_NAME));
    T_EINVAL(chi_rt_pool_create(NULL, CHI_SM_MODULE_NAME, "x", 1, NULL, 0, &id));
    T_EINVAL(chi_rt_pool_find(NULL, "x", &id));
    T_EINVAL(chi_rt_pool_destroy(NULL, 2));
    T_EINVAL(chi_rt_flush(NULL));
    T_EINVAL(chi_rt_request_stop(NULL));
    T_EINVAL(chi_rt_stats_json(NULL, buf, sizeof buf));
}

static void strerror_names_every_code(void) {
    static const int errnos[] = {EINVAL, ETIMEDOUT, EBUSY, EAGAIN, ERANGE, EFAULT, ENOMEM,
                                 ENOENT, EEXIST, EPERM, ENOSPC, EIO};
    const char *chi[CHI_ELAST - CHI_EBASE + 1];
    static const int nonsense[] = {123456, -123456, 4095, -4095, 5000, 2147483647,
                                   -2147483647 - 1};
    size_t i, j;
    const char *s = chi_strerror(0);
    T_ASSERT(s != NULL && *s, "chi_strerror(0) is NULL or empty");
    for (i = 0; i < sizeof errnos / sizeof errnos[0]; i++) {
        s = chi_strerror(-errnos[i]);
        T_ASSERT(s != NULL && *s, "chi_strerror(-%d)", errnos[i]);
        T_ASSERT(chi_strerror(errnos[i]) != NULL, "chi_strerror(%d)", errnos[i]);
    }
    for (i = 0; i <= (size_t)(CHI_ELAST - CHI_EBASE - 1); i++) {
        int code = CHI_EBASE + 1 + (int)i;
        const char *neg = chi_strerror(-code), *pos = chi_strerror(code);
        T_ASSERT(neg != NULL && *neg, "chi_strerror(-%d)", code);
        T_ASSERT(pos != NULL && strcmp(pos, neg) == 0,
                 "chi_strerror(%d) differs from chi_strerror(-%d): \"%s\" vs \"%s\"", code,
                 code, pos ? pos : "(null)", neg);
        chi[i] = neg;
        for (j = 0; j < i; j++)
            T_ASSERT(strcmp(chi[j], neg) != 0, "codes %d and %d share the text \"%s\"",
                     CHI_EBASE + 1 + (int)j, code, neg);
    }
    for (i = 0; i < sizeof nonsense / sizeof nonsense[0]; i++)
        T_ASSERT(chi_strerror(nonsense[i]) != NULL, "chi_strerror(%d) is NULL", nonsense[i]);
}

/* Attaching where nobody serves: -CHI_ENORUNTIME within 1.5 s, a message naming the segment,
 * and nothing created in /dev/shm. */
static void expect_no_runtime(const char *seg, const char *file_before) {
    chi_client_opts_t o;
    chi_client_t *c = NULL;
    char path[160], last[1024];
    int64_t t0, ms;
    int rc;
    struct stat st;

    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.mode = CHI_MODE_ATTACH;
    o.segment = seg;
    t0 = t_now_ns();
    rc = chi_client_init(&o, &c);
    ms = (t_now_ns() - t0) / 1000000;
    snprintf(last, sizeof last, "%s", chi_last_error());
    if (rc != -CHI_ENORUNTIME)
        t_failf(__FILE__, __LINE__, rc, "init on %s (%s): want -CHI_ENORUNTIME", seg,
                file_before);
    T_ASSERT(c == NULL, "failed init stored a handle");
    T_ASSERT(ms <= 1500, "init on %s (%s) took %lld ms, the default timeout is 1000 ms", seg,
             file_before, (long long)ms);
    T_ASSERT(strstr(last, seg) != NULL, "chi_last_error() \"%s\" does not name segment %s",
             last, seg);
    snprintf(path, sizeof path, "/dev/shm/chimaera_%s", seg);
    if (strcmp(file_before, "no file") == 0)
        T_ASSERT(stat(path, &st) != 0, "a failed attach created %s", path);
    printf("no runtime on %s (%s): %lld ms, \"%s\"\n", seg, file_before, (long long)ms, last);
}

static void write_stale(int i, const char *seg, size_t bytes) {
    char junk[4096];
    int fd;
    snprintf(stale_path[i], sizeof stale_path[i], "/dev/shm/chimaera_%s", seg);
    fd = open(stale_path[i], O_CREAT | O_EXCL | O_WRONLY, 0600);
    T_ASSERT(fd >= 0, "create %s: %s", stale_path[i], strerror(errno));
    memset(junk, 0xA7, sizeof junk);
    T_ASSERT(bytes <= sizeof junk && write(fd, junk, bytes) == (ssize_t)bytes, "write junk");
    close(fd);
}

int main(void) {
    char seg[3][64];
    int i;
    t_watchdog("test_errors", 40);
    t_cleanup_hook = remove_stale_files;
    unsetenv("CHIMAERA_EMBEDDED");

    T_ASSERT(chi_abi_version() == (uint32_t)CHI_ABI_PACK(CHI_ABI_MAJOR, CHI_ABI_MINOR),
             "chi_abi_version() = 0x%x", (unsigned)chi_abi_version());
    T_ASSERT(chi_last_error() != NULL, "chi_last_error() is NULL before any failure");
    null_handles();
    strerror_names_every_code();

    for (i = 0; i < 3; i++) snprintf(seg[i], sizeof seg[i], "noruntime%d_%d", (int)getpid(), i);
    expect_no_runtime(seg[0], "no file");
    write_stale(0, seg[1], 0);
    expect_no_runtime(seg[1], "empty stale file");
    write_stale(1, seg[2], 4096);
    expect_no_runtime(seg[2], "garbage stale file");
    remove_stale_files();

    /* A stale segment (no live runtime) is removed on request, once. */
    write_stale(1, seg[2], 4096);
    T_EQ_RC(chi_segment_remove(seg[2]), 1);
    T_ASSERT(access(stale_path[1], F_OK) != 0, "chi_segment_remove left %s", stale_path[1]);
    T_EQ_RC(chi_segment_remove(seg[2]), 0);
    puts("test_errors: ok");
    return T_EXIT_PASS;
}
