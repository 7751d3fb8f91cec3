/* The public headers compile as strict C99 (liburing's test_build.c).
 *
 *   cc -std=c99 -pedantic -Wall -Wextra -Werror -DCHI_TEST_HEADER='"chimaera/task.h"' -c
 *     includes ONE header alone: it must bring everything it needs (run once per header).
 *   cc -std=c99 -pedantic -Wall -Wextra -Werror test_build.c -lchimaera
 *     includes every header, pins the shared-memory layouts, takes the address of every
 *     exported function (so the link fails if the library lacks one) and checks the ABI
 *     version at run time. */
#ifdef CHI_TEST_HEADER
#include CHI_TEST_HEADER
#include CHI_TEST_HEADER /* twice: the include guard must work */

int main(void) { return 0; }
#else
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "chimaera/chimaera.h"
#include "chimaera/module.h"
#include "chimaera/small_message.h"

/* C99 has no _Static_assert: a negative array size stops the build instead. */
#define BUILD_ASSERT(name, cond) typedef char build_assert_##name[(cond) ? 1 : -1]

BUILD_ASSERT(shm_ptr_16, sizeof(chi_shm_ptr_t) == 16);
BUILD_ASSERT(dq_24, sizeof(chi_domain_query_t) == 24);
BUILD_ASSERT(task_128, sizeof(chi_task_t) == 128);
BUILD_ASSERT(task_done_second_line, offsetof(chi_task_t, done) == 64);
BUILD_ASSERT(task_period, offsetof(chi_task_t, period_ns) == 56);
BUILD_ASSERT(task_parent, offsetof(chi_task_t, parent) == 80);
BUILD_ASSERT(sm_md, sizeof(chi_sm_md_task_t) == 136 && offsetof(chi_sm_md_task_t, ret) == 132);
BUILD_ASSERT(sm_io, sizeof(chi_sm_io_task_t) == 168 && offsetof(chi_sm_io_task_t, ret) == 160);
BUILD_ASSERT(admin_create, offsetof(chi_admin_create_pool_task_t, pool_id) ==
                               128 + 2 * CHI_NAME_MAX + 8 + 16);
BUILD_ASSERT(errors_disjoint_from_errno, CHI_EBASE > 133);

/* The same macro a module uses; an executable may define the symbol harmlessly. */
/* Designated initializers: the vtable grows at its end with each ABI minor version, and a
 * module written against an older header still builds warning-free with -Wextra. */
static const chi_module_vtable_t build_vtable = {.size = sizeof(chi_module_vtable_t),
                                                  .abi_major = CHI_ABI_MAJOR,
                                                  .abi_minor = CHI_ABI_MINOR,
                                                  .name = "build_test", .version = 1};
CHI_MODULE_EXPORT(&build_vtable)

typedef void (*any_fn)(void);
#define F(fn) {#fn, (any_fn)fn}
static const struct { const char *name; any_fn fn; } exports[] = {
    F(chi_strerror), F(chi_last_error), F(chi_abi_version), F(chi_client_init),
    F(chi_client_finalize), F(chi_client_segment), F(chi_task_new), F(chi_task_submit),
    F(chi_task_wait), F(chi_task_call), F(chi_task_is_done), F(chi_task_del),
    F(chi_buffer_alloc), F(chi_buffer_free), F(chi_ptr_to_shm), F(chi_shm_to_ptr),
    F(chi_module_register), F(chi_pool_create), F(chi_pool_get_id), F(chi_pool_destroy),
    F(chi_runtime_flush), F(chi_runtime_stop), F(chi_runtime_stats), F(chi_runtime_stop_node),
    F(chi_runtime_serve), F(chi_config_resolve), F(chi_segment_remove), F(chi_version_string),
    F(chi_container_add_lanes), F(chi_container_id), F(chi_container_count),
    F(chi_container_pool_id), F(chi_lane_by_hash), F(chi_lane_least_loaded),
    F(chi_rctx_container), F(chi_rctx_client), F(chi_rctx_replica_count),
    F(chi_rctx_replica), F(chi_rctx_shm_ptr), F(chi_rt_module_register),
    F(chi_rt_pool_create), F(chi_rt_pool_find), F(chi_rt_pool_destroy), F(chi_rt_flush),
    F(chi_rt_request_stop), F(chi_rt_stats_json),
};

int main(void) {
    size_t i;
    chi_domain_query_t q = chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 7);
    for (i = 0; i < sizeof exports / sizeof exports[0]; i++) {
        if (exports[i].fn == NULL) {
            fprintf(stderr, "%s:%d: FAIL: %s resolved to NULL\n", __FILE__, __LINE__,
                    exports[i].name);
            return 1;
        }
    }
    if (chi_abi_version() != (uint32_t)CHI_ABI_PACK(CHI_ABI_MAJOR, CHI_ABI_MINOR)) {
        fprintf(stderr, "%s:%d: FAIL: chi_abi_version() = 0x%x, header says 0x%x [%s]\n",
                __FILE__, __LINE__, (unsigned)chi_abi_version(),
                (unsigned)CHI_ABI_PACK(CHI_ABI_MAJOR, CHI_ABI_MINOR), chi_last_error());
        return 1;
    }
    if (q.flags != (CHI_DQ_DIRECT | CHI_DQ_HASH) || q.sel != 7 || chi_module_entry() == NULL ||
        strlen(CHI_VERSION_STRING) == 0) {
        fprintf(stderr, "%s:%d: FAIL: header inline helpers\n", __FILE__, __LINE__);
        return 1;
    }
    printf("%u exports linked, ABI %d.%d\n", (unsigned)(sizeof exports / sizeof exports[0]),
           CHI_ABI_MAJOR, CHI_ABI_MINOR);
    return 0;
}
#endif
