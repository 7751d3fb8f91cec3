/* The client API: attach to a runtime, allocate tasks and buffers in its shared memory,
 * submit tasks and wait for them. Every call is thread-safe unless it says otherwise. */
#ifndef CHIMAERA_CLIENT_H
#define CHIMAERA_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chimaera/task.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A connection to one runtime (attached through shared memory, or embedded in-process). */
typedef struct chi_client chi_client_t;

/* How chi_client_init reaches a runtime. */
#define CHI_MODE_AUTO     0u /* CHIMAERA_EMBEDDED=1 or the config's client.mode, else attach */
#define CHI_MODE_ATTACH   1u /* attach to a running daemon */
#define CHI_MODE_EMBEDDED 2u /* start the runtime inside this process */

/** Options for chi_client_init; zero-initialise, set size = sizeof(chi_client_opts_t). */
typedef struct chi_client_opts {
    uint32_t size;
    uint32_t mode;               /* CHI_MODE_* */
    const char *segment;         /* NULL: $CHIMAERA_SEGMENT, then the config's runtime.name */
    const char *config_path;     /* NULL: $CHIMAERA_CONF, else defaults */
    uint32_t connect_timeout_ms; /* how long to wait for a starting runtime; 0 = 500 */
    uint32_t reserved;
} chi_client_opts_t;

/** Returns CHI_ABI_PACK(major, minor) of the loaded library. */
uint32_t chi_abi_version(void);

/** Attaches to a runtime. opts may be NULL. On success stores a handle in *out and returns 0;
 *  with no runtime serving the segment returns -CHI_ENORUNTIME within the connect timeout,
 *  with chi_last_error() naming the segment. Blocks for at most the connect timeout. */
int chi_client_init(const chi_client_opts_t *opts, chi_client_t **out);

/** Detaches (and stops an embedded runtime). Tasks still in flight are abandoned. The handle
 *  is invalid afterwards; a later call with it returns -EINVAL. */
int chi_client_finalize(chi_client_t *client);

/** Copies the segment name the client is attached to into buf (NUL-terminated).
 *  Returns the name's length, or -ERANGE when cap is too small. */
int chi_client_segment(chi_client_t *client, char *buf, size_t cap);

/* ---- Tasks -------------------------------------------------------------------------- */

/** Allocates a zeroed task of task_size bytes (>= sizeof(chi_task_t)) in shared memory and
 *  fills its header. dq may be NULL (local hash 0). No system call on the fast path.
 *  The task is owned by the caller until chi_task_del (or submitted fire-and-forget). */
int chi_task_new(chi_client_t *client, uint64_t pool_id, uint32_t method, size_t task_size,
                 const chi_domain_query_t *dq, chi_task_t **out);

/** Hands the task to the runtime. Non-blocking unless the runtime holds the client back
 *  (its queue full: more than runtime.max_inflight_per_client tasks in flight), when it
 *  waits; returns -EAGAIN if that lasts client.submit_timeout_ms (default 5 s),
 *  -CHI_ENORUNTIME if the runtime is gone, -EBUSY if the task is already in flight,
 *  -EINVAL for a deleted task. Inside a module method, a subtask nested deeper than
 *  runtime.max_task_depth gives -CHI_ELIMIT. A fire-and-forget task must not be touched
 *  after: the runtime frees it. */
int chi_task_submit(chi_client_t *client, chi_task_t *task);

/** Waits until the task completes: spins briefly, then sleeps on its completion word.
 *  timeout_ns < 0 waits forever. Returns 0 when done (the method's status is task->rc),
 *  -ETIMEDOUT, or -CHI_ENORUNTIME if the runtime died. Inside a module method, waits without
 *  blocking the worker thread. */
int chi_task_wait(chi_client_t *client, chi_task_t *task, int64_t timeout_ns);

/** Submits, waits (timeout_ns as chi_task_wait) and returns the wait's error or task->rc. */
int chi_task_call(chi_client_t *client, chi_task_t *task, int64_t timeout_ns);

/** Returns true once the task has completed. Never blocks. */
bool chi_task_is_done(const chi_task_t *task);

/** Frees a task. Returns -EBUSY (and frees nothing) while it is in flight or, for a
 *  fire-and-forget task, once submitted (the runtime frees it); -EINVAL for a task that was
 *  already deleted. */
int chi_task_del(chi_client_t *client, chi_task_t *task);

/** Stops a periodic task (ABI 1.2): it completes with rc -ECANCELED after the run in
 *  progress, if any; wait for it with chi_task_wait. Never blocks. Returns 0, or -EINVAL if
 *  the task is not a periodic task of this client in flight. */
int chi_task_cancel(chi_client_t *client, chi_task_t *task);

/* ---- Buffers in shared memory ------------------------------------------------------- */

/** Allocates size bytes (64-byte aligned) in shared memory, visible to the runtime. Blocks
 *  of up to 32 KiB come from the client's own spans without a system call; larger ones cost
 *  one round trip to the runtime. Returns -ENOMEM when the heap (or the client's quota,
 *  runtime.max_client_memory) cannot hold it; a failed allocation changes nothing. A task's
 *  bulk pointer must lie inside one such buffer, with its length. */
int chi_buffer_alloc(chi_client_t *client, size_t size, void **out);
/** Frees a buffer from chi_buffer_alloc. Returns -EINVAL, freeing nothing, for a pointer
 *  that is not a live buffer of this client (a second free of the same buffer included). */
int chi_buffer_free(chi_client_t *client, void *ptr);
/** Converts a pointer into the segment to a process-independent pointer. */
int chi_ptr_to_shm(chi_client_t *client, const void *ptr, chi_shm_ptr_t *out);
/** Converts a process-independent pointer to an address in this process, checking that
 *  [offset, offset + size) lies inside the segment. */
int chi_shm_to_ptr(chi_client_t *client, chi_shm_ptr_t shm, size_t size, void **out);

/* ---- Modules, pools and the runtime (through the admin pool) ------------------------- */

/** The admin pool's fixed id. */
#define CHI_ADMIN_POOL_ID 1ull

/** Loads module `name` (lib<name>.so) in the runtime. Idempotent. Blocks until done. */
int chi_module_register(chi_client_t *client, const char *name);

/** chi_module_upgrade flags (ABI 1.5). */
#define CHI_UPGRADE_FORCE    0x1u /* accept a version that is not newer than the loaded one */
#define CHI_UPGRADE_RECREATE 0x2u /* a module without an upgrade hook: fresh create, state lost */

/** Hot upgrade (ABI 1.5): loads the new build of module `name` (the shared object at `path`,
 *  or when `path` is NULL or empty lib<name>.so found again on the search path) and swaps it
 *  into every container of every pool of that module on every node, while tasks keep coming:
 *  each container is plugged (new tasks wait; none is refused), the tasks running finish in
 *  the old code, the new version's `upgrade` hook builds the new state from the old, and the
 *  container is unplugged. All or nothing: if any container's upgrade fails, every one keeps
 *  the old version. Returns 0, -CHI_EVERSION (not newer, without CHI_UPGRADE_FORCE), -CHI_EABI,
 *  -ENOTSUP (no upgrade hook, without CHI_UPGRADE_RECREATE), -EBUSY (an upgrade of it is under
 *  way), -ETIMEDOUT (running tasks did not finish within 10 s), or the hook's error. */
int chi_module_upgrade(chi_client_t *client, const char *name, const char *path, uint32_t flags);
/** Moves container `container` of pool `pool_id` to node `to_node` (ABI 1.5): it is plugged on
 *  its node (new tasks wait), drained, its state streamed to `to_node` (the module's
 *  migrate_out / migrate_in hooks) and built there; then every node routes to the new place,
 *  and tasks that reach the old one are forwarded. The container id never changes. Returns 0,
 *  -ENOTSUP (the module cannot migrate), -CHI_ENOCONTAINER, -CHI_ENODE, or the hooks' error
 *  (the container then stays where it was, serving). */
int chi_container_migrate(chi_client_t *client, uint64_t pool_id, uint32_t container, uint32_t to_node);

/** The same, writing a JSON report (versions, containers, the pause of each) into buf. */
int chi_module_upgrade_report(chi_client_t *client, const char *name, const char *path,
                              uint32_t flags, char *buf, size_t cap);

/** Options for chi_pool_create; zero-initialise, set size = sizeof(chi_pool_create_opts_t). */
typedef struct chi_pool_create_opts {
    uint32_t size;
    uint32_t containers_per_node; /* 0 = 1 */
    const char *module;           /* module name, registered on demand */
    const char *name;             /* pool name; creation is idempotent by name */
    const void *params;           /* module-specific create parameters, copied */
    uint32_t params_size;
    uint32_t reserved;
    /* Appended in ABI 1.8; a caller with an older, smaller struct gets 1. Copies of each
     * container on distinct nodes: the primary where an unreplicated pool has it, backups on
     * the next replicas - 1 nodes (wrapping). Methods marked CHI_MF_WRITE run on the primary,
     * then on each backup, before the task completes. More than the cluster's nodes: -EINVAL. */
    uint32_t replicas;            /* 0 = 1 */
    uint32_t reserved2;
} chi_pool_create_opts_t;

/** Creates (or finds, by name) a pool and stores its id in *pool_id. Blocks until done. */
int chi_pool_create(chi_client_t *client, const chi_pool_create_opts_t *opts,
                    uint64_t *pool_id);
/** A pool's identity and shape (ABI 1.3); set size = sizeof(chi_pool_info_t). */
typedef struct chi_pool_info {
    uint32_t size;
    uint32_t containers;          /* in all */
    uint64_t id;
    uint32_t containers_per_node;
    uint32_t nodes;
    char name[64];                /* NUL-terminated (CHI_NAME_MAX) */
    char module[64];
} chi_pool_info_t;

/** Fills *info with the pool `pool_id`, or when it is 0 the pool named `name`: one lookup in
 *  the runtime, whatever the number of pools. Returns 0, -CHI_ENOPOOL, or -EINVAL. Blocks
 *  until the runtime answers. */
int chi_pool_info(chi_client_t *client, uint64_t pool_id, const char *name, chi_pool_info_t *info);

/** Looks a pool up by name. Returns -CHI_ENOPOOL if there is none. */
int chi_pool_get_id(chi_client_t *client, const char *name, uint64_t *pool_id);
/** Destroys a pool: its periodic tasks complete with -CHI_ESTOPPED, its containers go. */
int chi_pool_destroy(chi_client_t *client, uint64_t pool_id);
/** Waits until every task queued in the runtime before this call has run. */
int chi_runtime_flush(chi_client_t *client);
/** Switches the runtime's work-orchestration policy to module `name` (ABI 1.3; see
 *  chimaera/worch.h): lanes then move as it decides, with no task lost. Returns 0,
 *  -CHI_ENOMODULE (chi_last_error lists the directories searched), or -EINVAL for a module
 *  that is not a work orchestrator; the old policy stays then. Blocks until done. */
int chi_runtime_set_worch(chi_client_t *client, const char *name);
/** Asks the runtime to stop; returns once the request is accepted. */
int chi_runtime_stop(chi_client_t *client);
/** Asks node `node` (1-based) of the runtime's cluster to stop, through the attached
 *  runtime; returns once the request is accepted. */
int chi_runtime_stop_node(chi_client_t *client, uint32_t node);
/** Writes the runtime's statistics (workers, lanes, pools, task counts) as one JSON object
 *  into buf, NUL-terminated. Returns its length, or -ERANGE if cap is too small. */
int chi_runtime_stats(chi_client_t *client, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
