/* The `chimaera` tool: a thin main over libchimaera.so, so that the daemon and every module
 * it loads share one copy of the runtime. */
#include "chimaera/chimaera.h"

int main(int argc, char **argv) { return chi_tool_main(argc, argv); }
