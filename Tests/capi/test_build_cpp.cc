// The public headers compile as C++ (with -pedantic -Wall -Wextra -Werror) and link: every
// header at once, the module export macro, the inline helpers, the layouts C++ sees.
#include "chimaera/chimaera.h"
#include "chimaera/module.h"
#include "chimaera/small_message.h"
#include "chimaera/admin.h"
#include "chimaera/client.h"
#include "chimaera/errors.h"
#include "chimaera/task.h"
#include "chimaera/version.h"

#include <cstddef>
#include <cstdio>
#include <cstring>

static_assert(sizeof(chi_task_t) == 128, "task header is two cache lines");
static_assert(offsetof(chi_task_t, done) == 64, "completion word opens the second line");
static_assert(sizeof(chi_domain_query_t) == 24, "domain query is 24 bytes");
static_assert(sizeof(chi_sm_md_task_t) == 136, "Md task layout");
static_assert(sizeof(chi_sm_io_task_t) == 168, "Io task layout");

static int run_noop(void *, chi_task_t *, chi_rctx_t *) { return 0; }

static chi_module_vtable_t make_vtable() {
    chi_module_vtable_t v;
    std::memset(&v, 0, sizeof v);
    v.size = sizeof v;
    v.abi_major = CHI_ABI_MAJOR;
    v.abi_minor = CHI_ABI_MINOR;
    v.name = "build_test_cpp";
    v.run = run_noop;
    return v;
}
static const chi_module_vtable_t vtable = make_vtable();
CHI_MODULE_EXPORT(&vtable)

int main() {
    chi_client_opts_t opts = chi_client_opts_t();
    opts.size = sizeof opts;
    chi_domain_query_t q = chi_dq_global_bcast();
    chi_task_t t = chi_task_t();
    chi_task_set_period_ms(&t, 5);
    if (chi_abi_version() != static_cast<uint32_t>(CHI_ABI_PACK(CHI_ABI_MAJOR, CHI_ABI_MINOR))) {
        std::fprintf(stderr, "%s:%d: FAIL: chi_abi_version() = 0x%x [%s]\n", __FILE__, __LINE__,
                     static_cast<unsigned>(chi_abi_version()), chi_last_error());
        return 1;
    }
    if (q.flags != (CHI_DQ_GLOBAL | CHI_DQ_RANGE | CHI_DQ_BCAST) || t.period_ns != 5000000u ||
        !(t.flags & CHI_TASK_PERIODIC) || chi_module_entry() != &vtable ||
        chi_strerror(-CHI_ENOPOOL) == nullptr) {
        std::fprintf(stderr, "%s:%d: FAIL: header helpers as C++\n", __FILE__, __LINE__);
        return 1;
    }
    // chi_sm_md is a static inline in a C header: it must be valid C++ too. Only take its
    // address here; calling it needs a runtime.
    int (*md)(chi_client_t *, uint64_t, chi_domain_query_t, uint32_t, int32_t *) = chi_sm_md;
    (void)md;
    std::printf("C++ build ok\n");
    return 0;
}
