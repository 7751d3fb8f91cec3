/* Issue 12, case 6 (bdev): a Read or Write whose size exceeds its 1 MiB buffer fails with
 * -EFAULT and moves nothing. On a ram:// pool with a 2 MiB block: a 2 MiB Read into a 1 MiB
 * buffer must not write past it (every buffer of ours keeps its bytes), and a 2 MiB Write
 * from a 1 MiB buffer must not read past it (the block keeps its bytes). */
#include "hostile.h"

#include "chimaera/bdev.h"

#define NBUF 4
#define DEV (16 * H_MiB)

static chi_client_t *c;
static unsigned char *buf[NBUF];

static void check_all(const char *what) {
    for (int i = 0; i < NBUF; i++)
        for (size_t k = 0; k < H_MiB; k++)
            if (buf[i][k] != 0x20 + i)
                h_verdict("wrong", "%s: byte %zu of buffer %d changed to 0x%02x", what, k, i,
                          buf[i][k]);
}

int main(void) {
    chi_domain_query_t dq = H_DQ(0);
    chi_bdev_create_params_t params = chi_bdev_params("ram://", DEV, 0);
    chi_bdev_block_t blk;
    unsigned char *scratch, *before = malloc(2 * H_MiB);
    uint64_t pool = 0;
    uint32_t n = 0;
    int i, rc;

    h_begin("h_bulk_bdev", 50);
    c = h_client();
    H_CHECK(chi_bdev_create(c, "hostile_bdev", 1, &params, &pool));
    rc = chi_bdev_allocate(c, pool, dq, 2 * H_MiB, &blk, 1, &n, T_WAIT_NS);
    T_ASSERT(rc == 1 && n == 1 && blk.size == 2 * H_MiB, "Allocate(2 MiB): rc %d, %u blocks", rc,
             n);
    for (i = 0; i < NBUF; i++) {
        H_CHECK(chi_buffer_alloc(c, H_MiB, (void **)&buf[i]));
        memset(buf[i], 0x20 + i, H_MiB);
    }
    H_CHECK(chi_buffer_alloc(c, 2 * H_MiB, (void **)&scratch));
    T_ASSERT(before != NULL, "out of memory");
    T_EQ_RC(chi_bdev_write(c, pool, dq, buf[0], H_MiB, blk, 0, T_WAIT_NS), 0);
    T_EQ_RC(chi_bdev_read(c, pool, dq, scratch, 2 * H_MiB, blk, T_WAIT_NS), 0);
    memcpy(before, scratch, 2 * H_MiB);

    rc = chi_bdev_read(c, pool, dq, buf[1], 2 * H_MiB, blk, T_WAIT_NS);
    if (rc != -EFAULT)
        h_verdict("wrong", "a 2 MiB Read into a 1 MiB buffer: rc %d (%s), want -EFAULT", rc,
                  chi_strerror(rc));
    check_all("a 2 MiB Read into a 1 MiB buffer");
    rc = chi_bdev_write(c, pool, dq, buf[2], 2 * H_MiB, blk, 0, T_WAIT_NS);
    if (rc != -EFAULT)
        h_verdict("wrong", "a 2 MiB Write from a 1 MiB buffer: rc %d (%s), want -EFAULT", rc,
                  chi_strerror(rc));
    T_EQ_RC(chi_bdev_read(c, pool, dq, scratch, 2 * H_MiB, blk, T_WAIT_NS), 0);
    T_ASSERT(memcmp(scratch, before, 2 * H_MiB) == 0, "the rejected Write changed the block");
    printf("2 MiB through a 1 MiB buffer: -EFAULT both ways, nothing moved\n");

    T_EQ_RC(chi_bdev_free(c, pool, dq, blk, T_WAIT_NS), 0);
    H_CHECK(chi_pool_destroy(c, pool));
    for (i = 0; i < NBUF; i++) H_CHECK(chi_buffer_free(c, buf[i]));
    H_CHECK(chi_buffer_free(c, scratch));
    free(before);
    H_CHECK(chi_client_finalize(c));
    h_end(0);
    return T_EXIT_PASS;
}
