/* test_no_alloc: after warm-up, 10,000 synchronous Md calls make no heap allocation in the
 * daemon. The runner preloads preload/malloc_count.c into the daemon; the count lives in the
 * file named by $CHI_MALLOC_COUNT_FILE, which this test reads before and after. */
#include <fcntl.h>
#include <sys/mman.h>

#include "test_common.h"

static uint64_t read_count(const volatile uint64_t *c) { return __atomic_load_n(c, __ATOMIC_ACQUIRE); }

int main(void) {
    const char *path = getenv("CHI_MALLOC_COUNT_FILE");
    chi_client_t *c;
    uint64_t pool;
    int32_t ret;
    t_watchdog("test_no_alloc", 60);
    if (!path) {
        puts("CHI_MALLOC_COUNT_FILE is not set");
        return T_EXIT_SKIP;
    }
    int fd = open(path, O_RDONLY);
    T_ASSERT(fd >= 0, "open %s", path);
    const volatile uint64_t *count = mmap(NULL, 8, PROT_READ, MAP_SHARED, fd, 0);
    T_ASSERT(count != MAP_FAILED, "mmap %s", path);
    T_ASSERT(read_count(count) > 0, "the daemon counted no allocation at all: is the preload active?");

    T_OK(chi_client_init(NULL, &c));
    chi_pool_create_opts_t o = {.size = sizeof o, .module = "small_message", .name = "noalloc"};
    T_OK(chi_pool_create(c, &o, &pool));
    chi_domain_query_t dq = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0);
    for (int i = 0; i < 2000; i++) T_OK(chi_sm_md(c, pool, dq, 0, &ret));
    uint64_t before = read_count(count);
    for (int i = 0; i < 10000; i++) {
        T_OK(chi_sm_md(c, pool, dq, 0, &ret));
        T_ASSERT(ret == 1, "Md ret %d", ret);
    }
    uint64_t after = read_count(count);
    printf("daemon heap allocations during 10000 sync Md: %llu\n", (unsigned long long)(after - before));
    T_ASSERT(after == before, "the daemon allocated %llu times during 10000 sync Md",
             (unsigned long long)(after - before));
    T_OK(chi_client_finalize(c));
    puts("test_no_alloc: ok");
    return T_EXIT_PASS;
}
