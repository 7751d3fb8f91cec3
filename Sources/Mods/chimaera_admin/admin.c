/* The admin module (chimaera_admin): the runtime's control methods. Each method checks the
 * task it was handed, then calls one runtime service from module.h. Task layouts are in
 * chimaera/admin.h. Any client can write these tasks, so every field is treated as hostile. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "chimaera/admin.h"
#include "chimaera/module.h"

#define FIELD(type, member, ftype, fdir)                                                   \
    {                                                                                      \
        #member, (uint32_t)offsetof(type, member), (uint32_t)sizeof(((type *)0)->member),  \
            ftype, fdir, -1, 0                                                             \
    }
#define COUNT_OF(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))

static const chi_field_desc_t register_module_fields[] = {
    FIELD(chi_admin_register_module_task_t, name, CHI_FT_STR, CHI_DIR_IN),
};

/* Field order matters: params' bulk_size_field is an index into this array. */
enum { CP_F_MODULE, CP_F_NAME, CP_F_CONTAINERS, CP_F_PARAMS_SIZE, CP_F_PARAMS, CP_F_POOL_ID };

static const chi_field_desc_t create_pool_fields[] = {
    [CP_F_MODULE] = FIELD(chi_admin_create_pool_task_t, module, CHI_FT_STR, CHI_DIR_IN),
    [CP_F_NAME] = FIELD(chi_admin_create_pool_task_t, name, CHI_FT_STR, CHI_DIR_IN),
    [CP_F_CONTAINERS] =
        FIELD(chi_admin_create_pool_task_t, containers_per_node, CHI_FT_U32, CHI_DIR_IN),
    [CP_F_PARAMS_SIZE] =
        FIELD(chi_admin_create_pool_task_t, params_size, CHI_FT_U32, CHI_DIR_IN),
    [CP_F_PARAMS] = {"params", (uint32_t)offsetof(chi_admin_create_pool_task_t, params),
                     (uint32_t)sizeof(chi_shm_ptr_t), CHI_FT_BULK, CHI_DIR_IN,
                     CP_F_PARAMS_SIZE, CHI_DT_WRITE},
    [CP_F_POOL_ID] = FIELD(chi_admin_create_pool_task_t, pool_id, CHI_FT_U64, CHI_DIR_INOUT),
};

static const chi_field_desc_t get_pool_id_fields[] = {
    FIELD(chi_admin_get_pool_id_task_t, name, CHI_FT_STR, CHI_DIR_IN),
    FIELD(chi_admin_get_pool_id_task_t, pool_id, CHI_FT_U64, CHI_DIR_OUT),
};

static const chi_field_desc_t destroy_pool_fields[] = {
    FIELD(chi_admin_destroy_pool_task_t, pool_id, CHI_FT_U64, CHI_DIR_IN),
};

enum { PS_F_BUF, PS_F_CAP, PS_F_LEN };

static const chi_field_desc_t poll_stats_fields[] = {
    [PS_F_BUF] = {"buf", (uint32_t)offsetof(chi_admin_poll_stats_task_t, buf),
                  (uint32_t)sizeof(chi_shm_ptr_t), CHI_FT_BULK, CHI_DIR_IN, PS_F_CAP,
                  CHI_DT_EXPOSE},
    [PS_F_CAP] = FIELD(chi_admin_poll_stats_task_t, cap, CHI_FT_U64, CHI_DIR_IN),
    [PS_F_LEN] = FIELD(chi_admin_poll_stats_task_t, len, CHI_FT_U64, CHI_DIR_OUT),
};

static const chi_field_desc_t set_worch_fields[] = {
    FIELD(chi_admin_set_worch_task_t, name, CHI_FT_STR, CHI_DIR_IN),
};

static const chi_field_desc_t pool_info_fields[] = {
    FIELD(chi_admin_get_pool_info_task_t, pool_id, CHI_FT_U64, CHI_DIR_INOUT),
    FIELD(chi_admin_get_pool_info_task_t, name, CHI_FT_STR, CHI_DIR_INOUT),
    FIELD(chi_admin_get_pool_info_task_t, module, CHI_FT_STR, CHI_DIR_OUT),
    FIELD(chi_admin_get_pool_info_task_t, containers, CHI_FT_U32, CHI_DIR_OUT),
    FIELD(chi_admin_get_pool_info_task_t, containers_per_node, CHI_FT_U32, CHI_DIR_OUT),
    FIELD(chi_admin_get_pool_info_task_t, nodes, CHI_FT_U32, CHI_DIR_OUT),
};

static const chi_field_desc_t upgrade_module_fields[] = {
    FIELD(chi_admin_upgrade_module_task_t, name, CHI_FT_STR, CHI_DIR_IN),
    FIELD(chi_admin_upgrade_module_task_t, path, CHI_FT_STR, CHI_DIR_IN),
    FIELD(chi_admin_upgrade_module_task_t, flags, CHI_FT_U32, CHI_DIR_IN),
    FIELD(chi_admin_upgrade_module_task_t, phase, CHI_FT_U32, CHI_DIR_IN),
    FIELD(chi_admin_upgrade_module_task_t, upgrade_id, CHI_FT_U64, CHI_DIR_INOUT),
    FIELD(chi_admin_upgrade_module_task_t, old_version, CHI_FT_U32, CHI_DIR_OUT),
    FIELD(chi_admin_upgrade_module_task_t, new_version, CHI_FT_U32, CHI_DIR_OUT),
    FIELD(chi_admin_upgrade_module_task_t, containers, CHI_FT_U32, CHI_DIR_OUT),
    FIELD(chi_admin_upgrade_module_task_t, pause_ns_max, CHI_FT_U64, CHI_DIR_OUT),
    FIELD(chi_admin_upgrade_module_task_t, report, CHI_FT_STR, CHI_DIR_OUT),
};

enum { MG_F_POOL, MG_F_CONTAINER, MG_F_TO, MG_F_PHASE, MG_F_VERSION, MG_F_ID, MG_F_OFFSET,
       MG_F_TOTAL, MG_F_DATA, MG_F_DATA_SIZE, MG_F_PAUSE, MG_F_BYTES };

static const chi_field_desc_t migrate_fields[] = {
    [MG_F_POOL] = FIELD(chi_admin_migrate_container_task_t, pool_id, CHI_FT_U64, CHI_DIR_IN),
    [MG_F_CONTAINER] = FIELD(chi_admin_migrate_container_task_t, container, CHI_FT_U32, CHI_DIR_IN),
    [MG_F_TO] = FIELD(chi_admin_migrate_container_task_t, to_node, CHI_FT_U32, CHI_DIR_IN),
    [MG_F_PHASE] = FIELD(chi_admin_migrate_container_task_t, phase, CHI_FT_U32, CHI_DIR_IN),
    [MG_F_VERSION] = FIELD(chi_admin_migrate_container_task_t, version, CHI_FT_U32, CHI_DIR_IN),
    [MG_F_ID] = FIELD(chi_admin_migrate_container_task_t, migration_id, CHI_FT_U64, CHI_DIR_INOUT),
    [MG_F_OFFSET] = FIELD(chi_admin_migrate_container_task_t, offset, CHI_FT_U64, CHI_DIR_IN),
    [MG_F_TOTAL] = FIELD(chi_admin_migrate_container_task_t, total, CHI_FT_U64, CHI_DIR_IN),
    [MG_F_DATA] = {"data", (uint32_t)offsetof(chi_admin_migrate_container_task_t, data),
                   (uint32_t)sizeof(chi_shm_ptr_t), CHI_FT_BULK, CHI_DIR_IN, MG_F_DATA_SIZE,
                   CHI_DT_WRITE},
    [MG_F_DATA_SIZE] = FIELD(chi_admin_migrate_container_task_t, data_size, CHI_FT_U64, CHI_DIR_IN),
    [MG_F_PAUSE] = FIELD(chi_admin_migrate_container_task_t, pause_ns, CHI_FT_U64, CHI_DIR_OUT),
    [MG_F_BYTES] = FIELD(chi_admin_migrate_container_task_t, state_bytes, CHI_FT_U64, CHI_DIR_OUT),
};

static const chi_method_desc_t admin_methods[] = {
    {CHI_ADMIN_REGISTER_MODULE, (uint32_t)sizeof(chi_admin_register_module_task_t), 0,
     COUNT_OF(register_module_fields), "RegisterModule", register_module_fields, NULL},
    {CHI_ADMIN_CREATE_POOL, (uint32_t)sizeof(chi_admin_create_pool_task_t), 0,
     COUNT_OF(create_pool_fields), "CreatePool", create_pool_fields, NULL},
    {CHI_ADMIN_GET_POOL_ID, (uint32_t)sizeof(chi_admin_get_pool_id_task_t), 0,
     COUNT_OF(get_pool_id_fields), "GetPoolId", get_pool_id_fields, NULL},
    {CHI_ADMIN_DESTROY_POOL, (uint32_t)sizeof(chi_admin_destroy_pool_task_t), 0,
     COUNT_OF(destroy_pool_fields), "DestroyPool", destroy_pool_fields, NULL},
    {CHI_ADMIN_FLUSH, (uint32_t)sizeof(chi_admin_flush_task_t), 0, 0, "Flush", NULL, NULL},
    {CHI_ADMIN_STOP_RUNTIME, (uint32_t)sizeof(chi_admin_stop_runtime_task_t), 0, 0,
     "StopRuntime", NULL, NULL},
    {CHI_ADMIN_POLL_STATS, (uint32_t)sizeof(chi_admin_poll_stats_task_t), 0,
     COUNT_OF(poll_stats_fields), "PollStats", poll_stats_fields, NULL},
    {CHI_ADMIN_SET_WORCH, (uint32_t)sizeof(chi_admin_set_worch_task_t), 0,
     COUNT_OF(set_worch_fields), "SetWorkOrchestrator", set_worch_fields, NULL},
    {CHI_ADMIN_GET_POOL_INFO, (uint32_t)sizeof(chi_admin_get_pool_info_task_t), 0,
     COUNT_OF(pool_info_fields), "GetPoolInfo", pool_info_fields, NULL},
    {CHI_ADMIN_UPGRADE_MODULE, (uint32_t)sizeof(chi_admin_upgrade_module_task_t), 0,
     COUNT_OF(upgrade_module_fields), "UpgradeModule", upgrade_module_fields, NULL},
    {CHI_ADMIN_MIGRATE_CONTAINER, (uint32_t)sizeof(chi_admin_migrate_container_task_t), 0,
     COUNT_OF(migrate_fields), "MigrateContainer", migrate_fields, NULL},
};

/* The admin pool holds no per-container state; create only sets up its lane. High-latency
 * priority keeps control traffic off the workers that serve latency-sensitive lanes. */
static int admin_create(chi_container_t *c, const void *params, uint32_t params_size,
                        void **state) {
    (void)params;
    (void)params_size;
    *state = NULL;
    return chi_container_add_lanes(c, 0, 1, CHI_PRIO_HIGH_LATENCY);
}

/* Copies a name out of the task before checking it: the client can still write the task
 * while it runs, so a NUL found in shared memory might be gone by the time it is read. */
static int copy_name(char dst[CHI_NAME_MAX], const char src[CHI_NAME_MAX]) {
    memcpy(dst, src, CHI_NAME_MAX);
    return memchr(dst, '\0', CHI_NAME_MAX) != NULL ? 0 : -EINVAL;
}

static int run_register_module(chi_admin_register_module_task_t *t, chi_rctx_t *rctx) {
    char name[CHI_NAME_MAX];
    if (copy_name(name, t->name) < 0) return -EINVAL;
    return chi_rt_module_register(rctx, name);
}

static int run_create_pool(chi_admin_create_pool_task_t *t, chi_rctx_t *rctx) {
    char module[CHI_NAME_MAX], name[CHI_NAME_MAX];
    if (copy_name(module, t->module) < 0 || copy_name(name, t->name) < 0) return -EINVAL;
    /* Read once, for the same reason: the size checked by chi_rctx_shm_ptr must be the size
     * handed to the runtime. */
    uint32_t params_size = t->params_size;
    chi_shm_ptr_t params_ptr = t->params;
    const void *params = NULL;
    if (params_size > 0) {
        params = chi_rctx_shm_ptr(rctx, params_ptr, params_size);
        if (params == NULL) return -EFAULT;
    }
    /* 0 means 1, as documented for chi_pool_create_opts_t. */
    uint32_t containers = t->containers_per_node;
    if (containers == 0) containers = 1;
    /* In: an id another node's runtime assigned (the runtime ignores it from clients). */
    uint64_t pool_id = t->pool_id;
    int rc = chi_rt_pool_create(rctx, module, name, containers, params, params_size, &pool_id);
    if (rc < 0) return rc;
    t->pool_id = pool_id;
    return 0;
}

static int run_get_pool_id(chi_admin_get_pool_id_task_t *t, chi_rctx_t *rctx) {
    char name[CHI_NAME_MAX];
    if (copy_name(name, t->name) < 0) return -EINVAL;
    uint64_t pool_id = 0;
    int rc = chi_rt_pool_find(rctx, name, &pool_id);
    if (rc < 0) return rc;
    t->pool_id = pool_id;
    return 0;
}

static int run_destroy_pool(chi_admin_destroy_pool_task_t *t, chi_rctx_t *rctx) {
    /* Destroying the admin pool would strand every later control call; stopping the
     * runtime is the way to take it down. */
    uint64_t pool_id = t->pool_id;
    if (pool_id == CHI_ADMIN_POOL_ID) return -EPERM;
    return chi_rt_pool_destroy(rctx, pool_id);
}

static int run_poll_stats(chi_admin_poll_stats_task_t *t, chi_rctx_t *rctx) {
    uint64_t cap = t->cap;
    /* No room for even the NUL: the same answer chi_runtime_stats gives a short buffer. */
    if (cap == 0) return -ERANGE;
#if SIZE_MAX < UINT64_MAX
    if (cap > SIZE_MAX) return -EFAULT;
#endif
    chi_shm_ptr_t buf_ptr = t->buf;
    char *buf = chi_rctx_shm_ptr(rctx, buf_ptr, cap);
    if (buf == NULL) return -EFAULT;
    int len = chi_rt_stats_json(rctx, buf, (size_t)cap);
    if (len < 0) return len;
    t->len = (uint64_t)len;
    return 0;
}

static int run_set_worch(chi_admin_set_worch_task_t *t, chi_rctx_t *rctx) {
    char name[CHI_NAME_MAX];
    memcpy(name, t->name, sizeof name); /* read once: the client may write it meanwhile */
    if (memchr(name, 0, sizeof name) == NULL) return -EINVAL;
    return chi_rt_set_worch(rctx, name);
}

static int run_pool_info(chi_admin_get_pool_info_task_t *t, chi_rctx_t *rctx) {
    char name[CHI_NAME_MAX];
    memcpy(name, t->name, sizeof name);
    uint64_t id = t->pool_id;
    if (id == 0 && memchr(name, 0, sizeof name) == NULL) return -EINVAL;
    chi_pool_info_t info;
    memset(&info, 0, sizeof info);
    info.size = sizeof info;
    int rc = chi_rt_pool_info(rctx, id, id ? NULL : name, &info);
    if (rc < 0) return rc;
    t->pool_id = info.id;
    memcpy(t->name, info.name, sizeof t->name);
    memcpy(t->module, info.module, sizeof t->module);
    t->containers = info.containers;
    t->containers_per_node = info.containers_per_node;
    t->nodes = info.nodes;
    return 0;
}

/* The runtime reads the task's inputs once, into its own memory, and writes only the
 * outputs back. */
static int run_upgrade_module(chi_admin_upgrade_module_task_t *t, chi_rctx_t *rctx) {
    return chi_rt_module_upgrade(rctx, t);
}

static int admin_run(void *state, chi_task_t *task, chi_rctx_t *rctx) {
    (void)state;
    /* The runtime checks sizes against the descriptors; the checks are repeated here because
     * this module is the last line before a write into client-controlled memory. */
#define AS(type) (task->size < sizeof(type) ? NULL : (type *)task)
    switch (task->method) {
    case CHI_ADMIN_REGISTER_MODULE: {
        chi_admin_register_module_task_t *t = AS(chi_admin_register_module_task_t);
        return t ? run_register_module(t, rctx) : -CHI_EBADTASK;
    }
    case CHI_ADMIN_CREATE_POOL: {
        chi_admin_create_pool_task_t *t = AS(chi_admin_create_pool_task_t);
        return t ? run_create_pool(t, rctx) : -CHI_EBADTASK;
    }
    case CHI_ADMIN_GET_POOL_ID: {
        chi_admin_get_pool_id_task_t *t = AS(chi_admin_get_pool_id_task_t);
        return t ? run_get_pool_id(t, rctx) : -CHI_EBADTASK;
    }
    case CHI_ADMIN_DESTROY_POOL: {
        chi_admin_destroy_pool_task_t *t = AS(chi_admin_destroy_pool_task_t);
        return t ? run_destroy_pool(t, rctx) : -CHI_EBADTASK;
    }
    case CHI_ADMIN_FLUSH:
        return chi_rt_flush(rctx);
    case CHI_ADMIN_STOP_RUNTIME:
        return chi_rt_request_stop(rctx);
    case CHI_ADMIN_POLL_STATS: {
        chi_admin_poll_stats_task_t *t = AS(chi_admin_poll_stats_task_t);
        return t ? run_poll_stats(t, rctx) : -CHI_EBADTASK;
    }
    case CHI_ADMIN_SET_WORCH: {
        chi_admin_set_worch_task_t *t = AS(chi_admin_set_worch_task_t);
        return t ? run_set_worch(t, rctx) : -CHI_EBADTASK;
    }
    case CHI_ADMIN_GET_POOL_INFO: {
        chi_admin_get_pool_info_task_t *t = AS(chi_admin_get_pool_info_task_t);
        return t ? run_pool_info(t, rctx) : -CHI_EBADTASK;
    }
    case CHI_ADMIN_UPGRADE_MODULE: {
        chi_admin_upgrade_module_task_t *t = AS(chi_admin_upgrade_module_task_t);
        return t ? run_upgrade_module(t, rctx) : -CHI_EBADTASK;
    }
    case CHI_ADMIN_MIGRATE_CONTAINER: {
        chi_admin_migrate_container_task_t *t = AS(chi_admin_migrate_container_task_t);
        return t ? chi_rt_container_migrate(rctx, t) : -CHI_EBADTASK;
    }
    default:
        return -CHI_ENOMETHOD;
    }
#undef AS
}

static const chi_module_vtable_t admin_vtable = {
    .size = sizeof(chi_module_vtable_t),
    .abi_major = CHI_ABI_MAJOR,
    .abi_minor = CHI_ABI_MINOR,
    .name = CHI_ADMIN_MODULE_NAME,
    .version = 1,
    .nmethods = COUNT_OF(admin_methods),
    .methods = admin_methods,
    .create = admin_create,
    .destroy = NULL,
    .run = admin_run,
    .monitor = NULL,
    .map_task_to_lane = NULL,
    .upgrade = NULL,
};

CHI_MODULE_EXPORT(&admin_vtable)
