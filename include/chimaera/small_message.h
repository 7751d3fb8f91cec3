/* The small_message module: a tiny module for latency tests and examples.
 * Md(depth) returns 1 in `ret`; with depth > 0 it first runs Md(depth - 1) as a subtask on
 * the next container. Io moves a bulk buffer: CHI_SM_IO_WRITE checks every byte equals
 * `pattern`, CHI_SM_IO_READ fills the buffer with it; `ret` counts the bytes handled. */
#ifndef CHIMAERA_SMALL_MESSAGE_H
#define CHIMAERA_SMALL_MESSAGE_H

#include "chimaera/client.h"
#include "chimaera/task.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CHI_SM_MODULE_NAME "small_message"
#define CHI_SM_MD 10u
#define CHI_SM_IO 11u
#define CHI_SM_SERVED 12u /* ABI 1.5 */

#define CHI_SM_IO_WRITE 1u /* client -> runtime: the runtime checks the data */
#define CHI_SM_IO_READ  2u /* runtime -> client: the runtime fills the buffer */

typedef struct chi_sm_md_task {
    chi_task_t hdr;
    uint32_t depth;    /* IN */
    int32_t ret;       /* OUT: 1, or the number of containers after a broadcast */
} chi_sm_md_task_t;

typedef struct chi_sm_io_task {
    chi_task_t hdr;
    chi_shm_ptr_t data; /* IN: bulk of `size` bytes, DT_WRITE | DT_EXPOSE */
    uint64_t size;      /* IN */
    uint32_t io_flags;  /* IN: CHI_SM_IO_WRITE or CHI_SM_IO_READ */
    uint32_t pattern;   /* IN: the byte value (low 8 bits) */
    uint64_t ret;       /* OUT: bytes checked or filled */
} chi_sm_io_task_t;

/** How many Md tasks the container has run since its pool was created (carried across
 *  upgrades). */
typedef struct chi_sm_served_task {
    chi_task_t hdr;
    uint64_t served;    /* OUT */
} chi_sm_served_task_t;

/** Runs Md synchronously. Returns the task's rc (or a wait error) and stores its ret. */
static inline int chi_sm_md(chi_client_t *c, uint64_t pool_id, chi_domain_query_t dq,
                            uint32_t depth, int32_t *ret) {
    chi_task_t *t;
    int rc = chi_task_new(c, pool_id, CHI_SM_MD, sizeof(chi_sm_md_task_t), &dq, &t);
    if (rc < 0) return rc;
    ((chi_sm_md_task_t *)t)->depth = depth;
    rc = chi_task_call(c, t, -1);
    if (ret) *ret = ((chi_sm_md_task_t *)t)->ret;
    chi_task_del(c, t);
    return rc;
}

#ifdef __cplusplus
}
#endif
#endif
