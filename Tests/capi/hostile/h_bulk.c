/* Issue 12, case 6: a bulk pointer must lie inside one buffer of the submitting client, its
 * length inside that buffer; else the task fails with -EFAULT and nothing is written.
 * small_message Io, both directions (Read: the runtime fills the range; Write: it reads it):
 *   off0 off64 off4096  the segment's header and doorbells
 *   past_end            straddling the segment's end, beyond it, and offsets that wrap
 *   bad_segment         segment id 77
 *   task_block          a task of ours (a task is not a buffer)
 *   straddle            the last 64 bytes of one buffer and the first 64 of the next
 *   oversize            2 MiB (and 1 MiB + 1) into a 1 MiB buffer
 *   other_client        a buffer of another client
 * Every buffer of ours (and the other client's) keeps its bytes, and proper Io still works. */
#include "hostile.h"

#define NBUF 8
#define FILL 0xA5u /* the byte a rejected Read must not have written anywhere */

static chi_client_t *c;
static unsigned char *buf[NBUF];
static size_t bsize;

static void fill_all(void) {
    for (int i = 0; i < NBUF; i++) memset(buf[i], 0x10 + i, bsize);
}

static void check_all(const char *what) {
    for (int i = 0; i < NBUF; i++)
        for (size_t k = 0; k < bsize; k++)
            if (buf[i][k] != 0x10 + i)
                h_verdict("wrong", "%s: byte %zu of buffer %d changed to 0x%02x", what, k, i,
                          buf[i][k]);
}

/* Io Read and Io Write over [p, p + size): both must fail with -EFAULT. */
static void refused(chi_shm_ptr_t p, uint64_t size, const char *what) {
    uint32_t dirs[2] = {CHI_SM_IO_READ, CHI_SM_IO_WRITE};
    for (int d = 0; d < 2; d++) {
        uint64_t ret = 0;
        int rc = t_sm_io(c, H.pool, H_DQ(d), p, size, dirs[d], FILL, &ret);
        if (rc != -EFAULT)
            h_verdict("wrong", "Io %s of %llu B at {%u, %llu} (%s): rc %d (%s) ret %llu, want "
                      "-EFAULT", d == 0 ? "Read" : "Write", (unsigned long long)size,
                      p.segment, (unsigned long long)p.offset, what, rc, chi_strerror(rc),
                      (unsigned long long)ret);
    }
    check_all(what);
    printf("refused: %-40s -EFAULT both ways, no byte changed\n", what);
}

static chi_shm_ptr_t at(uint64_t off) {
    chi_shm_ptr_t p = {0, 0, off};
    return p;
}

static chi_shm_ptr_t shm_of(chi_client_t *cl, const void *q) {
    chi_shm_ptr_t p;
    H_CHECK(chi_ptr_to_shm(cl, q, &p));
    return p;
}

/* The segment's own bytes at off: a rejected Read must not have filled them. */
static void control_area(uint64_t off) {
    unsigned char *q = NULL;
    int all = 1;
    refused(at(off), 64, off == 0 ? "offset 0 (null)" : off == 64 ? "offset 64 (header)"
                                                                  : "offset 4096 (doorbells)");
    if (off == 0 || chi_shm_to_ptr(c, at(off), 64, (void **)&q) < 0) return;
    for (int k = 0; k < 64; k++) all &= q[k] == FILL;
    T_ASSERT(!all, "the 64 bytes at offset %llu are all 0x%02x: the rejected Read wrote there",
             (unsigned long long)off, FILL);
}

int main(int argc, char **argv) {
    static const char *const modes[] = {"off0", "off64", "off4096", "past_end", "bad_segment",
                                        "task_block", "straddle", "oversize", "other_client",
                                        NULL};
    const char *mode = h_mode(argc, argv, modes);
    uint64_t seg, ret = 0;
    int i;

    h_begin("h_bulk", 50);
    seg = (uint64_t)H.idle.shm_size;
    c = h_client();
    bsize = strcmp(mode, "oversize") == 0 ? H_MiB : 4096;
    for (i = 0; i < NBUF; i++) H_CHECK(chi_buffer_alloc(c, bsize, (void **)&buf[i]));
    fill_all();

    if (strncmp(mode, "off", 3) == 0) {
        control_area(strtoull(mode + 3, NULL, 10));
    } else if (strcmp(mode, "past_end") == 0) {
        refused(at(seg - 32), 64, "the segment's last 32 bytes and beyond");
        refused(at(seg), 64, "the segment's end");
        refused(at(seg + 4096), 64, "past the segment's end");
        refused(at(UINT64_MAX - 31), 64, "an offset that wraps");
        refused(shm_of(c, buf[0]), UINT64_MAX - 16, "a size that wraps");
    } else if (strcmp(mode, "bad_segment") == 0) {
        chi_shm_ptr_t p = shm_of(c, buf[0]);
        p.segment = 77;
        refused(p, 64, "segment 77");
    } else if (strcmp(mode, "task_block") == 0) {
        chi_task_t *t = h_md_task(c, H.pool, H_DQ(0), 0), saved = *t;
        refused(shm_of(c, t), sizeof *t, "a task block");
        T_ASSERT(memcmp(t, &saved, sizeof saved) == 0, "the task's header changed");
        H_CHECK(chi_task_del(c, t));
    } else if (strcmp(mode, "straddle") == 0) {
        int a = 0, b = -1; /* prefer two buffers of ours that touch */
        for (i = 0; i < NBUF * NBUF && b < 0; i++)
            if (buf[i / NBUF] + bsize == buf[i % NBUF]) a = i / NBUF, b = i % NBUF;
        printf("straddling buffer %d and %s\n", a, b >= 0 ? "another of ours" : "what follows");
        refused(shm_of(c, buf[a] + bsize - 64), 128, "two buffers");
    } else if (strcmp(mode, "oversize") == 0) {
        refused(shm_of(c, buf[0]), 2 * H_MiB, "2 MiB into a 1 MiB buffer");
        refused(shm_of(c, buf[1]), H_MiB + 1, "1 MiB + 1 into a 1 MiB buffer");
        refused(shm_of(c, buf[2] + 4096), H_MiB, "1 MiB from 4 KiB into a 1 MiB buffer");
    } else {
        chi_client_t *o = h_client();
        unsigned char *theirs = NULL;
        H_CHECK(chi_buffer_alloc(o, 4096, (void **)&theirs));
        memset(theirs, 0x77, 4096);
        refused(shm_of(o, theirs), 4096, "another client's buffer");
        for (i = 0; i < 4096; i++)
            T_ASSERT(theirs[i] == 0x77, "byte %d of the other client's buffer changed", i);
        H_CHECK(chi_buffer_free(o, theirs));
        H_CHECK(chi_client_finalize(o));
    }

    /* Proper Io still works: fills exactly one whole buffer (back to its own pattern). */
    memset(buf[3], 0, bsize);
    T_EQ_RC(t_sm_io(c, H.pool, H_DQ(0), shm_of(c, buf[3]), bsize, CHI_SM_IO_READ, 0x13, &ret), 0);
    T_ASSERT(ret == bsize, "Io Read moved %llu B, want %zu", (unsigned long long)ret, bsize);
    T_EQ_RC(t_sm_io(c, H.pool, H_DQ(1), shm_of(c, buf[3]), bsize, CHI_SM_IO_WRITE, 0x13, &ret), 0);
    check_all("a proper Io Read of one buffer");
    for (i = 0; i < NBUF; i++) H_CHECK(chi_buffer_free(c, buf[i]));
    H_CHECK(chi_client_finalize(c));
    h_end(0);
    return T_EXIT_PASS;
}
