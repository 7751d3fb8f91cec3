/* Io moves a bulk buffer in shared memory: WRITE hands the runtime a 4 MiB buffer that it
 * checks byte by byte, READ has it fill the buffer (every byte checked here), a corrupted
 * byte is not reported as a full success, and a bulk pointer outside the segment is -EFAULT. */
#include "test_common.h"

#define SIZE ((size_t)4 << 20)

static int io(chi_client_t *c, uint64_t pool, chi_shm_ptr_t data, uint64_t size,
              uint32_t flags, uint32_t pattern, uint64_t *ret) {
    return t_sm_io(c, pool, chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, pattern), data,
                   size, flags, pattern, ret);
}

static void round_trip(chi_client_t *c, uint64_t pool, unsigned char *buf, chi_shm_ptr_t sp,
                       size_t size) {
    uint64_t ret = 0;
    int64_t t0;
    size_t i;

    memset(buf, 0xA5, size);
    t0 = t_now_ns();
    T_OK(io(c, pool, sp, size, CHI_SM_IO_WRITE, 0xA5, &ret));
    T_ASSERT(ret == size, "WRITE of %zu B: ret %llu", size, (unsigned long long)ret);
    if (size == SIZE) printf("WRITE 4 MiB: %.1f us\n", (double)(t_now_ns() - t0) / 1e3);

    memset(buf, 0x00, size);
    t0 = t_now_ns();
    T_OK(io(c, pool, sp, size, CHI_SM_IO_READ, 0x3C, &ret));
    T_ASSERT(ret == size, "READ of %zu B: ret %llu", size, (unsigned long long)ret);
    for (i = 0; i < size; i++)
        T_ASSERT(buf[i] == 0x3C, "READ of %zu B: byte %zu is 0x%02x, want 0x3c", size, i, buf[i]);
    if (size == SIZE) printf("READ 4 MiB: %.1f us\n", (double)(t_now_ns() - t0) / 1e3);

    /* Only the low 8 bits of the pattern count. */
    T_OK(io(c, pool, sp, size, CHI_SM_IO_READ, 0x1FF, &ret));
    T_ASSERT(buf[0] == 0xFF && buf[size - 1] == 0xFF, "pattern 0x1ff filled 0x%02x", buf[0]);
}

int main(void) {
    chi_client_t *c;
    uint64_t pool, ret = 0;
    unsigned char *buf = NULL;
    chi_shm_ptr_t sp, bad;
    int rc;

    t_watchdog("test_io", 50);
    c = t_attach();
    pool = t_sm_pool(c, "io_test", 2);
    T_OK(chi_buffer_alloc(c, SIZE, (void **)&buf));
    T_OK(chi_ptr_to_shm(c, buf, &sp));

    round_trip(c, pool, buf, sp, SIZE);
    round_trip(c, pool, buf, sp, 1);
    round_trip(c, pool, buf, sp, 4097);

    /* A WRITE whose data does not match must not claim every byte checked out. */
    memset(buf, 0x5A, SIZE);
    buf[SIZE / 2 + 3] = 0x00;
    rc = io(c, pool, sp, SIZE, CHI_SM_IO_WRITE, 0x5A, &ret);
    T_ASSERT(rc < 0 || ret != SIZE, "WRITE with a bad byte reported rc %d ret %llu", rc,
             (unsigned long long)ret);

    /* Bulk data outside the segment. */
    bad = sp;
    bad.offset = UINT64_MAX / 2;
    T_EQ_RC(io(c, pool, bad, 64, CHI_SM_IO_READ, 1, &ret), -EFAULT);
    bad.offset = UINT64_MAX - 15; /* offset + size wraps */
    T_EQ_RC(io(c, pool, bad, 64, CHI_SM_IO_WRITE, 1, &ret), -EFAULT);
    T_EQ_RC(io(c, pool, sp, (uint64_t)1 << 42, CHI_SM_IO_READ, 1, &ret), -EFAULT);
    bad = sp;
    bad.segment = 77;
    T_EQ_RC(io(c, pool, bad, 64, CHI_SM_IO_READ, 1, &ret), -EFAULT);

    /* The runtime is unharmed: a normal Io still works. */
    round_trip(c, pool, buf, sp, 65536);
    T_OK(chi_buffer_free(c, buf));
    T_OK(chi_client_finalize(c));
    puts("test_io: ok");
    return T_EXIT_PASS;
}
