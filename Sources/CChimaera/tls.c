// Thread-local state: the current worker and the last error message. initial-exec keeps
// the worker lookup on the task path to one instruction instead of a __tls_get_addr call; it
// is safe because the state is 16 bytes (glibc reserves static TLS for dlopen'ed libraries).
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "chi_shim.h"

#define CHI_ERR_MAX 1024

static __thread __attribute__((tls_model("initial-exec"))) void *tls_worker;
static __thread __attribute__((tls_model("initial-exec"))) char *tls_error;

/* A one-block cache per size class for the calling thread (see ShmAllocator.allocateTask):
 * a synchronous client's task is freed and allocated again on every call, and taking it
 * back here costs no atomic operation. `owner` says which allocator the blocks belong to. */
static __thread __attribute__((tls_model("initial-exec"))) struct {
    uint64_t owner;
    uint64_t off[CHI_TASK_CACHE_CLASSES];
} tls_task_cache;

uint64_t chi_tls_cache_take(uint64_t owner, uint32_t cls) {
    if (cls >= CHI_TASK_CACHE_CLASSES || tls_task_cache.owner != owner) return 0;
    uint64_t off = tls_task_cache.off[cls];
    tls_task_cache.off[cls] = 0;
    return off;
}

int chi_tls_cache_put(uint64_t owner, uint32_t cls, uint64_t off) {
    if (cls >= CHI_TASK_CACHE_CLASSES) return 0;
    if (tls_task_cache.owner != owner) {
        /* Another allocator's blocks are still here: leave them, do not cache. */
        for (int i = 0; i < CHI_TASK_CACHE_CLASSES; i++)
            if (tls_task_cache.off[i] != 0) return 0;
        tls_task_cache.owner = owner;
    }
    if (tls_task_cache.off[cls] != 0) return 0;
    tls_task_cache.off[cls] = off;
    return 1;
}

void *chi_tls_worker(void) { return tls_worker; }
void chi_tls_set_worker(void *w) { tls_worker = w; }
const char *chi_tls_error(void) { return tls_error ? tls_error : ""; }

/* The message buffer goes with its thread: a key's destructor frees it (the __thread pointer
 * stays the fast path; the key only carries the buffer to the destructor). */
static pthread_key_t error_key;
static pthread_once_t error_once = PTHREAD_ONCE_INIT;
static void free_error(void *p) { free(p); }
static void make_error_key(void) { pthread_key_create(&error_key, free_error); }

void chi_tls_set_error(const char *msg) {
    if (!msg) msg = "";
    if (!tls_error) {
        tls_error = malloc(CHI_ERR_MAX);
        if (!tls_error) return;
        pthread_once(&error_once, make_error_key);
        pthread_setspecific(error_key, tls_error);
    }
    size_t n = strlen(msg);
    if (n >= CHI_ERR_MAX) n = CHI_ERR_MAX - 1;
    memcpy(tls_error, msg, n);
    tls_error[n] = 0;
}
