// Thread-local state: the current worker and the last error message.
#include <string.h>

#include "chi_shim.h"

static __thread void *tls_worker;
static __thread char tls_error[512];

void *chi_tls_worker(void) { return tls_worker; }
void chi_tls_set_worker(void *w) { tls_worker = w; }
const char *chi_tls_error(void) { return tls_error; }
void chi_tls_set_error(const char *msg) {
    if (!msg) msg = "";
    size_t n = strlen(msg);
    if (n >= sizeof tls_error) n = sizeof tls_error - 1;
    memcpy(tls_error, msg, n);
    tls_error[n] = 0;
}
