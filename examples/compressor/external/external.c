/* external: compresses and decompresses one message through the compressor module, from a
 * project that found the module repo with find_package(Example CONFIG) (see CMakeLists.txt).
 *   CHIMAERA_SEGMENT=<segment> ./external
 * The runtime must find libexample_compressor.so (${EXAMPLE_MODULE_DIR}). Exits 0 on a match. */
#include <stdio.h>
#include <string.h>

#include <compressor/compressor_client.h>

static int fail(const char *what, int rc) {
    fprintf(stderr, "external: %s: %s (%s)\n", what, chi_strerror(rc), chi_last_error());
    return 1;
}

int main(void) {
    static const char msg[] =
        "Chimaera modules are shared objects the runtime loads by name; this one compresses. "
        "Chimaera modules are shared objects the runtime loads by name; this one compresses.";
    chi_client_t *c;
    int rc = chi_client_init(NULL, &c);
    if (rc < 0) return fail("chi_client_init", rc);
    uint64_t pool;
    rc = compressor_create(c, "external", 1, &pool);
    if (rc < 0) return fail("compressor_create", rc);

    /* Bulk buffers live in shared memory, where the runtime can read and write them. */
    char *data, *packed, *back;
    uint64_t cap = compressor_bound(sizeof msg);
    if ((rc = chi_buffer_alloc(c, sizeof msg, (void **)&data)) < 0 ||
        (rc = chi_buffer_alloc(c, cap, (void **)&packed)) < 0 ||
        (rc = chi_buffer_alloc(c, sizeof msg, (void **)&back)) < 0)
        return fail("chi_buffer_alloc", rc);
    memcpy(data, msg, sizeof msg);

    chi_domain_query_t dq = chi_dq_local_hash(0);
    uint64_t packed_size, back_size;
    rc = compressor_compress(c, pool, dq, data, sizeof msg, 9, packed, cap, &packed_size);
    if (rc < 0) return fail("Compress", rc);
    rc = compressor_decompress(c, pool, dq, packed, packed_size, back, sizeof msg, &back_size);
    if (rc < 0) return fail("Decompress", rc);
    if (back_size != sizeof msg || memcmp(back, msg, sizeof msg) != 0) {
        fprintf(stderr, "external: the message did not survive the round trip\n");
        return 1;
    }
    printf("external: %zu bytes -> %llu compressed -> %llu back, identical\n", sizeof msg,
           (unsigned long long)packed_size, (unsigned long long)back_size);
    chi_client_finalize(c);
    return 0;
}
