/* test_expose_remote: the seed's DT_EXPOSE across nodes (run by test_cluster_expose.py on a
 * two-node cluster, from node 1). Transform (Tests/capi/mods/mod_expose.c) on container 1,
 * which is on node 2, reads the exposed input the client wrote and writes the output back;
 * the remote side's writes into the exposed input come back too. Every byte is checked, for
 * several sizes (one byte to 1 MiB). */
#include "test_common.h"

typedef struct {
    chi_task_t hdr;
    chi_shm_ptr_t in;
    uint64_t in_size;
    chi_shm_ptr_t out;
    uint64_t out_cap;
    uint64_t sum;
    uint32_t container;
    uint32_t pad;
} transform_task_t;

int main(void) {
    chi_client_t *c;
    uint64_t pool;
    t_watchdog("test_expose_remote", 120);
    T_OK(chi_client_init(NULL, &c));
    chi_pool_create_opts_t o = {.size = sizeof o, .module = "chi_test_expose", .name = "expose"};
    T_OK(chi_pool_create(c, &o, &pool));
    static const uint64_t sizes[] = {1, 100, 4096, 65537, 1 << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint64_t n = sizes[k];
        unsigned char *in, *out;
        T_OK(chi_buffer_alloc(c, n, (void **)&in));
        T_OK(chi_buffer_alloc(c, n, (void **)&out));
        uint64_t want = 0;
        for (uint64_t i = 0; i < n; i++) {
            in[i] = (unsigned char)((i * 131 + k * 7 + 1) & 0xff);
            want += in[i];
            out[i] = 0xee;
        }
        chi_domain_query_t dq = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 1);
        chi_task_t *t;
        T_OK(chi_task_new(c, pool, 10, sizeof(transform_task_t), &dq, &t));
        transform_task_t *x = (transform_task_t *)t;
        T_OK(chi_ptr_to_shm(c, in, &x->in));
        T_OK(chi_ptr_to_shm(c, out, &x->out));
        x->in_size = n;
        x->out_cap = n;
        int rc = chi_task_call(c, t, T_WAIT_NS);
        T_ASSERT(rc == 0, "size %llu: rc %d (%s)", (unsigned long long)n, rc, chi_last_error());
        T_ASSERT(x->container == 1, "ran on container %u", x->container);
        T_ASSERT(x->sum == want, "size %llu: the remote side read sum %llu, want %llu (input not sent)",
                 (unsigned long long)n, (unsigned long long)x->sum, (unsigned long long)want);
        for (uint64_t i = 0; i < n; i++) {
            unsigned char orig = (unsigned char)((i * 131 + k * 7 + 1) & 0xff);
            unsigned char mirrored = (unsigned char)(((n - 1 - i) * 131 + k * 7 + 1) & 0xff);
            T_ASSERT(out[i] == (unsigned char)(mirrored ^ 0x5a), "size %llu: out[%llu] = %u",
                     (unsigned long long)n, (unsigned long long)i, out[i]);
            T_ASSERT(in[i] == (unsigned char)~orig, "size %llu: in[%llu] = %u, the remote side wrote %u",
                     (unsigned long long)n, (unsigned long long)i, in[i], (unsigned char)~orig);
        }
        T_OK(chi_task_del(c, t));
        T_OK(chi_buffer_free(c, in));
        T_OK(chi_buffer_free(c, out));
    }
    T_OK(chi_client_finalize(c));
    puts("test_expose_remote: ok");
    return T_EXIT_PASS;
}
