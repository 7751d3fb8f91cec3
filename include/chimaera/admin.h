/* The admin module (chimaera_admin): task layouts of the runtime's control methods. The
 * client calls in client.h (chi_module_register, chi_pool_create, ...) build these tasks. */
#ifndef CHIMAERA_ADMIN_H
#define CHIMAERA_ADMIN_H

#include "chimaera/task.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CHI_ADMIN_MODULE_NAME "chimaera_admin"
#define CHI_NAME_MAX 64

#define CHI_ADMIN_REGISTER_MODULE 10u
#define CHI_ADMIN_CREATE_POOL     11u
#define CHI_ADMIN_GET_POOL_ID     12u
#define CHI_ADMIN_DESTROY_POOL    13u
#define CHI_ADMIN_FLUSH           14u
#define CHI_ADMIN_STOP_RUNTIME    15u
#define CHI_ADMIN_POLL_STATS      16u
#define CHI_ADMIN_SET_WORCH       17u /* ABI 1.3 */
#define CHI_ADMIN_GET_POOL_INFO   18u /* ABI 1.3 */
#define CHI_ADMIN_UPGRADE_MODULE  19u /* ABI 1.5 */
#define CHI_ADMIN_MIGRATE_CONTAINER 20u /* ABI 1.5 */

#define CHI_PATH_MAX 256
#define CHI_UPGRADE_REPORT_MAX 2048

typedef struct chi_admin_register_module_task {
    chi_task_t hdr;
    char name[CHI_NAME_MAX];          /* IN */
} chi_admin_register_module_task_t;

typedef struct chi_admin_create_pool_task {
    chi_task_t hdr;
    char module[CHI_NAME_MAX];        /* IN */
    char name[CHI_NAME_MAX];          /* IN */
    uint32_t containers_per_node;     /* IN */
    uint32_t params_size;             /* IN: bytes at params */
    chi_shm_ptr_t params;             /* IN: bulk, DT_WRITE */
    uint64_t pool_id;                 /* INOUT: 0 from clients; out: the pool's id */
} chi_admin_create_pool_task_t;

typedef struct chi_admin_get_pool_id_task {
    chi_task_t hdr;
    char name[CHI_NAME_MAX];          /* IN */
    uint64_t pool_id;                 /* OUT */
} chi_admin_get_pool_id_task_t;

typedef struct chi_admin_destroy_pool_task {
    chi_task_t hdr;
    uint64_t pool_id;                 /* IN */
} chi_admin_destroy_pool_task_t;

typedef struct chi_admin_flush_task {
    chi_task_t hdr;
} chi_admin_flush_task_t;

typedef struct chi_admin_stop_runtime_task {
    chi_task_t hdr;
} chi_admin_stop_runtime_task_t;

typedef struct chi_admin_poll_stats_task {
    chi_task_t hdr;
    chi_shm_ptr_t buf;                /* IN: bulk, DT_EXPOSE: receives JSON */
    uint64_t cap;                     /* IN: bytes at buf */
    uint64_t len;                     /* OUT: bytes written, NUL excluded */
} chi_admin_poll_stats_task_t;

/** Switches the work-orchestration policy (chimaera/worch.h) to module `name`. */
typedef struct chi_admin_set_worch_task {
    chi_task_t hdr;
    char name[CHI_NAME_MAX];          /* IN */
} chi_admin_set_worch_task_t;

/** A pool's identity and shape, by id (nonzero) or else by name. */
typedef struct chi_admin_get_pool_info_task {
    chi_task_t hdr;
    uint64_t pool_id;                 /* INOUT: 0 to look up by name */
    char name[CHI_NAME_MAX];          /* INOUT */
    char module[CHI_NAME_MAX];        /* OUT */
    uint32_t containers;              /* OUT: in all */
    uint32_t containers_per_node;     /* OUT */
    uint32_t nodes;                   /* OUT */
    uint32_t reserved;
} chi_admin_get_pool_info_task_t;

/** Replaces a loaded module's code in every container of every pool of it, on every node,
 *  while tasks keep coming (chi_module_upgrade). `phase` is 0 from clients; the runtime's own
 *  two-phase protocol between nodes uses 1 (prepare), 2 (commit) and 3 (abort). */
typedef struct chi_admin_upgrade_module_task {
    chi_task_t hdr;
    char name[CHI_NAME_MAX];           /* IN: the module */
    char path[CHI_PATH_MAX];           /* IN: the new shared object; empty: search path again */
    uint32_t flags;                    /* IN: CHI_UPGRADE_* */
    uint32_t phase;                    /* IN: 0 from clients */
    uint64_t upgrade_id;               /* INOUT: between nodes */
    uint32_t old_version;              /* OUT */
    uint32_t new_version;              /* OUT */
    uint32_t containers;               /* OUT: upgraded, all nodes */
    uint32_t reserved;
    uint64_t pause_ns_max;             /* OUT: the longest plug of one container */
    char report[CHI_UPGRADE_REPORT_MAX]; /* OUT: JSON, per container pauses */
} chi_admin_upgrade_module_task_t;

/** Moves one container of a pool to another node, its id unchanged (chi_container_migrate).
 *  `phase` is 0 from clients; between nodes the runtime uses 1 (begin), 2 (a piece of the state
 *  in `data`), 3 (commit: build the container), 4 (abort) and 5 (the new placement). */
typedef struct chi_admin_migrate_container_task {
    chi_task_t hdr;
    uint64_t pool_id;                  /* IN */
    uint32_t container;                /* IN */
    uint32_t to_node;                  /* IN */
    uint32_t phase;                    /* IN: 0 from clients */
    uint32_t version;                  /* IN: between nodes, the module version / placement version */
    uint64_t migration_id;             /* INOUT: between nodes */
    uint64_t offset;                   /* IN: phase 2 */
    uint64_t total;                    /* IN: phase 1, 3 */
    chi_shm_ptr_t data;                /* IN: phase 2, bulk of data_size bytes, DT_WRITE */
    uint64_t data_size;                /* IN */
    uint64_t pause_ns;                 /* OUT: how long the container was plugged */
    uint64_t state_bytes;              /* OUT: the state's size on the wire */
} chi_admin_migrate_container_task_t;

#ifdef __cplusplus
}
#endif
#endif
