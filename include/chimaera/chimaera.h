/* Chimaera: the umbrella header. Link with -lchimaera. */
#ifndef CHIMAERA_CHIMAERA_H
#define CHIMAERA_CHIMAERA_H

#include "chimaera/version.h"
#include "chimaera/errors.h"
#include "chimaera/task.h"
#include "chimaera/client.h"
#include "chimaera/admin.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Entry point of the `chimaera` command-line tool (start, stop, status, bench, make-repo,
 *  make-mod, refresh-repo). Runs in the calling thread; returns the process exit status. */
int chi_tool_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
