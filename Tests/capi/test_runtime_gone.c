/* A client whose runtime died (SIGKILL, pid in CHI_DAEMON_PID) is told so: waiting on a task
 * the runtime held, and freeing it, give -CHI_ENORUNTIME with "is gone" and the pid, never
 * "still in flight" (issue 18). Run against a daemon it may kill. */
#include <signal.h>

#include "chimaera/small_message.h"
#include "test_common.h"

int main(void) {
    chi_client_t *c;
    chi_task_t *t = NULL;
    uint64_t pool;
    char pid_text[32];
    const char *p = getenv("CHI_DAEMON_PID");
    pid_t pid = p ? (pid_t)atoi(p) : 0;
    int rc, i;

    t_watchdog("test_runtime_gone", 60);
    T_ASSERT(pid > 0, "CHI_DAEMON_PID is not set");
    snprintf(pid_text, sizeof pid_text, "pid %d", (int)pid);
    c = t_attach();
    chi_pool_create_opts_t o = {.size = sizeof o, .module = CHI_SM_MODULE_NAME, .name = "gone"};
    T_OK(chi_pool_create(c, &o, &pool));
    chi_domain_query_t dq = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0);
    T_OK(chi_task_new(c, pool, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &t));
    chi_task_set_period_ms(t, 1000); /* stays in flight until cancelled */
    T_OK(chi_task_submit(c, t));
    T_ASSERT(kill(pid, SIGKILL) == 0, "kill %d", (int)pid);
    for (i = 0; i < 500 && kill(pid, 0) == 0; i++) usleep(10000);

    rc = chi_task_wait(c, t, 2 * T_SEC_NS);
    T_ASSERT(rc == -CHI_ENORUNTIME, "wait after the runtime died returned %d (%s)", rc, chi_last_error());
    T_ASSERT(strstr(chi_last_error(), "is gone") && strstr(chi_last_error(), pid_text),
             "wait: %s", chi_last_error());
    rc = chi_task_del(c, t);
    T_ASSERT(rc == -CHI_ENORUNTIME, "del after the runtime died returned %d (%s)", rc, chi_last_error());
    T_ASSERT(strstr(chi_last_error(), "is gone") && !strstr(chi_last_error(), "in flight"),
             "del: %s", chi_last_error());
    puts("test_runtime_gone: ok");
    return T_EXIT_PASS;
}
