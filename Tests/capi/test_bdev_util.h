/* Helpers shared by the bdev tests that run against a daemon. The backend comes from
 * CHI_BDEV_URL: "fs://<dir>" puts each pool's files in <dir> (created with
 * CHI_BDEV_CREATE_TEMPORARY, so destroying the pool removes them) or "ram://"; CHI_BDEV_FLAGS
 * adds create flags. Pool names
 * carry the process id, so tests on one daemon never meet. */
#ifndef CHI_TEST_BDEV_UTIL_H
#define CHI_TEST_BDEV_UTIL_H

#include "test_common.h" /* first: it defines _GNU_SOURCE */

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include "chimaera/bdev.h"

#define T_DQ0 chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0)
/* __atomic_load_n takes integers and pointers only. */
#define T_LOADD(field) (*(volatile double *)&(field))

static chi_client_t *C;
static const char *t_fs_dir; /* NULL on ram:// */

static inline void t_setup(void) {
    const char *url = getenv("CHI_BDEV_URL");
    if (url == NULL || *url == 0) t_skip("CHI_BDEV_URL is not set (Tests/e2e/test_bdev.py sets it)");
    C = t_attach();
    if (strncmp(url, "fs://", 5) == 0) t_fs_dir = url + 5;
    T_OK(chi_module_register(C, CHI_BDEV_MODULE_NAME));
}

static inline void t_teardown(void) { T_OK(chi_client_finalize(C)); }

/* The file of container `container` of the pool created as t_pool(name, ...). */
static inline void t_dev_path(char *buf, size_t cap, const char *name, uint32_t container) {
    snprintf(buf, cap, "%s/p%d_%s.%u", t_fs_dir, (int)getpid(), name, container);
}

static inline uint64_t t_pool(const char *name, uint32_t containers, uint64_t size,
                              uint32_t flags) {
    char url[CHI_BDEV_URL_MAX], pname[64];
    uint64_t id = 0;
    if (t_fs_dir != NULL)
        snprintf(url, sizeof url, "fs://%s/p%d_%s", t_fs_dir, (int)getpid(), name);
    else
        snprintf(url, sizeof url, "ram://%s", name);
    snprintf(pname, sizeof pname, "bdev_%d_%s", (int)getpid(), name);
    /* CHI_BDEV_FLAGS adds create flags to every pool (e.g. the data lanes' placement). */
    if (getenv("CHI_BDEV_FLAGS") != NULL) flags |= (uint32_t)strtoul(getenv("CHI_BDEV_FLAGS"), NULL, 0);
    chi_bdev_create_params_t p = chi_bdev_params(url, size, flags | CHI_BDEV_CREATE_TEMPORARY);
    int rc = chi_bdev_create(C, pname, containers, &p, &id);
    if (rc < 0) t_failf(__FILE__, __LINE__, rc, "Create(%s, %llu)", url, (unsigned long long)size);
    return id;
}

static inline void t_stats(uint64_t pool, uint32_t container, chi_bdev_poll_stats_task_t *out) {
    int rc = chi_bdev_poll_stats(C, pool, chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS,
                                                           container), out, T_WAIT_NS);
    if (rc < 0) t_failf(__FILE__, __LINE__, rc, "PollStats(container %u)", container);
}

static inline uint64_t t_mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* Bytes that differ from block to block and from seed to seed. */
static inline void t_fill(unsigned char *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = t_mix(seed * 0x9E3779B97F4A7C15ull + i);
        memcpy(p + i, &v, n - i < 8 ? n - i : 8);
    }
}

static inline bool t_check_fill(const unsigned char *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = t_mix(seed * 0x9E3779B97F4A7C15ull + i);
        if (memcmp(p + i, &v, n - i < 8 ? n - i : 8) != 0) return false;
    }
    return true;
}

static inline size_t t_first_diff(const unsigned char *a, const unsigned char *b, size_t n) {
    size_t i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

static int t_block_cmp(const void *a, const void *b) {
    const chi_bdev_block_t *x = a, *y = b;
    if (x->container != y->container) return x->container < y->container ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* No two blocks of one container overlap; every block lies inside its device. */
static inline void t_check_disjoint(const chi_bdev_block_t *blocks, size_t n, uint64_t dev) {
    chi_bdev_block_t *v = malloc((n ? n : 1) * sizeof *v);
    T_ASSERT(v != NULL, "out of memory");
    memcpy(v, blocks, n * sizeof *v);
    qsort(v, n, sizeof *v, t_block_cmp);
    for (size_t i = 0; i < n; i++) {
        T_ASSERT(v[i].size > 0 && v[i].offset + v[i].size <= dev, "block %llu+%llu outside",
                 (unsigned long long)v[i].offset, (unsigned long long)v[i].size);
        if (i > 0 && v[i - 1].container == v[i].container)
            T_ASSERT(v[i - 1].offset + v[i - 1].size <= v[i].offset,
                     "blocks %llu+%llu and %llu+%llu of container %u overlap",
                     (unsigned long long)v[i - 1].offset, (unsigned long long)v[i - 1].size,
                     (unsigned long long)v[i].offset, (unsigned long long)v[i].size,
                     v[i].container);
    }
    free(v);
}

/* Waits for an io task that must succeed having moved `size` bytes. */
static inline void t_wait_ok(chi_task_t *t, const char *what, uint64_t size) {
    int rc = chi_task_wait(C, t, T_WAIT_NS);
    if (rc < 0) t_failf(__FILE__, __LINE__, rc, "waiting for %s", what);
    if (t->rc < 0) t_failf(__FILE__, __LINE__, t->rc, "%s", what);
    T_ASSERT(((chi_bdev_io_task_t *)t)->ret == size, "%s moved %llu bytes, want %llu", what,
             (unsigned long long)((chi_bdev_io_task_t *)t)->ret, (unsigned long long)size);
}

/* Waits until a periodic task has run at least `runs` times. */
static inline void t_wait_runs(chi_task_t *t, uint32_t runs) {
    int64_t t0 = t_now_ns();
    while (T_LOAD(t->runs) < runs) {
        T_ASSERT(t_now_ns() - t0 < 5 * T_SEC_NS, "periodic task ran %u times, want %u",
                 T_LOAD(t->runs), runs);
        t_sleep_ms(2);
    }
}

/* The file holds `data` at `offset`, read through a descriptor of our own. */
static inline void t_check_file(const char *name, uint32_t container, uint64_t offset,
                                const unsigned char *data, size_t n) {
    char path[512];
    unsigned char *got = malloc(n);
    t_dev_path(path, sizeof path, name, container);
    int fd = open(path, O_RDONLY);
    T_ASSERT(fd >= 0 && got != NULL, "cannot open %s: %s", path, strerror(errno));
    T_ASSERT(pread(fd, got, n, (off_t)offset) == (ssize_t)n, "short read of %s", path);
    T_ASSERT(memcmp(got, data, n) == 0, "%s differs at byte %zu of %llu", path,
             t_first_diff(got, data, n), (unsigned long long)offset);
    close(fd);
    free(got);
}

/* The daemon (CHI_DAEMON_PID) holds the device file open with O_DIRECT. */
static inline void t_check_direct(const char *name, uint32_t container) {
    const char *pid = getenv("CHI_DAEMON_PID");
    char path[512], dir[64], link[600], target[600], info[600];
    bool direct = false, open_at_all = false;
    if (pid == NULL || *pid == 0) return;
    t_dev_path(path, sizeof path, name, container);
    snprintf(dir, sizeof dir, "/proc/%s/fd", pid);
    DIR *d = opendir(dir);
    T_ASSERT(d != NULL, "cannot list %s", dir);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        snprintf(link, sizeof link, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n <= 0) continue;
        target[n] = 0;
        if (strcmp(target, path) != 0) continue;
        open_at_all = true;
        snprintf(info, sizeof info, "/proc/%s/fdinfo/%s", pid, e->d_name);
        FILE *f = fopen(info, "r");
        unsigned long flags = 0;
        char line[128];
        while (f != NULL && fgets(line, sizeof line, f) != NULL)
            if (sscanf(line, "flags: %lo", &flags) == 1) break;
        if (f != NULL) fclose(f);
        direct = direct || (flags & O_DIRECT) != 0;
    }
    closedir(d);
    T_ASSERT(open_at_all, "the daemon does not hold %s open", path);
    T_ASSERT(direct, "the daemon holds %s open without O_DIRECT", path);
    printf("%s is open with O_DIRECT in the daemon\n", path);
}

#endif
