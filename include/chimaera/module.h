/* The module API: what a ChiMod (lib<name>.so) exports and the runtime services it may call.
 * A module exports one symbol, chi_module_entry, returning its vtable. Hooks run on runtime
 * worker threads, inside a fiber: chi_task_wait on a subtask suspends the fiber, not the
 * thread. Hooks for one container never run concurrently with create/destroy. */
#ifndef CHIMAERA_MODULE_H
#define CHIMAERA_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include "chimaera/client.h"
#include "chimaera/errors.h"
#include "chimaera/task.h"
#include "chimaera/version.h"
#include "chimaera/worch.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Task-layout descriptors ---------------------------------------------------------- */

/* Field types. */
#define CHI_FT_U8    1u
#define CHI_FT_U16   2u
#define CHI_FT_U32   3u
#define CHI_FT_U64   4u
#define CHI_FT_I8    5u
#define CHI_FT_I16   6u
#define CHI_FT_I32   7u
#define CHI_FT_I64   8u
#define CHI_FT_F32   9u
#define CHI_FT_F64   10u
#define CHI_FT_BOOL  11u
#define CHI_FT_BYTES 12u /* fixed-size inline bytes */
#define CHI_FT_STR   13u /* fixed-size inline char array, NUL-terminated */
#define CHI_FT_BULK  14u /* chi_shm_ptr_t to bulk data; its length is another field */
#define CHI_FT_SHM_PTR 15u /* chi_shm_ptr_t that is not bulk data */
#define CHI_FT_DOMAIN_QUERY 16u

/* Directions. */
#define CHI_DIR_IN    1u
#define CHI_DIR_OUT   2u
#define CHI_DIR_INOUT 3u

/* Bulk modes (the seed's DT_WRITE / DT_EXPOSE). */
#define CHI_DT_WRITE  1u /* the data travels with the request */
#define CHI_DT_EXPOSE 2u /* the remote side writes the data; it is copied back on completion */

/** One parameter of a task, at `offset` bytes from the start of the task. */
typedef struct chi_field_desc {
    const char *name;
    uint32_t offset;
    uint32_t size;
    uint32_t type;            /* CHI_FT_* */
    uint32_t dir;             /* CHI_DIR_* */
    int32_t bulk_size_field;  /* CHI_FT_BULK: index of the field holding its byte count; else -1 */
    uint32_t bulk_mode;       /* CHI_FT_BULK: CHI_DT_WRITE and/or CHI_DT_EXPOSE; else 0 */
} chi_field_desc_t;

/* Method flags. */
#define CHI_MF_PERIODIC_OK 0x1u /* the method may be submitted as CHI_TASK_PERIODIC */
/* ABI 1.7: the descriptor is not a method but the layout of the module's create parameters
 * (the chi_pool_create_opts_t.params bytes its create hook receives), for bindings and tools
 * that build them by name. Its id is CHI_METHOD_CREATE, task_size is sizeof the params struct,
 * each field's offset counts from the start of the params (not of a task), and every field is
 * CHI_DIR_IN of a plain type (numbers, bool, bytes, str: no pointer, bulk or domain query).
 * handler is NULL and no other flag is set; a module lists at most one. The runtime never
 * dispatches it (create is the create hook): a task of method 0 is still refused with
 * -CHI_ENOMETHOD, and method 0 is not otherwise declarable beside it. A runtime older than
 * 1.7 takes such a descriptor for a method, so a module that lists one needs a 1.7 runtime. */
#define CHI_MF_CREATE_PARAMS 0x2u
/* ABI 1.8: the method changes the container's state: in a replicated pool it runs on the primary and
 * then, in the primary's order, on every backup (a copy carrying the primary's IN and OUT
 * fields and CHI_TASK_REPLICA) before it completes. Unmarked methods run on the primary only. */
#define CHI_MF_WRITE 0x4u
/* ABI 1.7: tasks of the method never leave their node. The runtime refuses one routed to a
 * container on another node with -CHI_ENOCONTAINER, as it does a task carrying CHI_TF_LOCAL,
 * so callers that build tasks from descriptors (bindings) need not set the task flag. */
#define CHI_MF_LOCAL 0x8u

/** One method: its id, name, task size and parameters. */
typedef struct chi_method_desc {
    uint32_t id;
    uint32_t task_size;       /* sizeof the method's task struct (header included) */
    uint32_t flags;           /* CHI_MF_* */
    uint32_t nfields;
    const char *name;
    const chi_field_desc_t *fields;
    /** Optional: a plain C function taking (chi_rctx_t *, then each field in order; OUT and
     *  INOUT fields by pointer) and returning int32_t, called through libffi instead of run. */
    const void *handler;
} chi_method_desc_t;

/** ABI 1.7: the element layout of a CHI_FT_BYTES field that holds an array of records (bdev's
 *  Allocate returns chi_bdev_block_t blocks[]), so a binding can present the elements as
 *  objects with no code for the module. The runtime only checks it at load (a bad record
 *  refuses the module) and moves the field as the bytes it is. */
typedef struct chi_record_desc {
    uint32_t method;        /* the method's id; CHI_METHOD_CREATE: the create-params descriptor */
    uint32_t field;         /* index of the CHI_FT_BYTES field in that method's fields */
    uint32_t elem_size;     /* bytes of one element (with its padding); divides the field's size */
    int32_t count_field;    /* index of the integer field that holds how many elements are
                             * valid (bdev: nblocks), or -1: all of them */
    const char *name;       /* the element type's name, e.g. "Block" */
    const chi_field_desc_t *fields; /* the element's members, offsets from the element's start;
                                     * plain types only, dir as the array field's */
    uint32_t nfields;
    uint32_t reserved;      /* zero */
} chi_record_desc_t;

/* ---- Opaque runtime objects ----------------------------------------------------------- */

/** One container (shard) of a pool, as seen by its module. */
typedef struct chi_container chi_container_t;
/** The context of one running task. */
typedef struct chi_rctx chi_rctx_t;
/** Where migrate_out writes a container's state, and where migrate_in reads it (ABI 1.5). */
typedef struct chi_migrate_stream chi_migrate_stream_t;

/* Monitor modes. */
#define CHI_MONITOR_SCHEDULE    1u /* rewrite task->dom_query to a direct query (dynamic) */
#define CHI_MONITOR_REPLICA_AGG 2u /* fold the replicas' outputs into the original task */

/** The vtable a module exports. Hooks may be NULL (run only if every method has a handler). */
typedef struct chi_module_vtable {
    uint32_t size;       /* sizeof(chi_module_vtable_t) the module was built with */
    uint16_t abi_major;  /* CHI_ABI_MAJOR the module was built with */
    uint16_t abi_minor;
    const char *name;
    uint32_t version;
    uint32_t nmethods;
    const chi_method_desc_t *methods;
    /** Builds one container's state from the pool's create parameters; must add its lanes. */
    int (*create)(chi_container_t *c, const void *params, uint32_t params_size, void **state);
    /** Frees one container's state. */
    void (*destroy)(chi_container_t *c, void *state);
    /** Runs a method; the return value becomes task->rc. May be NULL when every method has a
     *  plain-function handler. */
    int (*run)(void *state, chi_task_t *task, chi_rctx_t *rctx);
    /** Scheduling and aggregation hooks (CHI_MONITOR_*). Return 0 or -errno. */
    int (*monitor)(void *state, uint32_t mode, chi_task_t *task, chi_rctx_t *rctx);
    /** Picks the lane (an index from chi_lane_by_hash / chi_lane_least_loaded). NULL: the
     *  first lane group, by task->lane_hash. */
    int (*map_task_to_lane)(void *state, chi_container_t *c, const chi_task_t *task);
    /** Optional live upgrade (chi_module_upgrade): builds this version's state of container
     *  `c` from an older version's. Runs in the new code while the container is plugged (no
     *  task of its pool runs). `old_state` is read-only here: if any container's upgrade
     *  fails, every container keeps the old code and state, and this version's `destroy` frees
     *  the new states made so far; on success the old version's `destroy` frees the old
     *  states. The container's lanes carry over (chi_container_add_lanes for a group that
     *  exists with the same count is a no-op here), and pollers are registered afresh, as in
     *  create. Return 0 or -errno. */
    int (*upgrade)(chi_container_t *c, void *old_state, uint32_t old_version, void **new_state);
    /** ABI 1.3: non-NULL for a work orchestrator (chimaera/worch.h). Such a module needs no
     *  methods; it is not a pool's module. */
    const chi_worch_ops_t *worch;
    /** ABI 1.5, optional: container migration (chi_container_migrate). migrate_out writes the
     *  state of container `c` with chi_migrate_write, in as many pieces as it likes (the runtime
     *  spools them to a file, not memory, and streams them to the destination); it runs while
     *  the container is plugged and must leave `state` intact (if the move fails, the container
     *  stays and serves on with it). migrate_in builds the container on the destination from
     *  the same bytes, read with chi_migrate_read, and adds its lanes and pollers as create
     *  does; `version` is the version of the module that wrote them. The source's `destroy`
     *  frees the old state once the destination serves. Return 0 or -errno. */
    int (*migrate_out)(chi_container_t *c, void *state, chi_migrate_stream_t *out);
    int (*migrate_in)(chi_container_t *c, chi_migrate_stream_t *in, uint32_t version, void **state);
    /** ABI 1.6, optional: about how many bytes container `c`'s state holds (what a migration
     *  would move), for `chimaera status`. Called on any thread while tasks of the container
     *  run: read only what is safe to read so (atomics, fixed sizes). */
    uint64_t (*state_bytes)(chi_container_t *c, const void *state);
    /** ABI 1.7, optional: record layouts of array fields (chi_record_desc_t), at most one per
     *  field, for bindings. */
    uint32_t nrecords;
    uint32_t reserved_records; /* zero */
    const chi_record_desc_t *records;
} chi_module_vtable_t;

typedef const chi_module_vtable_t *(*chi_module_entry_fn)(void);
#define CHI_MODULE_ENTRY_SYMBOL "chi_module_entry"

/** Declares the entry symbol of a module: CHI_MODULE_EXPORT(&my_vtable). */
#if defined(__cplusplus)
#define CHI_MODULE_EXPORT(vt)                                                                \
    extern "C" __attribute__((visibility("default"))) const chi_module_vtable_t *           \
    chi_module_entry(void) { return (vt); }
#else
#define CHI_MODULE_EXPORT(vt)                                                                \
    __attribute__((visibility("default"))) const chi_module_vtable_t *chi_module_entry(void) \
    { return (vt); }
#endif

/* ---- Containers and lanes (call from hooks) ------------------------------------------- */

/** Adds a lane group: `count` FIFO lanes of priority `prio` (CHI_PRIO_*), mapped onto workers.
 *  Call from create. Returns 0 or -EINVAL (group already exists, count 0 or > 1024). */
int chi_container_add_lanes(chi_container_t *c, uint32_t group, uint32_t count, uint32_t prio);
/** This container's id within its pool (0..n-1, stable). */
uint32_t chi_container_id(const chi_container_t *c);
/** The number of containers in the container's pool. */
uint32_t chi_container_count(const chi_container_t *c);
/** The container's pool id. */
uint64_t chi_container_pool_id(const chi_container_t *c);
/** The lane of `group` chosen by hash, or a negative error. */
int chi_lane_by_hash(const chi_container_t *c, uint32_t group, uint64_t hash);
/** The lane of `group` with the fewest queued tasks, or a negative error. */
int chi_lane_least_loaded(const chi_container_t *c, uint32_t group);
/** The number of worker threads in the runtime (worker ids are 0..n-1). */
uint32_t chi_container_worker_count(const chi_container_t *c);
/** Registers a poller: every worker that owns a lane of this container calls
 *  poll(arg, worker_id) on each pass of its loop, on that worker's thread, and does not sleep
 *  while it returns > 0 (operations still in flight). Call from create, after adding lanes.
 *  Pollers are removed with the pool, before its destroy hooks run. Returns 0 or -errno. */
int chi_container_add_poller(chi_container_t *c, int (*poll)(void *arg, uint32_t worker),
                             void *arg);
/** A poller that can also sleep (ABI 1.1). When a worker's only work is this poller's
 *  operations in flight, it stops polling after its spin window and calls
 *  wait(arg, worker_id, doorbell, seq, timeout_ns) on its own thread instead. wait should
 *  block until one of the operations completes, the 32-bit word at doorbell (shared memory,
 *  a process-shared futex) no longer holds seq, or timeout_ns passes, whichever is first; it
 *  may return early (spuriously) and returns 0 or -errno. With io_uring that is one
 *  IORING_OP_FUTEX_WAIT on doorbell beside the I/O. Returns 0 or -errno. */
int chi_container_add_waiting_poller(chi_container_t *c,
                                     int (*poll)(void *arg, uint32_t worker),
                                     int (*wait)(void *arg, uint32_t worker, uint32_t *doorbell,
                                                 uint32_t seq, uint64_t timeout_ns),
                                     void *arg);

/* ---- Run context (call from run and monitor) ------------------------------------------ */

/** The container the task runs in. */
chi_container_t *chi_rctx_container(chi_rctx_t *rctx);
/** A client handle for spawning subtasks from inside the runtime; do not finalize it. */
chi_client_t *chi_rctx_client(chi_rctx_t *rctx);
/** The id of the worker running the task. */
uint32_t chi_rctx_worker(chi_rctx_t *rctx);
/** The state the container's create hook made (for plain-function handlers). */
void *chi_rctx_state(chi_rctx_t *rctx);
/** Suspends the running task (its fiber; the worker goes on with other work) until
 *  chi_rctx_resume(rctx). Returns at once if a resume came first. Only from run.
 *  Returns 0, or -EINVAL when not called from the task's own fiber. */
int chi_rctx_suspend(chi_rctx_t *rctx);
/** Makes a task suspended by chi_rctx_suspend runnable again (or lets its next suspend return
 *  at once). Callable from any thread, typically a poller. Returns 0 or -EINVAL. */
int chi_rctx_resume(chi_rctx_t *rctx);
/** Number of replicas during CHI_MONITOR_REPLICA_AGG; 0 otherwise. */
uint32_t chi_rctx_replica_count(chi_rctx_t *rctx);
/** The i-th replica (a completed copy of the task) during CHI_MONITOR_REPLICA_AGG. */
chi_task_t *chi_rctx_replica(chi_rctx_t *rctx, uint32_t i);
/** Resolves a task's shared-memory pointer, checking [offset, offset + size) lies inside the
 *  segment. Returns NULL if it does not (treat as -EFAULT). */
void *chi_rctx_shm_ptr(chi_rctx_t *rctx, chi_shm_ptr_t p, uint64_t size);

/* ---- For bindings ------------------------------------------------------------------------ */

/** Loads module `name` into this process (same search path as the runtime: CHI_MODULE_PATH,
 *  LD_LIBRARY_PATH, then the built-in directory) and stores its vtable, whose method
 *  descriptors let a binding build any task. Runs no hook. The vtable stays valid for the life
 *  of the process. Returns 0, -CHI_ENOMODULE (chi_last_error lists the paths) or -CHI_EABI. */
int chi_module_describe(const char *name, const chi_module_vtable_t **out);

/* ---- Runtime services for the admin module ---------------------------------------------- */

/** Loads a module by name into the runtime. */
int chi_rt_module_register(chi_rctx_t *rctx, const char *name);
/** Creates (idempotently by name) a pool on every node; stores its id. *pool_id is read first:
 *  a nonzero id is honoured only for a request from another node's runtime. */
int chi_rt_pool_create(chi_rctx_t *rctx, const char *module, const char *name,
                       uint32_t containers_per_node, const void *params, uint32_t params_size,
                       uint64_t *pool_id);
/** Finds a pool by name. */
int chi_rt_pool_find(chi_rctx_t *rctx, const char *name, uint64_t *pool_id);
/** Destroys a pool. */
int chi_rt_pool_destroy(chi_rctx_t *rctx, uint64_t pool_id);
/** Suspends the calling task until all tasks queued before it have run. */
int chi_rt_flush(chi_rctx_t *rctx);
/** Asks the runtime to stop after the current task completes. */
int chi_rt_request_stop(chi_rctx_t *rctx);
/** Writes the runtime's statistics as JSON into buf; returns the length or -ERANGE. */
int chi_rt_stats_json(chi_rctx_t *rctx, char *buf, size_t cap);
/** Switches the work-orchestration policy (ABI 1.3). */
int chi_rt_set_worch(chi_rctx_t *rctx, const char *name);
/** A pool's info by id (nonzero) or name (ABI 1.3). */
int chi_rt_pool_info(chi_rctx_t *rctx, uint64_t pool_id, const char *name, chi_pool_info_t *info);
/** Appends `len` bytes to a migration stream (in migrate_out). Returns 0 or -errno. */
int chi_migrate_write(chi_migrate_stream_t *s, const void *buf, size_t len);
/** Reads up to `len` bytes of a migration stream (in migrate_in); returns the count (0 at the
 *  end) or -errno. */
long chi_migrate_read(chi_migrate_stream_t *s, void *buf, size_t len);
/** The bytes left to read in a migration stream (in migrate_in). */
uint64_t chi_migrate_remaining(chi_migrate_stream_t *s);

struct chi_admin_upgrade_module_task;
struct chi_admin_migrate_container_task;
/** Runs MigrateContainer for the task (ABI 1.5); fields as in chimaera/admin.h. */
int chi_rt_container_migrate(chi_rctx_t *rctx, struct chi_admin_migrate_container_task *t);
/** Runs UpgradeModule for the task (ABI 1.5); fields as in chimaera/admin.h. */
int chi_rt_module_upgrade(chi_rctx_t *rctx, struct chi_admin_upgrade_module_task *t);

#ifdef __cplusplus
}
#endif
#endif
