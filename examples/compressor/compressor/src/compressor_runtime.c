/* The compressor module's runtime side: each container's state and the methods' code. The
 * runtime loads it as libexample_compressor.so.
 *
 * This file is yours. chi_refresh_repo only rewrites the CHI_AUTOGEN_BEGIN(decls) region and
 * adds a CHI_BEGIN(Method) ... CHI_END(Method) region with a skeleton for each new method, above
 * the CHI_AUTOGEN_METHODS line. The hex number on a CHI_BEGIN line is the checksum of the
 * skeleton: while the region still matches it, the tool may update it (new params) or remove
 * it (method removed); once you edit it, it is left alone. The descriptors, the dispatch and
 * the entry point are generated into compressor_lib_exec.h, included at the end. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <chimaera/module.h>
#include <zlib.h>

#include "compressor/compressor_tasks.h"

/* CHI_AUTOGEN_BEGIN(decls) */
typedef struct compressor_state compressor_state_t; /* defined in the Create region */

static int Create(chi_container_t *c, const compressor_create_params_t *params,
                  compressor_state_t **state);
static void Destroy(chi_container_t *c, compressor_state_t *state);
static int MapTaskToLane(compressor_state_t *state, chi_container_t *c, const chi_task_t *task);
static int Monitor(compressor_state_t *state, uint32_t mode, chi_task_t *task, chi_rctx_t *rctx);
static int32_t Compress(chi_rctx_t *rctx, const void *data, uint64_t size, int32_t level, void *out,
                        uint64_t out_cap, uint64_t *out_size);
static int32_t Decompress(chi_rctx_t *rctx, const void *data, uint64_t size, void *out,
                          uint64_t out_cap, uint64_t *out_size);
/* CHI_AUTOGEN_END(decls) */

/** Picks the lane a task runs on: an index from chi_lane_by_hash or chi_lane_least_loaded. */
static int MapTaskToLane(compressor_state_t *state, chi_container_t *c, const chi_task_t *task) {
    (void)state;
    return chi_lane_by_hash(c, 0, task->lane_hash);
}

/** The scheduling and aggregation hooks (CHI_MONITOR_*); returns 0 or -errno. For a broadcast
 *  this keeps the first replica's outputs and the first failure; a dynamic query is left to
 *  the runtime, which picks a container by hash. */
static int Monitor(compressor_state_t *state, uint32_t mode, chi_task_t *task, chi_rctx_t *rctx) {
    (void)state;
    if (mode != CHI_MONITOR_REPLICA_AGG) return 0;
    uint32_t n = chi_rctx_replica_count(rctx);
    for (uint32_t i = 0; i < n; i++) {
        const chi_task_t *r = chi_rctx_replica(rctx, i);
        if (r == NULL) continue;
        if (i == 0 && r->size == task->size)
            memcpy(CHI_TASK_PARAMS(task), CHI_TASK_PARAMS(r), task->size - sizeof(chi_task_t));
        if (r->rc < 0) return r->rc;
    }
    return 0;
}

/** The task's rc for a zlib status. */
static int32_t zlib_rc(int z) {
    switch (z) {
    case Z_OK: return 0;
    case Z_MEM_ERROR: return -ENOMEM;
    case Z_BUF_ERROR: return -ENOSPC;   /* out is too small */
    case Z_DATA_ERROR: return -EBADMSG; /* not zlib data, or corrupt */
    default: return -EINVAL;
    }
}

/* CHI_BEGIN(Create) cd62f465 */
/** One container's state: what its methods share. Add your own fields. */
struct compressor_state {
    uint32_t id; /* the container's id in its pool */
};

/** Builds one container's state from the pool's create params and adds its lanes. Returns 0
 *  or -errno (the pool is not created). */
static int Create(chi_container_t *c, const compressor_create_params_t *params,
                  compressor_state_t **state) {
    (void)params;
    compressor_state_t *s = calloc(1, sizeof(*s));
    if (s == NULL) return -ENOMEM;
    s->id = chi_container_id(c);
    /* Lane group 0: one low-latency lane. MapTaskToLane picks among a group's lanes. */
    int rc = chi_container_add_lanes(c, 0, 1, CHI_PRIO_LOW_LATENCY);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *state = s;
    return 0;
}
/* CHI_END(Create) */

/* CHI_BEGIN(Destroy) 4e693fe7 */
/** Frees one container's state when its pool is destroyed. */
static void Destroy(chi_container_t *c, compressor_state_t *state) {
    (void)c;
    free(state);
}
/* CHI_END(Destroy) */

/* CHI_BEGIN(Compress) 954581ce */
/** Compress (method 10): zlib-compresses size bytes at data into out (out_cap bytes; a
 *  compressor_bound(size) buffer always suffices) at level 0-9, or -1 for zlib's default, and
 *  stores the compressed size. A plain function: the runtime calls it through libffi with the
 *  task's fields, the buffers already checked to lie in shared memory. Returns 0, -EINVAL,
 *  -ENOSPC (out too small) or -ENOMEM. */
static int32_t Compress(chi_rctx_t *rctx, const void *data, uint64_t size, int32_t level, void *out,
                        uint64_t out_cap, uint64_t *out_size) {
    (void)rctx;
    if (out == NULL || (data == NULL && size != 0)) return -EINVAL;
    if (level < Z_DEFAULT_COMPRESSION || level > Z_BEST_COMPRESSION) return -EINVAL;
    /* zlib counts in uLong: 64 bits on LP64 Linux, but say so rather than truncate. */
    if ((uLong)size != size || (uLongf)out_cap != out_cap) return -EFBIG;
    uLongf n = (uLongf)out_cap;
    int z = compress2(out, &n, data != NULL ? data : (const void *)"", (uLong)size, level);
    if (z != Z_OK) return zlib_rc(z);
    *out_size = n;
    return 0;
}
/* CHI_END(Compress) */

/* CHI_BEGIN(Decompress) d47657c3 */
/** Decompress (method 11): inflates the size bytes of zlib data at data into out (out_cap
 *  bytes) and stores the decompressed size. Returns 0, -EINVAL, -ENOSPC (out too small),
 *  -EBADMSG (not zlib data) or -ENOMEM. */
static int32_t Decompress(chi_rctx_t *rctx, const void *data, uint64_t size, void *out,
                          uint64_t out_cap, uint64_t *out_size) {
    (void)rctx;
    if (data == NULL || out == NULL) return -EINVAL;
    if ((uLong)size != size || (uLongf)out_cap != out_cap) return -EFBIG;
    uLongf n = (uLongf)out_cap;
    int z = uncompress(out, &n, data, (uLong)size);
    if (z != Z_OK) return zlib_rc(z);
    *out_size = n;
    return 0;
}
/* CHI_END(Decompress) */

/* CHI_AUTOGEN_METHODS: chi_refresh_repo adds new methods above this line */

#include "compressor_lib_exec.h"
