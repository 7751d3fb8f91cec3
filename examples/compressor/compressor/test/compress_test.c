/* compress_test: round-trips a file (default: 64 MiB of generated text) through the compressor
 * module's Compress and Decompress, and checks the result byte for byte.
 *
 *   cmake -S examples/compressor -B build -DCMAKE_PREFIX_PATH=<chimaera prefix> \
 *         -DCMAKE_INSTALL_PREFIX=<prefix> && cmake --build build && cmake --install build
 *   CHIMAERA_SEGMENT=<segment> <prefix>/bin/compress_test [FILE] [--level N]
 *
 * The runtime serving the segment must find libexample_compressor.so (<prefix>/lib/chimaera in
 * CHI_MODULE_PATH or runtime.module_path), and its segment must hold the file about three times
 * over (data, compressed data, result). Exits 0 when the bytes match, 1 otherwise. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <compressor/compressor_client.h>

static int fail(const char *what, int rc) {
    fprintf(stderr, "compress_test: %s: %s (%s)\n", what, chi_strerror(rc), chi_last_error());
    return 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 64 MiB of log-like text: compressible, but not trivially. */
static void generate(unsigned char *p, size_t n) {
    static const char *words[] = {"request", "served", "from", "cache", "miss", "disk",
                                  "latency", "bytes", "worker", "lane", "pool", "task"};
    size_t at = 0;
    unsigned long long i = 0, x = 88172645463325252ull;
    while (at < n) {
        char line[128];
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int len = snprintf(line, sizeof line, "%012llu %s %s %s %llu us\n", i++,
                           words[x % 12], words[(x >> 8) % 12], words[(x >> 16) % 12],
                           (x >> 24) % 100000);
        size_t k = (size_t)len < n - at ? (size_t)len : n - at;
        memcpy(p + at, line, k);
        at += k;
    }
}

int main(int argc, char **argv) {
    const char *path = NULL;
    int level = COMPRESSOR_DEFAULT_LEVEL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--level") == 0 && i + 1 < argc) {
            level = atoi(argv[++i]);
        } else if (argv[i][0] != '-' && path == NULL) {
            path = argv[i];
        } else {
            fprintf(stderr, "usage: compress_test [FILE] [--level N]\n");
            return 2;
        }
    }
    chi_client_t *c;
    int rc = chi_client_init(NULL, &c);
    if (rc < 0) return fail("chi_client_init", rc);

    /* The input goes straight into shared memory: the runtime reads it from there. */
    uint64_t n = 64ull << 20;
    FILE *f = NULL;
    if (path != NULL) {
        f = fopen(path, "rb");
        if (f == NULL || fseek(f, 0, SEEK_END) != 0) {
            perror(path);
            return 1;
        }
        n = (uint64_t)ftell(f);
        rewind(f);
    }
    unsigned char *data, *packed, *back;
    uint64_t cap = compressor_bound(n);
    if ((rc = chi_buffer_alloc(c, n ? n : 1, (void **)&data)) < 0 ||
        (rc = chi_buffer_alloc(c, cap, (void **)&packed)) < 0 ||
        (rc = chi_buffer_alloc(c, n ? n : 1, (void **)&back)) < 0)
        return fail("chi_buffer_alloc (is the segment big enough?)", rc);
    if (f != NULL) {
        if (fread(data, 1, n, f) != n) {
            perror(path);
            return 1;
        }
        fclose(f);
    } else {
        generate(data, n);
    }

    rc = chi_module_register(c, COMPRESSOR_MODULE_NAME);
    if (rc < 0) return fail("chi_module_register", rc);
    uint64_t pool;
    rc = compressor_create(c, "compress_test", 1, &pool);
    if (rc < 0) return fail("compressor_create", rc);
    chi_domain_query_t dq = chi_dq_local_hash(0);

    uint64_t packed_size = 0, back_size = 0;
    double t0 = now_s();
    rc = compressor_compress(c, pool, dq, data, n, level, packed, cap, &packed_size);
    if (rc < 0) return fail("Compress", rc);
    double t1 = now_s();
    memset(back, 0, n);
    rc = compressor_decompress(c, pool, dq, packed, packed_size, back, n, &back_size);
    if (rc < 0) return fail("Decompress", rc);
    double t2 = now_s();

    if (back_size != n) {
        fprintf(stderr, "compress_test: decompressed %llu bytes, expected %llu\n",
                (unsigned long long)back_size, (unsigned long long)n);
        return 1;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (back[i] != data[i]) {
            fprintf(stderr, "compress_test: byte %llu differs: %u, expected %u\n",
                    (unsigned long long)i, back[i], data[i]);
            return 1;
        }
    }
    printf("compress_test: %llu bytes round-tripped (%s): compressed to %llu bytes (%.1f%%) in "
           "%.2f s, decompressed in %.2f s\n",
           (unsigned long long)n, path ? path : "generated text", (unsigned long long)packed_size,
           n ? 100.0 * (double)packed_size / (double)n : 0.0, t1 - t0, t2 - t1);
    chi_buffer_free(c, data);
    chi_buffer_free(c, packed);
    chi_buffer_free(c, back);
    chi_client_finalize(c);
    return 0;
}
