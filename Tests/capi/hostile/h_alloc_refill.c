/* Issue 12, case 2: freed memory serves any size again. The heap (a small segment: the runner
 * gives this case 64 MiB) is filled with blocks of one size until -ENOMEM, everything is
 * freed, and then blocks of other sizes must fill a large part of it again:
 *   big_small   1 MiB buffers, then 136-byte tasks and 64 B .. 100 KiB buffers;
 *   small_big   1 KiB buffers, then 16 MiB and 1 MiB buffers;
 *   tasks_big   136-byte tasks, then 16 MiB and 1 MiB buffers.
 * A fill that never reaches -ENOMEM, or any error but -ENOMEM, is a failure too. */
#include "hostile.h"

typedef struct {
    void **p;
    size_t n, cap;
    int tasks; /* 1: p[] are tasks */
} blocks_t;

static chi_client_t *c;

/* Allocates blocks of `size` until -ENOMEM or `limit` blocks; returns how many. */
static size_t fill(blocks_t *b, size_t size, int tasks, size_t limit) {
    b->n = 0;
    b->tasks = tasks;
    if (b->cap < limit) {
        b->p = realloc(b->p, limit * sizeof *b->p);
        T_ASSERT(b->p != NULL, "out of memory");
        b->cap = limit;
    }
    while (b->n < limit) {
        int rc;
        if (tasks) {
            chi_domain_query_t dq = H_DQ(0);
            rc = chi_task_new(c, H.pool, CHI_SM_MD, size, &dq, (chi_task_t **)&b->p[b->n]);
        } else {
            rc = chi_buffer_alloc(c, size, &b->p[b->n]);
        }
        if (rc == -ENOMEM) break;
        if (rc < 0) t_failf(__FILE__, __LINE__, rc, "allocation %zu of %zu B", b->n, size);
        b->n++;
    }
    return b->n;
}

static void release(blocks_t *b) {
    while (b->n > 0) {
        void *p = b->p[--b->n];
        H_CHECK(b->tasks ? chi_task_del(c, p) : chi_buffer_free(c, p));
    }
}

/* After everything was freed: `want` bytes in blocks of `size` must fit again. */
static void refill(blocks_t *b, size_t size, int tasks, long long want, const char *after) {
    size_t n = (size_t)(want / (long long)size) + 1, got = fill(b, size, tasks, n);
    if (got < n)
        h_verdict("leaked", "after freeing every %s, only %zu %s of %zu B fit (%.1f MiB), want "
                  "%zu (%.1f MiB of a %.1f MiB heap)", after, got, tasks ? "tasks" : "buffers",
                  size, got * (double)size / H_MiB, n, n * (double)size / H_MiB,
                  H.idle.heap_capacity / (double)H_MiB);
    printf("after the %s: %zu %s of %zu B fit\n", after, got, tasks ? "tasks" : "buffers", size);
    release(b);
}

int main(int argc, char **argv) {
    static const char *const modes[] = {"big_small", "small_big", "tasks_big", NULL};
    const char *mode = h_mode(argc, argv, modes);
    long long cap;
    size_t fill_size, most, n;
    int fill_tasks;
    blocks_t b = {0};

    h_begin("h_alloc_refill", 50);
    cap = H.idle.heap_capacity;
    T_ASSERT(cap <= 256 * (long long)H_MiB, "heap %lld: the runner must give this case a small "
             "segment", cap);
    c = h_client();
    fill_tasks = strcmp(mode, "tasks_big") == 0;
    fill_size = strcmp(mode, "big_small") == 0 ? H_MiB
                : fill_tasks                   ? sizeof(chi_sm_md_task_t)
                                               : 1024;
    most = (size_t)(cap / (long long)fill_size) + 1;
    n = fill(&b, fill_size, fill_tasks, most);
    T_ASSERT(n < most, "%zu allocations of %zu B never ran out of a %lld-byte heap", n,
             fill_size, cap);
    T_ASSERT(n * fill_size >= (size_t)cap / 2, "the heap ran out after %zu x %zu B (%.1f MiB "
             "of %.1f MiB)", n, fill_size, n * (double)fill_size / H_MiB, cap / (double)H_MiB);
    printf("%s: %zu x %zu B until -ENOMEM\n", mode, n, fill_size);
    release(&b);
    if (strcmp(mode, "big_small") == 0) {
        refill(&b, sizeof(chi_sm_md_task_t), 1, cap / 4, "1 MiB buffers");
        refill(&b, 64, 0, cap / 8, "1 MiB buffers");
        refill(&b, 4096, 0, cap / 8, "1 MiB buffers");
        refill(&b, 100 * 1024, 0, cap / 4, "1 MiB buffers");
        refill(&b, H_MiB, 0, cap / 2, "small blocks");
    } else {
        const char *what = fill_tasks ? "136-byte tasks" : "1 KiB buffers";
        refill(&b, 16 * H_MiB, 0, cap / 4, what);
        refill(&b, H_MiB, 0, cap / 2, what);
        refill(&b, sizeof(chi_sm_md_task_t), 1, cap / 4, "big buffers");
    }
    h_md_ok(c, H.pool, H_DQ(1), 2, 1, "Md after the refills");
    H_CHECK(chi_client_finalize(c));
    free(b.p);
    h_end(0);
    return T_EXIT_PASS;
}
