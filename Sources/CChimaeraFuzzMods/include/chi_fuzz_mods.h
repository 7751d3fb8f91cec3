/* The built-in modules, compiled into the fuzz harness (Sources/ChimaeraFuzz) for their method
 * descriptors: the task codec is fuzzed against the layouts real modules declare. Each module's
 * chi_module_entry is renamed so that several fit in one program. */
#ifndef CHI_FUZZ_MODS_H
#define CHI_FUZZ_MODS_H

#include "chimaera/module.h"

const chi_module_vtable_t *chi_fuzz_small_message_entry(void);
const chi_module_vtable_t *chi_fuzz_admin_entry(void);

#endif
