/* chimaera_admin (string fields, a DT_WRITE bulk, a DT_EXPOSE bulk, INOUT), as built. */
#include "chi_fuzz_mods.h"

#define chi_module_entry chi_fuzz_admin_entry
#include "../Mods/chimaera_admin/admin.c"
