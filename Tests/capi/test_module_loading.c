/* test_module_loading: the runtime refuses a module built for another ABI major with a message
 * naming both versions, refuses a shared object without chi_module_entry, and keeps serving.
 * The runner builds the modules into a directory listed in the daemon's runtime.module_path. */
#include "test_common.h"

int main(void) {
    chi_client_t *c;
    char want[64];
    int rc;
    t_watchdog("test_module_loading", 60);
    T_OK(chi_client_init(NULL, &c));

    rc = chi_module_register(c, "chi_test_bad_abi");
    T_ASSERT(rc == -CHI_EABI, "bad ABI module: rc %d (%s), want -CHI_EABI", rc, chi_strerror(rc));
    snprintf(want, sizeof want, "ABI %d.3", CHI_ABI_MAJOR + 1);
    T_ASSERT(strstr(chi_last_error(), want) != NULL, "message lacks \"%s\": %s", want, chi_last_error());
    snprintf(want, sizeof want, "ABI %d.%d", CHI_ABI_MAJOR, CHI_ABI_MINOR);
    T_ASSERT(strstr(chi_last_error(), want) != NULL, "message lacks \"%s\": %s", want, chi_last_error());

    rc = chi_module_register(c, "chi_test_no_entry");
    T_ASSERT(rc == -CHI_ENOMODULE, "no-entry module: rc %d (%s), want -CHI_ENOMODULE", rc, chi_strerror(rc));
    T_ASSERT(strstr(chi_last_error(), "chi_module_entry") != NULL, "message lacks the symbol: %s",
             chi_last_error());

    /* Still serving. */
    T_OK(chi_module_register(c, "small_message"));
    chi_pool_create_opts_t o = {.size = sizeof o, .module = "small_message", .name = "after_bad"};
    uint64_t pool;
    T_OK(chi_pool_create(c, &o, &pool));
    int32_t ret = 0;
    T_OK(chi_sm_md(c, pool, chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0), 0, &ret));
    T_ASSERT(ret == 1, "Md ret %d", ret);
    T_OK(chi_client_finalize(c));
    puts("test_module_loading: ok");
    return T_EXIT_PASS;
}
