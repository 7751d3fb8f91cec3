/* libchimaera.so's public C ABI, for the `chimaera` tool (Sources/ChimaeraTool); the Makefile
 * puts include/ on the path (-Xcc -I). bdev.h: compose encodes bdev's create parameters;
 * module.h: compose reads other modules' create descriptors (chi_module_describe). */
#include "chimaera/chimaera.h"
#include "chimaera/small_message.h"
#include "chimaera/bdev.h"
#include "chimaera/module.h"
