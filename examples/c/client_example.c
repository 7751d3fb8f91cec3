/* client_example.c: the seed's "Client API Example" in C. Registers the small_message module,
 * creates the pool "ipc_test", runs 256 synchronous Md calls spread over the pool's
 * containers by direct hash, checks each returns 1, and prints the latency.
 *
 * Build (installed prefix):
 *   cc -O2 client_example.c $(pkg-config --cflags --libs chimaera) -o client_example
 * or with CMake: find_package(Chimaera CONFIG REQUIRED), see CMakeLists.txt beside this file.
 * Run against a daemon:
 *   chimaera start --segment demo --detach --pid-file /tmp/chimaera.pid
 *   CHIMAERA_SEGMENT=demo ./client_example
 *   chimaera stop --segment demo
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <chimaera/chimaera.h>
#include <chimaera/small_message.h>

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Prints what failed; chi_last_error() is read first, as the next chi_* call replaces it. */
static int fail(const char *what, int rc) {
    char detail[512];
    snprintf(detail, sizeof detail, "%s", chi_last_error());
    fprintf(stderr, "client_example: %s: %s (%s)\n", what, chi_strerror(rc), detail);
    return 1;
}

/* The seed's program: register, create the pool, time 256 Md calls. Returns 0 or 1. */
static int run(chi_client_t *client) {
    const size_t ops = 256;
    const uint32_t depth = 0;
    chi_pool_create_opts_t opts;
    uint64_t pool_id = 0;
    double start, usec;
    size_t i;
    int rc;

    rc = chi_module_register(client, CHI_SM_MODULE_NAME);
    if (rc < 0) return fail("chi_module_register(small_message)", rc);

    memset(&opts, 0, sizeof opts);
    opts.size = sizeof opts;
    opts.module = CHI_SM_MODULE_NAME;
    opts.name = "ipc_test";
    rc = chi_pool_create(client, &opts, &pool_id);
    if (rc < 0) return fail("chi_pool_create(ipc_test)", rc);

    printf("OPS: %zu\n", ops);
    start = now_us();
    for (i = 0; i < ops; ++i) {
        int32_t ret = 0;
        rc = chi_sm_md(client, pool_id,
                       chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, i), depth, &ret);
        if (rc < 0) return fail("Md", rc);
        if (ret != 1) {
            fprintf(stderr, "client_example: Md #%zu returned %d, expected 1\n", i, (int)ret);
            return 1;
        }
    }
    usec = now_us() - start;
    printf("Latency: %zu ops, %.1f us total, %.3f us/op, %.3f MOps/s\n", ops, usec,
           usec / (double)ops, (double)ops / usec);
    return 0;
}

int main(void) {
    chi_client_t *client = NULL;
    int rc = chi_client_init(NULL, &client); /* the segment comes from $CHIMAERA_SEGMENT */
    if (rc < 0) return fail("chi_client_init", rc);
    rc = run(client);
    chi_client_finalize(client);
    return rc;
}
