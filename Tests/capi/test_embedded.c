/* Embedded mode: with CHIMAERA_EMBEDDED=1 chi_client_init runs the runtime in this process;
 * the module, pool and Md calls work as against a daemon; finalize stops it and leaves
 * nothing in /dev/shm. A second embedded runtime (chosen by opts.mode this time) starts in
 * the same process afterwards. Needs no daemon, only CHI_MODULE_PATH. */
#include <sys/stat.h>

#include "test_common.h"

static char shm_path[2][160];

static void remove_segments(void) { /* async-signal-safe: the watchdog calls it */
    if (shm_path[0][0]) unlink(shm_path[0]);
    if (shm_path[1][0]) unlink(shm_path[1]);
}

static void round_trip(int n, const chi_client_opts_t *opts, const char *seg) {
    chi_client_t *c = NULL;
    char name[128];
    struct stat st;
    uint64_t pool;
    int64_t t0;
    int i;

    snprintf(shm_path[n], sizeof shm_path[n], "/dev/shm/chimaera_%s", seg);
    T_ASSERT(stat(shm_path[n], &st) != 0, "%s exists before the test", shm_path[n]);
    t0 = t_now_ns();
    T_OK(chi_client_init(opts, &c));
    printf("embedded runtime %s up in %.1f ms\n", seg, (double)(t_now_ns() - t0) / 1e6);
    T_EQ_RC(chi_client_segment(c, name, sizeof name), (int)strlen(seg));
    T_ASSERT(strcmp(name, seg) == 0, "segment \"%s\", want \"%s\"", name, seg);
    T_OK(chi_module_register(c, CHI_SM_MODULE_NAME));
    pool = t_sm_pool(c, "embedded_test", 2);
    for (i = 0; i < 100; i++)
        T_MD_EXPECT(c, pool, chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, (uint64_t)i), 0, 1);
    T_MD_EXPECT(c, pool, chi_dq_global_bcast(), 0, 2);
    T_MD_EXPECT(c, pool, chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0), 4, 1);
    T_OK(chi_client_finalize(c));
    T_ASSERT(stat(shm_path[n], &st) != 0, "%s is left after finalize", shm_path[n]);
}

int main(void) {
    chi_client_opts_t o;
    char seg[2][64];

    t_watchdog("test_embedded", 50);
    t_cleanup_hook = remove_segments;
    if (!getenv("CHI_MODULE_PATH")) t_skip("CHI_MODULE_PATH is not set (modules not found)");
    snprintf(seg[0], sizeof seg[0], "emb%d_a", (int)getpid());
    snprintf(seg[1], sizeof seg[1], "emb%d_b", (int)getpid());

    /* Chosen by the environment: mode AUTO, segment from CHIMAERA_SEGMENT. */
    setenv("CHIMAERA_EMBEDDED", "1", 1);
    setenv("CHIMAERA_SEGMENT", seg[0], 1);
    round_trip(0, NULL, seg[0]);

    /* Chosen by the options, with the environment saying nothing. */
    unsetenv("CHIMAERA_EMBEDDED");
    unsetenv("CHIMAERA_SEGMENT");
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.mode = CHI_MODE_EMBEDDED;
    o.segment = seg[1];
    round_trip(1, &o, seg[1]);
    puts("test_embedded: ok");
    return T_EXIT_PASS;
}
