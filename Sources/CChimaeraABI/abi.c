/* The ABI version the Swift API was compiled against (see shim.h). */
#include "shim.h"

uint32_t chi_swift_abi_compiled(void) { return CHI_ABI_PACK(CHI_ABI_MAJOR, CHI_ABI_MINOR); }
