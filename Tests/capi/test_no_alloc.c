/* test_no_alloc: after warm-up, 10,000 synchronous Md calls make no heap allocation in the
 * daemon, for each kind of query: one container by id, a broadcast over a pool's 4
 * containers (replicas and their folding), the containers of one physical node (choose-one
 * and broadcast). The runner preloads preload/malloc_count.c into the daemon; the count
 * lives in the file named by $CHI_MALLOC_COUNT_FILE, which this test reads before and after. */
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
    chi_pool_create_opts_t o = {.size = sizeof o, .module = "small_message", .name = "noalloc",
                                .containers_per_node = 4};
    T_OK(chi_pool_create(c, &o, &pool));
    struct {
        const char *what;
        chi_domain_query_t dq;
        int32_t want;
    } cases[] = {
        {"direct id", chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0), 1},
        {"global broadcast", chi_dq_global_bcast(), 4},
        {"physical node, choose one", chi_dq_direct_id(CHI_SUBDOMAIN_PHYSICAL_NODE, 1), 1},
        {"physical node, broadcast",
         chi_dq_make(CHI_DQ_DIRECT | CHI_DQ_ID | CHI_DQ_BCAST, CHI_SUBDOMAIN_PHYSICAL_NODE, 1, 1), 4},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        /* Warm-up: 2000 calls and at least 250 ms, so that the orchestrator has looked at
         * the new pool's lanes (its first look after a change of lanes sizes its tables; its
         * period is at most 80 ms). */
        int64_t t0 = t_now_ns();
        for (int i = 0; i < 2000 || t_now_ns() - t0 < 250000000; i++)
            T_OK(chi_sm_md(c, pool, cases[k].dq, 0, &ret));
        uint64_t before = read_count(count);
        for (int i = 0; i < 10000; i++) {
            T_OK(chi_sm_md(c, pool, cases[k].dq, 0, &ret));
            T_ASSERT(ret == cases[k].want, "%s: Md ret %d, expected %d", cases[k].what, ret, cases[k].want);
        }
        uint64_t after = read_count(count);
        printf("daemon heap allocations during 10000 sync Md (%s): %llu\n", cases[k].what,
               (unsigned long long)(after - before));
        T_ASSERT(after == before, "the daemon allocated %llu times during 10000 sync Md (%s)",
                 (unsigned long long)(after - before), cases[k].what);
    }
    T_OK(chi_client_finalize(c));
    puts("test_no_alloc: ok");
    return T_EXIT_PASS;
}
