/* Bad input reaches the daemon and comes back as an error code, and the runtime keeps
 * serving: an unknown module (-CHI_ENOMODULE, message naming the searched paths), an unknown
 * pool id (-CHI_ENOPOOL), an unknown method (-CHI_ENOMETHOD), a task smaller than its
 * method's layout or with a forged header (-CHI_EBADTASK). After each one a normal Md works. */
#include "test_common.h"

static chi_client_t *c;
static uint64_t pool;

static void still_works(int line) {
    int32_t ret = 0;
    int rc = t_md(c, pool, chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 1), 0, &ret);
    if (rc < 0 || ret != 1)
        t_failf(__FILE__, line, rc, "a normal Md after the error: rc %d ret %d", rc, (int)ret);
}

/* Runs a task of `size` bytes for (pool_id, method); returns the call's result. */
static int run_raw(uint64_t pool_id, uint32_t method, size_t size, chi_task_t **keep) {
    chi_domain_query_t dq = chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0);
    chi_task_t *t = NULL;
    int rc = T_OK(chi_task_new(c, pool_id, method, size, &dq, &t));
    rc = chi_task_call(c, t, T_WAIT_NS);
    if (rc == -ETIMEDOUT) t_failf(__FILE__, __LINE__, rc, "pool %llu method %u",
                                  (unsigned long long)pool_id, method);
    T_ASSERT(rc == t->rc, "call returned %d, task rc %d", rc, t->rc);
    if (keep) *keep = t;
    else T_OK(chi_task_del(c, t));
    return rc;
}

static void unknown_module(void) {
    const char *mp = getenv("CHI_MODULE_PATH");
    chi_pool_create_opts_t po;
    char last[2048], first_dir[1024];
    uint64_t id = 0;
    int rc = chi_module_register(c, "no_such_mod");
    snprintf(last, sizeof last, "%s", chi_last_error());
    T_EQ_RC(rc, -CHI_ENOMODULE);
    T_ASSERT(strstr(last, "no_such_mod") != NULL, "message \"%s\" does not name the module", last);
    if (mp && *mp) { /* the runner sets it for the daemon and for us alike */
        snprintf(first_dir, sizeof first_dir, "%s", mp);
        first_dir[strcspn(first_dir, ":")] = 0;
        T_ASSERT(strstr(last, first_dir) != NULL,
                 "message \"%s\" does not name the searched path %s", last, first_dir);
    }
    printf("unknown module: \"%s\"\n", last);
    still_works(__LINE__);

    memset(&po, 0, sizeof po);
    po.size = sizeof po;
    po.module = "no_such_mod";
    po.name = "errors_runtime_no_module";
    T_EQ_RC(chi_pool_create(c, &po, &id), -CHI_ENOMODULE);
    T_EQ_RC(chi_pool_get_id(c, "errors_runtime_no_module", &id), -CHI_ENOPOOL);
    /* Modules are named, not given by path: a path never loads. */
    rc = chi_module_register(c, "../small_message");
    T_ASSERT(rc == -CHI_ENOMODULE || rc == -EINVAL, "register(\"../small_message\") gave %d (%s)",
             rc, chi_strerror(rc));
    still_works(__LINE__);
}

static void bad_tasks(void) {
    chi_domain_query_t dq = chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0);
    chi_task_t *t = NULL;
    uint32_t real_size;
    int rc;

    T_EQ_RC(run_raw(0xDEAD0000BEEFull, CHI_SM_MD, sizeof(chi_sm_md_task_t), NULL), -CHI_ENOPOOL);
    still_works(__LINE__);
    T_EQ_RC(run_raw(0, CHI_SM_MD, sizeof(chi_sm_md_task_t), NULL), -CHI_ENOPOOL);
    still_works(__LINE__);
    T_EQ_RC(chi_pool_destroy(c, 0xDEAD0000BEEFull), -CHI_ENOPOOL);
    still_works(__LINE__);

    T_EQ_RC(run_raw(pool, 999, sizeof(chi_sm_md_task_t), NULL), -CHI_ENOMETHOD);
    still_works(__LINE__);
    T_EQ_RC(run_raw(pool, CHI_METHOD_CUSTOM + 77, 4096, NULL), -CHI_ENOMETHOD);
    still_works(__LINE__);
    T_EQ_RC(run_raw(CHI_ADMIN_POOL_ID, 999, sizeof(chi_task_t) + 64, NULL), -CHI_ENOMETHOD);
    still_works(__LINE__);

    T_EQ_RC(run_raw(pool, CHI_SM_MD, sizeof(chi_task_t), NULL), -CHI_EBADTASK);
    still_works(__LINE__);
    T_EQ_RC(run_raw(pool, CHI_SM_IO, sizeof(chi_sm_md_task_t), NULL), -CHI_EBADTASK);
    still_works(__LINE__);

    /* A forged header: the size field claims far more than was allocated. The runtime must
     * bounds-check it rather than read past the task. submit may refuse it itself. */
    T_OK(chi_task_new(c, pool, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &t));
    real_size = t->size;
    t->size = 0x7FFFFFF0u;
    rc = chi_task_submit(c, t);
    if (rc >= 0) {
        T_EQ_RC(chi_task_wait(c, t, T_WAIT_NS), 0);
        T_EQ_RC(t->rc, -CHI_EBADTASK);
    } else {
        T_ASSERT(rc == -EINVAL || rc == -CHI_EBADTASK, "submit of a forged size: %d (%s)", rc,
                 chi_strerror(rc));
    }
    t->size = real_size;
    T_OK(chi_task_del(c, t));
    still_works(__LINE__);

    /* A domain query with no scope, and one with two. */
    dq = chi_dq_make(CHI_DQ_HASH, CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0, 1);
    rc = t_md(c, pool, dq, 0, NULL);
    T_ASSERT(rc == -EINVAL || rc == -CHI_EBADTASK, "a query with no scope gave %d (%s)", rc,
             chi_strerror(rc));
    dq = chi_dq_make(CHI_DQ_LOCAL | CHI_DQ_DIRECT | CHI_DQ_ID, CHI_SUBDOMAIN_GLOBAL_CONTAINERS,
                     0, 1);
    rc = t_md(c, pool, dq, 0, NULL);
    T_ASSERT(rc == -EINVAL || rc == -CHI_EBADTASK, "a query with two scopes gave %d (%s)", rc,
             chi_strerror(rc));
    still_works(__LINE__);
}

int main(void) {
    t_watchdog("test_errors_runtime", 50);
    c = t_attach();
    pool = t_sm_pool(c, "errors_runtime", 2);
    still_works(__LINE__);
    unknown_module();
    bad_tasks();
    T_OK(chi_client_finalize(c));
    puts("test_errors_runtime: ok");
    return T_EXIT_PASS;
}
