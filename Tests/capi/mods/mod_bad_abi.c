/* A module built for a future ABI major: the runtime must refuse it, naming both versions. */
#include "chimaera/module.h"

static int run(void *state, chi_task_t *task, chi_rctx_t *rctx) {
    (void)state, (void)task, (void)rctx;
    return 0;
}

static const chi_module_vtable_t vt = {
    .size = sizeof(chi_module_vtable_t),
    .abi_major = CHI_ABI_MAJOR + 1,
    .abi_minor = 3,
    .name = "chi_test_bad_abi",
    .version = 1,
    .run = run,
};

CHI_MODULE_EXPORT(&vt)
