/* test_plain_handler: a method written as a plain C function runs through libffi: IN scalars
 * by value, a bulk buffer as a pointer, a string, OUT and INOUT fields through pointers, and
 * its return value as the task's rc; a bulk pointer outside the segment fails with -EFAULT
 * without calling it. */
#include "test_common.h"

typedef struct {
    chi_task_t hdr;
    chi_shm_ptr_t data;
    uint64_t size;
    uint32_t scale;
    uint32_t pad;
    double factor;
    char label[16];
    uint64_t sum;
    double scaled;
    int32_t count;
} sum_task_t;

int main(void) {
    chi_client_t *c;
    uint64_t pool;
    unsigned char *buf;
    chi_task_t *t;
    t_watchdog("test_plain_handler", 60);
    T_OK(chi_client_init(NULL, &c));
    chi_pool_create_opts_t o = {.size = sizeof o, .module = "chi_test_plain", .name = "plain"};
    T_OK(chi_pool_create(c, &o, &pool));
    T_OK(chi_buffer_alloc(c, 1000, (void **)&buf));
    uint64_t want = 0;
    for (int i = 0; i < 1000; i++) {
        buf[i] = (unsigned char)(i * 7);
        want += buf[i];
    }
    chi_domain_query_t dq = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0);
    T_OK(chi_task_new(c, pool, 10, sizeof(sum_task_t), &dq, &t));
    sum_task_t *s = (sum_task_t *)t;
    T_OK(chi_ptr_to_shm(c, buf, &s->data));
    s->size = 1000;
    s->scale = 3;
    s->factor = 0.5;
    strcpy(s->label, "plain");
    s->count = 41;
    int rc = chi_task_call(c, t, T_WAIT_NS);
    T_ASSERT(rc == 7, "rc %d (%s)", rc, chi_last_error());
    T_ASSERT(s->sum == want * 3, "sum %llu, want %llu", (unsigned long long)s->sum, (unsigned long long)(want * 3));
    T_ASSERT(s->scaled == (double)want * 0.5, "scaled %f", s->scaled);
    T_ASSERT(s->count == 42, "count %d", s->count);

    /* A bulk pointer past the end of the segment: -EFAULT, handler not called. */
    s->data.offset = (uint64_t)1 << 50;
    s->count = 0;
    rc = chi_task_call(c, t, T_WAIT_NS);
    T_ASSERT(rc == -EFAULT, "rc %d, want -EFAULT", rc);
    T_ASSERT(s->count == 0, "handler ran: count %d", s->count);
    T_OK(chi_task_del(c, t));
    T_OK(chi_buffer_free(c, buf));
    T_OK(chi_client_finalize(c));
    puts("test_plain_handler: ok");
    return T_EXIT_PASS;
}
