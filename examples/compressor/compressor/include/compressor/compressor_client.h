/* The compressor module's client API: compressor_create makes a pool, and each method has
 * compressor_<method> (run it and wait) and compressor_<method>_new (a filled task to submit
 * yourself). Link example::compressor_client (CMake) or use pkg-config example_compressor.
 *
 * chi_refresh_repo rewrites the CHI_AUTOGEN_BEGIN(client) region; what you add outside it stays. */
#ifndef EXAMPLE_COMPRESSOR_CLIENT_H
#define EXAMPLE_COMPRESSOR_CLIENT_H

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <chimaera/chimaera.h>

#include "compressor_tasks.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CHI_AUTOGEN_BEGIN(client) */
/** Creates (or finds, by name) a pool of example_compressor with chi_containers_per_node containers
 *  on each node (0 = 1), passing the create params to each; stores its id. Blocks. */
static inline int compressor_create(chi_client_t *chi_c, const char *chi_pool_name,
                                    uint32_t chi_containers_per_node, uint64_t *chi_pool_id) {
    compressor_create_params_t chi_p;
    memset(&chi_p, 0, sizeof chi_p);
    chi_pool_create_opts_t chi_o;
    memset(&chi_o, 0, sizeof chi_o);
    chi_o.size = (uint32_t)sizeof chi_o;
    chi_o.containers_per_node = chi_containers_per_node;
    chi_o.module = COMPRESSOR_MODULE_NAME;
    chi_o.name = chi_pool_name;
    chi_o.params = &chi_p;
    chi_o.params_size = (uint32_t)sizeof chi_p;
    return chi_pool_create(chi_c, &chi_o, chi_pool_id);
}

/** Allocates one Compress task (method 10) for chi_pool_id and fills its inputs; bulk buffers
 *  must lie in shared memory (chi_buffer_alloc). Submit it with chi_task_submit, free it with
 *  chi_task_del. Returns 0 or a negative error. */
static inline int compressor_compress_new(chi_client_t *chi_c, uint64_t chi_pool_id,
                                          chi_domain_query_t chi_dq, const void *data,
                                          uint64_t size, int32_t level, void *out, uint64_t out_cap,
                                          compressor_compress_task_t **chi_out) {
    chi_task_t *chi_t;
    int chi_rc = chi_task_new(chi_c, chi_pool_id, COMPRESSOR_METHOD_COMPRESS,
                              sizeof(compressor_compress_task_t), &chi_dq, &chi_t);
    if (chi_rc < 0) return chi_rc;
    compressor_compress_task_t *chi_task = (compressor_compress_task_t *)chi_t;
    if (data != NULL && (chi_rc = chi_ptr_to_shm(chi_c, data, &chi_task->data)) < 0) {
        chi_task_del(chi_c, chi_t);
        return chi_rc;
    }
    chi_task->size = size;
    chi_task->level = level;
    if (out != NULL && (chi_rc = chi_ptr_to_shm(chi_c, out, &chi_task->out)) < 0) {
        chi_task_del(chi_c, chi_t);
        return chi_rc;
    }
    chi_task->out_cap = out_cap;
    *chi_out = chi_task;
    return 0;
}

/** Compress (method 10, plain): Compresses size bytes at data into out (zlib, at level 0-9, or
 *  -1 for zlib's default). Runs it and waits; out params may be NULL. Returns the task's rc (0
 *  or a positive count on success, -errno on failure) or a negative error from submitting or
 *  waiting. */
static inline int compressor_compress(chi_client_t *chi_c, uint64_t chi_pool_id,
                                      chi_domain_query_t chi_dq, const void *data, uint64_t size,
                                      int32_t level, void *out, uint64_t out_cap,
                                      uint64_t *out_size) {
    compressor_compress_task_t *chi_task;
    int chi_rc = compressor_compress_new(chi_c, chi_pool_id, chi_dq, data, size, level, out,
                                         out_cap, &chi_task);
    if (chi_rc < 0) return chi_rc;
    chi_rc = chi_task_call(chi_c, &chi_task->hdr, -1);
    if (chi_task_is_done(&chi_task->hdr)) {
        if (out_size != NULL) *out_size = chi_task->out_size;
    }
    chi_task_del(chi_c, &chi_task->hdr);
    return chi_rc;
}

/** Allocates one Decompress task (method 11) for chi_pool_id and fills its inputs; bulk buffers
 *  must lie in shared memory (chi_buffer_alloc). Submit it with chi_task_submit, free it with
 *  chi_task_del. Returns 0 or a negative error. */
static inline int compressor_decompress_new(chi_client_t *chi_c, uint64_t chi_pool_id,
                                            chi_domain_query_t chi_dq, const void *data,
                                            uint64_t size, void *out, uint64_t out_cap,
                                            compressor_decompress_task_t **chi_out) {
    chi_task_t *chi_t;
    int chi_rc = chi_task_new(chi_c, chi_pool_id, COMPRESSOR_METHOD_DECOMPRESS,
                              sizeof(compressor_decompress_task_t), &chi_dq, &chi_t);
    if (chi_rc < 0) return chi_rc;
    compressor_decompress_task_t *chi_task = (compressor_decompress_task_t *)chi_t;
    if (data != NULL && (chi_rc = chi_ptr_to_shm(chi_c, data, &chi_task->data)) < 0) {
        chi_task_del(chi_c, chi_t);
        return chi_rc;
    }
    chi_task->size = size;
    if (out != NULL && (chi_rc = chi_ptr_to_shm(chi_c, out, &chi_task->out)) < 0) {
        chi_task_del(chi_c, chi_t);
        return chi_rc;
    }
    chi_task->out_cap = out_cap;
    *chi_out = chi_task;
    return 0;
}

/** Decompress (method 11, plain): Decompresses size bytes at data into out; out_size is the
 *  decompressed size. Runs it and waits; out params may be NULL. Returns the task's rc (0 or a
 *  positive count on success, -errno on failure) or a negative error from submitting or
 *  waiting. */
static inline int compressor_decompress(chi_client_t *chi_c, uint64_t chi_pool_id,
                                        chi_domain_query_t chi_dq, const void *data, uint64_t size,
                                        void *out, uint64_t out_cap, uint64_t *out_size) {
    compressor_decompress_task_t *chi_task;
    int chi_rc = compressor_decompress_new(chi_c, chi_pool_id, chi_dq, data, size, out, out_cap,
                                           &chi_task);
    if (chi_rc < 0) return chi_rc;
    chi_rc = chi_task_call(chi_c, &chi_task->hdr, -1);
    if (chi_task_is_done(&chi_task->hdr)) {
        if (out_size != NULL) *out_size = chi_task->out_size;
    }
    chi_task_del(chi_c, &chi_task->hdr);
    return chi_rc;
}
/* CHI_AUTOGEN_END(client) */

/** The level argument of compressor_compress for zlib's default (6). */
#define COMPRESSOR_DEFAULT_LEVEL (-1)

/** The largest size zlib can compress size bytes to: an out_cap for compressor_compress that
 *  always suffices (zlib's compressBound, so clients need not link zlib). */
static inline uint64_t compressor_bound(uint64_t size) {
    return size + (size >> 12) + (size >> 14) + (size >> 25) + 13;
}

#ifdef __cplusplus
}
#endif
#endif
