// Thread-local state: the current worker and the last error message. initial-exec keeps
// the worker lookup on the task path to one instruction instead of a __tls_get_addr call; it
// is safe because the state is 16 bytes (glibc reserves static TLS for dlopen'ed libraries).
#include <stdlib.h>
#include <string.h>

#include "chi_shim.h"

#define CHI_ERR_MAX 1024

static __thread __attribute__((tls_model("initial-exec"))) void *tls_worker;
static __thread __attribute__((tls_model("initial-exec"))) char *tls_error;

void *chi_tls_worker(void) { return tls_worker; }
void chi_tls_set_worker(void *w) { tls_worker = w; }
const char *chi_tls_error(void) { return tls_error ? tls_error : ""; }
void chi_tls_set_error(const char *msg) {
    if (!msg) msg = "";
    if (!tls_error) {
        tls_error = malloc(CHI_ERR_MAX);
        if (!tls_error) return;
    }
    size_t n = strlen(msg);
    if (n >= CHI_ERR_MAX) n = CHI_ERR_MAX - 1;
    memcpy(tls_error, msg, n);
    tls_error[n] = 0;
}
