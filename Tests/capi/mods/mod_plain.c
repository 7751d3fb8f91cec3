/* A module whose method is a plain C function over its parameters, called by the runtime
 * through libffi from the method's descriptor (no run hook involvement for it). */
#include <string.h>

#include "chimaera/module.h"

typedef struct {
    chi_task_t hdr;
    chi_shm_ptr_t data;  /* IN bulk, size below */
    uint64_t size;       /* IN */
    uint32_t scale;      /* IN */
    uint32_t pad;
    double factor;       /* IN */
    char label[16];      /* IN str */
    uint64_t sum;        /* OUT */
    double scaled;       /* OUT */
    int32_t count;       /* INOUT: incremented */
} sum_task_t;

static int32_t sum_bytes(chi_rctx_t *rctx, const void *data, uint64_t size, uint32_t scale,
                         double factor, const char *label, uint64_t *sum, double *scaled,
                         int32_t *count) {
    if (!rctx || !data || strcmp(label, "plain") != 0) return -EINVAL;
    const unsigned char *p = data;
    uint64_t s = 0;
    for (uint64_t i = 0; i < size; i++) s += p[i];
    *sum = s * scale;
    *scaled = (double)s * factor;
    *count += 1;
    return 7;
}

static const chi_field_desc_t fields[] = {
    {"data", offsetof(sum_task_t, data), sizeof(chi_shm_ptr_t), CHI_FT_BULK, CHI_DIR_IN, 1, CHI_DT_WRITE},
    {"size", offsetof(sum_task_t, size), 8, CHI_FT_U64, CHI_DIR_IN, -1, 0},
    {"scale", offsetof(sum_task_t, scale), 4, CHI_FT_U32, CHI_DIR_IN, -1, 0},
    {"factor", offsetof(sum_task_t, factor), 8, CHI_FT_F64, CHI_DIR_IN, -1, 0},
    {"label", offsetof(sum_task_t, label), 16, CHI_FT_STR, CHI_DIR_IN, -1, 0},
    {"sum", offsetof(sum_task_t, sum), 8, CHI_FT_U64, CHI_DIR_OUT, -1, 0},
    {"scaled", offsetof(sum_task_t, scaled), 8, CHI_FT_F64, CHI_DIR_OUT, -1, 0},
    {"count", offsetof(sum_task_t, count), 4, CHI_FT_I32, CHI_DIR_INOUT, -1, 0},
};
static const chi_method_desc_t methods[] = {
    {10, sizeof(sum_task_t), 0, 8, "Sum", fields, (const void *)sum_bytes},
};

static int run(void *state, chi_task_t *task, chi_rctx_t *rctx) {
    (void)state, (void)task, (void)rctx;
    return -ENOSYS; /* never reached: Sum has a plain handler */
}

static const chi_module_vtable_t vt = {
    .size = sizeof(chi_module_vtable_t),
    .abi_major = CHI_ABI_MAJOR,
    .abi_minor = CHI_ABI_MINOR,
    .name = "chi_test_plain",
    .version = 1,
    .nmethods = 1,
    .methods = methods,
    .run = run,
};

CHI_MODULE_EXPORT(&vt)
