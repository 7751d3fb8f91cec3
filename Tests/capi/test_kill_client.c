/* A client that dies mid-task loses nothing for the others. Children attach, then are
 * SIGKILLed: one while asleep in chi_task_wait on a periodic task, one with 256 tasks in
 * flight, one in a tight loop of task and buffer allocations (so it likely dies inside the
 * allocator). Then this process attaches and runs 100 Md, allocations and a flush.
 * The parent attaches only after the forks: a process with runtime threads should not fork. */
#include <poll.h>
#include <sys/wait.h>

#include "test_common.h"

enum { WAITER, FLOODER, ALLOCATOR, NKINDS };
static const char *kind_name[NKINDS] = {"waiter", "flooder", "allocator"};
static pid_t child = -1;

static void kill_child(void) { /* async-signal-safe: the watchdog calls it */
    if (child > 0) kill(child, SIGKILL);
}

/* The child: attach, get going, tell the parent (one byte on fd), carry on until killed. */
static void child_main(int kind, int fd) {
    chi_client_t *c;
    uint64_t pool;
    chi_domain_query_t dq = chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 1);
    chi_task_t *t = NULL;
    void *buf = NULL;
    int i;

    t_watchdog(kind_name[kind], 30); /* fork clears alarms: a child nobody kills still ends */
    c = t_attach();
    pool = t_sm_pool(c, kind == WAITER ? "kill_periodic" : "kill_test", 2);
    if (kind == WAITER) {
        T_OK(chi_task_new(c, pool, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &t));
        chi_task_set_period_ms(t, 10);
        T_OK(chi_task_submit(c, t));
        T_ASSERT(write(fd, "w", 1) == 1, "pipe");
        chi_task_wait(c, t, 25 * T_SEC_NS); /* killed in here */
    } else if (kind == FLOODER) {
        for (i = 0; i < 256; i++) {
            T_OK(chi_task_new(c, pool, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &t));
            ((chi_sm_md_task_t *)t)->depth = 3;
            if (chi_task_submit(c, t) < 0) break;
        }
        T_ASSERT(write(fd, "f", 1) == 1, "pipe");
    } else {
        T_ASSERT(write(fd, "a", 1) == 1, "pipe");
        for (i = 0;; i++) {
            T_OK(chi_buffer_alloc(c, 64 + (size_t)(i % 64) * 4096, &buf));
            T_OK(chi_task_new(c, pool, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &t));
            T_OK(chi_task_del(c, t));
            T_OK(chi_buffer_free(c, buf));
        }
    }
    for (;;) pause();
}

static void run_and_kill(int kind) {
    int fds[2], status = 0;
    struct pollfd p;
    char b;
    T_ASSERT(pipe(fds) == 0, "pipe");
    fflush(NULL);
    child = fork();
    T_ASSERT(child >= 0, "fork");
    if (child == 0) {
        close(fds[0]);
        t_cleanup_hook = NULL;
        child_main(kind, fds[1]);
        _exit(T_EXIT_FAIL);
    }
    close(fds[1]);
    p.fd = fds[0];
    p.events = POLLIN;
    T_ASSERT(poll(&p, 1, 15000) == 1 && read(fds[0], &b, 1) == 1,
             "the %s child did not get going within 15 s (it printed why, if it failed)",
             kind_name[kind]);
    close(fds[0]);
    t_sleep_ms(kind == ALLOCATOR ? 50 : 100); /* let it settle into the wait / the loop */
    T_ASSERT(kill(child, SIGKILL) == 0, "kill");
    T_ASSERT(waitpid(child, &status, 0) == child, "waitpid");
    T_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
             "the %s child exited (status 0x%x) before it was killed", kind_name[kind], status);
    child = -1;
    printf("killed the %s child\n", kind_name[kind]);
}

int main(void) {
    chi_client_t *c;
    uint64_t pool, periodic;
    void *buf = NULL;
    int i, kind;

    t_watchdog("test_kill_client", 55);
    t_cleanup_hook = kill_child;
    if (!getenv("CHIMAERA_SEGMENT")) t_skip("CHIMAERA_SEGMENT is not set");
    for (kind = 0; kind < NKINDS; kind++) run_and_kill(kind);

    c = t_attach();
    pool = t_sm_pool(c, "kill_test", 2);
    for (i = 0; i < 100; i++)
        T_MD_EXPECT(c, pool, chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, (uint64_t)i), 0, 1);
    for (i = 0; i < 64; i++) {
        T_OK(chi_buffer_alloc(c, 64 + (size_t)i * 4096, &buf));
        T_OK(chi_buffer_free(c, buf));
    }
    T_OK(chi_runtime_flush(c));
    /* The dead waiter's periodic task still runs; destroying its pool ends it. */
    T_OK(chi_pool_get_id(c, "kill_periodic", &periodic));
    T_OK(chi_pool_destroy(c, periodic));
    T_MD_EXPECT(c, pool, chi_dq_global_bcast(), 0, 2);
    T_OK(chi_client_finalize(c));
    puts("test_kill_client: ok");
    return T_EXIT_PASS;
}
