/* libchimaera.so's public C ABI, for the Swift API (Sources/ChimaeraSwift) and the `chimaera`
 * tool (Sources/ChimaeraTool); include/chimaera here is a symlink to the public headers.
 * bdev.h: compose encodes bdev's create parameters; module.h: compose reads other modules'
 * create descriptors (chi_module_describe). */
#ifndef CHIMAERA_SWIFT_SHIM_H
#define CHIMAERA_SWIFT_SHIM_H
#include <stdint.h>

#include "chimaera/chimaera.h"
#include "chimaera/small_message.h"
#include "chimaera/bdev.h"
#include "chimaera/module.h"

/** The ABI version (CHI_ABI_PACK) these headers declare, compiled into the program: compared
 *  with chi_abi_version() of the library loaded at run time. */
uint32_t chi_swift_abi_compiled(void);

#endif
