/* The seed's spelling of a bdev URL, fs::///<dir>/x.bin (and ram::), creates a device
 * beside the fs:// spelling; a relative path is still refused.
 * CHI_BDEV_URL must be fs://<dir> (Tests/e2e/test_bdev.py sets it). */
#include "test_bdev_util.h"

static uint64_t create(const char *url, const char *name, int want_rc) {
    char pname[64];
    uint64_t id = 0;
    snprintf(pname, sizeof pname, "seed_%d_%s", (int)getpid(), name);
    chi_bdev_create_params_t p = chi_bdev_params(url, 4u << 20, CHI_BDEV_CREATE_TEMPORARY);
    int rc = chi_bdev_create(C, pname, 1, &p, &id);
    T_ASSERT(rc == want_rc, "Create(%s) returned %d (%s), want %d", url, rc, chi_last_error(), want_rc);
    return id;
}

int main(void) {
    char url[CHI_BDEV_URL_MAX];
    t_watchdog("test_bdev_seed_url", 60);
    t_setup();
    T_ASSERT(t_fs_dir != NULL, "CHI_BDEV_URL is not fs://<dir>");
    snprintf(url, sizeof url, "fs::///%s/seed_%d.bin", t_fs_dir + 1, (int)getpid());
    uint64_t fs = create(url, "fs", 0);
    uint64_t ram = create("ram::///x", "ram", 0);
    create("fs::relative/x.bin", "rel", -EINVAL);
    T_OK(chi_pool_destroy(C, fs));
    T_OK(chi_pool_destroy(C, ram));
    t_teardown();
    puts("test_bdev_seed_url: ok");
    return T_EXIT_PASS;
}
