/* Issue 12, case 3: double frees and resubmissions are refused, never believed.
 *   buffer_twice   chi_buffer_free twice: the 2nd is -EINVAL; the next two buffers differ
 *   task_twice     chi_task_del twice: the 2nd is -EINVAL; so are submit and wait on the
 *                  deleted task; the next two tasks differ
 *   task_as_buffer chi_buffer_free of a task, chi_task_del of a buffer, chi_buffer_free of a
 *                  pointer inside a buffer: -EINVAL, and the objects still work
 *   other_client   freeing another client's buffer, deleting or submitting its task (by
 *                  their offsets, as another process would): -EINVAL
 *   faf_twice      a fire-and-forget task submitted twice at once: the 2nd is -EBUSY (or
 *                  -EINVAL once returned); the runtime must not free it twice
 *   faf_late       the same, the 2nd submit 100 ms later
 * Each then checks that many fresh tasks and buffers are distinct (a block handed out twice
 * would show here) and that a new client still gets the statistics (`chimaera status`). */
#include "hostile.h"

#define DISTINCT 4096

static chi_client_t *c;

static int by_ptr(const void *a, const void *b) {
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* DISTINCT tasks and DISTINCT buffers at once: no address twice. */
static void all_distinct(chi_client_t *cl) {
    static chi_task_t *t[DISTINCT];
    static void *b[DISTINCT];
    static uintptr_t p[2 * DISTINCT];
    int i;
    for (i = 0; i < DISTINCT; i++) {
        t[i] = h_md_task(cl, H.pool, H_DQ(0), 0);
        H_CHECK(chi_buffer_alloc(cl, 136, &b[i]));
        p[2 * i] = (uintptr_t)t[i];
        p[2 * i + 1] = (uintptr_t)b[i];
    }
    qsort(p, 2 * DISTINCT, sizeof p[0], by_ptr);
    for (i = 1; i < 2 * DISTINCT; i++)
        T_ASSERT(p[i] != p[i - 1], "the block %p was handed out twice", (void *)p[i]);
    for (i = 0; i < DISTINCT; i++) {
        H_CHECK(chi_task_del(cl, t[i]));
        H_CHECK(chi_buffer_free(cl, b[i]));
    }
    printf("%d tasks and %d buffers, all distinct\n", DISTINCT, DISTINCT);
}

static void buffer_twice(void) {
    void *b = NULL, *x = NULL, *y = NULL;
    H_CHECK(chi_buffer_alloc(c, 4096, &b));
    H_CHECK(chi_buffer_free(c, b));
    T_EQ_RC(chi_buffer_free(c, b), -EINVAL);
    H_CHECK(chi_buffer_alloc(c, 4096, &x));
    H_CHECK(chi_buffer_alloc(c, 4096, &y));
    T_ASSERT(x != y, "after a double free the next two buffers are both %p", x);
    H_CHECK(chi_buffer_free(c, x));
    H_CHECK(chi_buffer_free(c, y));
}

static void task_twice(void) {
    chi_task_t *t = h_md_task(c, H.pool, H_DQ(0), 0), *x, *y;
    H_CHECK(chi_task_del(c, t));
    T_EQ_RC(chi_task_del(c, t), -EINVAL);
    T_EQ_RC(chi_task_submit(c, t), -EINVAL);
    T_EQ_RC(chi_task_wait(c, t, 0), -EINVAL);
    x = h_md_task(c, H.pool, H_DQ(0), 0);
    y = h_md_task(c, H.pool, H_DQ(0), 0);
    T_ASSERT(x != y, "after a double delete the next two tasks are both %p", (void *)x);
    H_CHECK(chi_task_del(c, x));
    H_CHECK(chi_task_del(c, y));
}

static void task_as_buffer(void) {
    chi_task_t *t = h_md_task(c, H.pool, H_DQ(1), 0);
    unsigned char *b = NULL;
    H_CHECK(chi_buffer_alloc(c, 8192, (void **)&b));
    T_EQ_RC(chi_buffer_free(c, t), -EINVAL);
    T_EQ_RC(chi_task_del(c, (chi_task_t *)b), -EINVAL);
    T_EQ_RC(chi_buffer_free(c, b + 64), -EINVAL);
    T_EQ_RC(chi_buffer_free(c, b + 4096), -EINVAL);
    H_CHECK(chi_task_submit(c, t)); /* both still work */
    T_ASSERT(h_wait(c, t, T_WAIT_NS, "Md") == 0 && ((chi_sm_md_task_t *)t)->ret == 1,
             "the task refused by chi_buffer_free no longer runs: rc %d", t->rc);
    H_CHECK(chi_task_del(c, t));
    memset(b, 1, 8192);
    H_CHECK(chi_buffer_free(c, b));
}

/* o's object as an address in c's own mapping of the segment (clients may map it at
 * different addresses, even in one process), or NULL if c cannot address it at all. */
static void *in_c(chi_client_t *o, const void *p, size_t size) {
    chi_shm_ptr_t sp;
    void *q = NULL;
    H_CHECK(chi_ptr_to_shm(o, p, &sp));
    return chi_shm_to_ptr(c, sp, size, &q) < 0 ? NULL : q;
}

static void other_client(void) {
    chi_client_t *o = h_client();
    chi_task_t *t = h_md_task(o, H.pool, H_DQ(0), 0), *ct;
    void *b = NULL, *cb;
    H_CHECK(chi_buffer_alloc(o, 4096, &b));
    cb = in_c(o, b, 4096);
    ct = in_c(o, t, sizeof *t);
    printf("the other client's buffer is %p here, its task %p\n", cb, (void *)ct);
    if (cb) T_EQ_RC(chi_buffer_free(c, cb), -EINVAL);
    if (ct) T_EQ_RC(chi_task_del(c, ct), -EINVAL);
    if (ct) T_EQ_RC(chi_task_submit(c, ct), -EINVAL);
    memset(b, 2, 4096);
    H_CHECK(chi_task_submit(o, t));
    T_ASSERT(h_wait(o, t, T_WAIT_NS, "Md") == 0, "the owner's task failed: rc %d", t->rc);
    H_CHECK(chi_task_del(o, t));
    H_CHECK(chi_buffer_free(o, b));
    H_CHECK(chi_client_finalize(o));
}

static void faf_twice(int late_ms) {
    int i, busy = 0, einval = 0, accepted = 0;
    for (i = 0; i < 64; i++) {
        chi_task_t *t = h_md_task(c, H.pool, H_DQ(i % 2), (uint32_t)(i % 3));
        t->flags |= CHI_TASK_FIRE_AND_FORGET;
        H_CHECK(chi_task_submit(c, t));
        if (late_ms) t_sleep_ms(late_ms);
        int rc = chi_task_submit(c, t);
        T_ASSERT(rc == 0 || rc == -EBUSY || rc == -EINVAL, "2nd submit of a fire-and-forget "
                 "task returned %d (%s)", rc, chi_strerror(rc));
        busy += rc == -EBUSY;
        einval += rc == -EINVAL;
        accepted += rc == 0;
        if (late_ms && i == 3) break; /* 4 late ones are enough */
    }
    printf("2nd submits of fire-and-forget tasks: %d -EBUSY, %d -EINVAL, %d accepted\n", busy,
           einval, accepted);
    H_CHECK(chi_runtime_flush(c));
}

int main(int argc, char **argv) {
    static const char *const modes[] = {"buffer_twice", "task_twice", "task_as_buffer",
                                        "other_client", "faf_twice", "faf_late", NULL};
    const char *mode = h_mode(argc, argv, modes);
    chi_client_t *fresh;
    h_stats_t s;

    h_begin("h_double", 50);
    c = h_client();
    if (strcmp(mode, "buffer_twice") == 0) buffer_twice();
    if (strcmp(mode, "task_twice") == 0) task_twice();
    if (strcmp(mode, "task_as_buffer") == 0) task_as_buffer();
    if (strcmp(mode, "other_client") == 0) other_client();
    if (strcmp(mode, "faf_twice") == 0) faf_twice(0);
    if (strcmp(mode, "faf_late") == 0) faf_twice(100);
    all_distinct(c);
    fresh = h_client();
    all_distinct(fresh);
    H_CHECK(h_read_stats(fresh, &s)); /* what `chimaera status` does */
    H_CHECK(chi_client_finalize(fresh));
    H_CHECK(chi_client_finalize(c));
    printf("%s: refused, and a new client still reads the statistics\n", mode);
    h_end(0);
    return T_EXIT_PASS;
}
