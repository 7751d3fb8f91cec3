/* bdev_example.c: a block-device round trip through the runtime: create a bdev pool (file
 * backend under $TMPDIR, or ram:// with --ram), allocate 16 x 1 MiB, write each with a
 * pattern (flushed), read each back, compare byte for byte, free, and print the bandwidth.
 *
 * Build (installed prefix):
 *   cc -O2 bdev_example.c $(pkg-config --cflags --libs chimaera) -o bdev_example
 * Run against a daemon:
 *   chimaera start --segment demo --detach
 *   CHIMAERA_SEGMENT=demo ./bdev_example
 *   chimaera stop --segment demo
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <chimaera/bdev.h>
#include <chimaera/chimaera.h>

#define MIB (1024u * 1024u)
#define COUNT 16
#define TIMEOUT_NS (30ll * 1000000000ll)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what, int rc) {
    fprintf(stderr, "bdev_example: %s: %s (%s)\n", what, chi_strerror(rc), chi_last_error());
    return 1;
}

int main(int argc, char **argv) {
    int ram = argc > 1 && strcmp(argv[1], "--ram") == 0;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char url[CHI_BDEV_URL_MAX], name[64];
    chi_client_t *c;
    uint64_t pool;
    chi_bdev_block_t blocks[COUNT];
    unsigned char *buf;
    int rc;

    snprintf(url, sizeof url, ram ? "ram://" : "fs://%s/chi_bdev_example_%d.bin", tmp, (int)getpid());
    snprintf(name, sizeof name, "bdev_example_%d", (int)getpid());
    if ((rc = chi_client_init(NULL, &c)) < 0) return fail("chi_client_init", rc);
    chi_bdev_create_params_t p = chi_bdev_params(url, 64ull * MIB, CHI_BDEV_CREATE_TEMPORARY);
    if ((rc = chi_bdev_create(c, name, 1, &p, &pool)) < 0) return fail("create", rc);
    if ((rc = chi_buffer_alloc(c, MIB, (void **)&buf)) < 0) return fail("chi_buffer_alloc", rc);
    chi_domain_query_t dq = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0);
    for (int i = 0; i < COUNT; i++) {
        uint32_t n = 0;
        rc = chi_bdev_allocate(c, pool, dq, MIB, &blocks[i], 1, &n, TIMEOUT_NS);
        if (rc < 0 || n != 1) return fail("allocate", rc < 0 ? rc : -ENOSPC);
    }
    double t0 = now_s();
    for (int i = 0; i < COUNT; i++) {
        memset(buf, 0x40 + i, MIB);
        if ((rc = chi_bdev_write(c, pool, dq, buf, MIB, blocks[i], CHI_BDEV_WRITE_FLUSH, TIMEOUT_NS)) < 0)
            return fail("write", rc);
    }
    double t1 = now_s();
    for (int i = 0; i < COUNT; i++) {
        memset(buf, 0, MIB);
        if ((rc = chi_bdev_read(c, pool, dq, buf, MIB, blocks[i], TIMEOUT_NS)) < 0) return fail("read", rc);
        for (unsigned k = 0; k < MIB; k++) {
            if (buf[k] != (unsigned char)(0x40 + i)) {
                fprintf(stderr, "bdev_example: block %d byte %u differs\n", i, k);
                return 1;
            }
        }
    }
    double t2 = now_s();
    for (int i = 0; i < COUNT; i++) chi_bdev_free(c, pool, dq, blocks[i], TIMEOUT_NS);
    chi_buffer_free(c, buf);
    chi_pool_destroy(c, pool);
    chi_client_finalize(c);
    printf("bdev %s: %d x 1 MiB written (flushed) at %.0f MB/s, read back and checked at %.0f MB/s\n",
           ram ? "ram://" : "fs://", COUNT, COUNT * MIB / 1e6 / (t1 - t0), COUNT * MIB / 1e6 / (t2 - t1));
    return 0;
}
