/* The compressor module's tasks: its create params and one struct per method, laid out as
 * compressor_methods.yaml declares them. Clients and the runtime share these structs in shared
 * memory, so they are plain C: no pointers, only chi_shm_ptr_t.
 *
 * chi_refresh_repo rewrites the CHI_AUTOGEN_BEGIN(tasks) region; what you add outside it stays. */
#ifndef EXAMPLE_COMPRESSOR_TASKS_H
#define EXAMPLE_COMPRESSOR_TASKS_H

#include <stdbool.h>
#include <stdint.h>

#include <chimaera/task.h>

#include "compressor_methods.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CHI_AUTOGEN_BEGIN(tasks) */
/** kCreate's parameters: chi_pool_create copies them to every container's Create. */
typedef struct compressor_create_params {
    uint32_t reserved; /* kCreate declares no params */
} compressor_create_params_t;

/** Compress (method 10, plain): Compresses size bytes at data into out (zlib, at level 0-9, or
 *  -1 for zlib's default). */
typedef struct compressor_compress_task {
    chi_task_t hdr;
    chi_shm_ptr_t data; /* in: bulk of `size` bytes, DT_WRITE */
    uint64_t size;      /* in */
    int32_t level;      /* in */
    chi_shm_ptr_t out;  /* out: bulk of `out_cap` bytes, DT_EXPOSE */
    uint64_t out_cap;   /* in */
    uint64_t out_size;  /* out */
} compressor_compress_task_t;

/** Decompress (method 11, plain): Decompresses size bytes at data into out; out_size is the
 *  decompressed size. */
typedef struct compressor_decompress_task {
    chi_task_t hdr;
    chi_shm_ptr_t data; /* in: bulk of `size` bytes, DT_WRITE */
    uint64_t size;      /* in */
    chi_shm_ptr_t out;  /* out: bulk of `out_cap` bytes, DT_EXPOSE */
    uint64_t out_cap;   /* in */
    uint64_t out_size;  /* out */
} compressor_decompress_task_t;
/* CHI_AUTOGEN_END(tasks) */

#ifdef __cplusplus
}
#endif
#endif
