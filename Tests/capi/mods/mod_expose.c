/* A module for the seed's bulk semantics across nodes (test_cluster_expose.py): Transform
 * reads an `in bulk expose` buffer the client wrote (its bytes must travel to the remote
 * side), writes a function of them into an exposed output buffer (written back), and also
 * writes into the exposed input (the client must see the remote side's view afterwards). */
#include <string.h>

#include "chimaera/module.h"

typedef struct {
    chi_task_t hdr;
    chi_shm_ptr_t in;   /* IN bulk, DT_EXPOSE, in_size bytes: read, then each byte inverted */
    uint64_t in_size;   /* IN */
    chi_shm_ptr_t out;  /* IN bulk, DT_EXPOSE, out_cap bytes: out[i] = in[n-1-i] ^ 0x5a */
    uint64_t out_cap;   /* IN */
    uint64_t sum;       /* OUT: the sum of the input bytes as read */
    uint32_t container; /* OUT: the container that ran it */
    uint32_t pad;
} transform_task_t;

static const chi_field_desc_t fields[] = {
    {"in", offsetof(transform_task_t, in), sizeof(chi_shm_ptr_t), CHI_FT_BULK, CHI_DIR_IN, 1, CHI_DT_EXPOSE},
    {"in_size", offsetof(transform_task_t, in_size), 8, CHI_FT_U64, CHI_DIR_IN, -1, 0},
    {"out", offsetof(transform_task_t, out), sizeof(chi_shm_ptr_t), CHI_FT_BULK, CHI_DIR_IN, 3, CHI_DT_EXPOSE},
    {"out_cap", offsetof(transform_task_t, out_cap), 8, CHI_FT_U64, CHI_DIR_IN, -1, 0},
    {"sum", offsetof(transform_task_t, sum), 8, CHI_FT_U64, CHI_DIR_OUT, -1, 0},
    {"container", offsetof(transform_task_t, container), 4, CHI_FT_U32, CHI_DIR_OUT, -1, 0},
};
static const chi_method_desc_t methods[] = {
    {10, sizeof(transform_task_t), 0, 6, "Transform", fields, NULL},
};

static int run(void *state, chi_task_t *task, chi_rctx_t *rctx) {
    (void)state;
    transform_task_t *t = (transform_task_t *)task;
    uint64_t n = t->in_size, cap = t->out_cap;
    if (task->method != 10 || n == 0 || cap < n) return -EINVAL;
    unsigned char *in = chi_rctx_shm_ptr(rctx, t->in, n);
    unsigned char *out = chi_rctx_shm_ptr(rctx, t->out, cap);
    if (in == NULL || out == NULL) return -EFAULT;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        sum += in[i];
        out[i] = (unsigned char)(in[n - 1 - i] ^ 0x5a);
    }
    for (uint64_t i = 0; i < n; i++) in[i] = (unsigned char)~in[i];
    t->sum = sum;
    t->container = chi_container_id(chi_rctx_container(rctx));
    return 0;
}

static int create(chi_container_t *c, const void *params, uint32_t params_size, void **state) {
    (void)params, (void)params_size;
    *state = NULL;
    return chi_container_add_lanes(c, 0, 1, CHI_PRIO_LOW_LATENCY);
}

static const chi_module_vtable_t vt = {
    .size = sizeof(chi_module_vtable_t),
    .abi_major = CHI_ABI_MAJOR,
    .abi_minor = CHI_ABI_MINOR,
    .name = "chi_test_expose",
    .version = 1,
    .nmethods = 1,
    .methods = methods,
    .create = create,
    .run = run,
};

CHI_MODULE_EXPORT(&vt)
