/* Error codes: every chi_* call returns 0 (or a count) on success and a negative errno-style
 * code on failure. chi_strerror() names a code; chi_last_error() gives the calling thread's
 * detailed message for its most recent failure. */
#ifndef CHIMAERA_ERRORS_H
#define CHIMAERA_ERRORS_H

#include <errno.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Codes beyond errno's range, for conditions errno has no good name for. */
#define CHI_EBASE        4096
#define CHI_ENOMODULE    (CHI_EBASE + 1) /* no module of that name on the search path */
#define CHI_ENOPOOL      (CHI_EBASE + 2) /* no pool with that id or name */
#define CHI_ENOMETHOD    (CHI_EBASE + 3) /* the pool's module has no such method */
#define CHI_EABI         (CHI_EBASE + 4) /* ABI major mismatch */
#define CHI_ENORUNTIME   (CHI_EBASE + 5) /* no runtime is serving the segment */
#define CHI_EBADTASK     (CHI_EBASE + 6) /* malformed task header or parameters */
#define CHI_ENOCONTAINER (CHI_EBASE + 7) /* the domain query selects no container */
#define CHI_ECONFIG      (CHI_EBASE + 8) /* bad configuration key or value */
#define CHI_ESTOPPED     (CHI_EBASE + 9) /* the runtime or pool is shutting down */
#define CHI_ENODE        (CHI_EBASE + 10) /* another node is unreachable or did not answer in time */
#define CHI_ELIMIT       (CHI_EBASE + 11) /* a runtime limit was reached (ABI 1.2); the message names its key */
#define CHI_EVERSION     (CHI_EBASE + 12) /* an upgrade's module is not newer than the one loaded (ABI 1.5) */
#define CHI_ELAST        CHI_EVERSION

/** Returns a static, never-NULL description of a code (positive or negative). */
const char *chi_strerror(int code);

/** Returns the calling thread's message for its last failed chi_* call; "" if none.
 *  The string stays valid until the thread's next chi_* call. */
const char *chi_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
