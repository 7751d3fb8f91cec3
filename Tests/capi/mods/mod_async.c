/* A test module for asynchronous methods: Wait suspends its task until the container's
 * poller resumes it a few polls later (the way an I/O module reaps completions); ThreadWake
 * suspends until another thread resumes it. Both report the worker they ran on. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chimaera/module.h"

#define M_WAIT 10u
#define M_THREAD_WAKE 11u
#define MAX_PENDING 1024

typedef struct {
    chi_task_t hdr;
    uint32_t worker;  /* OUT */
    uint32_t workers; /* OUT */
} async_task_t;

typedef struct {
    chi_rctx_t *pending[MAX_PENDING];
    uint32_t age[MAX_PENDING];
    uint32_t npending;
} state_t;

static const chi_field_desc_t fields[] = {
    {"worker", offsetof(async_task_t, worker), 4, CHI_FT_U32, CHI_DIR_OUT, -1, 0},
    {"workers", offsetof(async_task_t, workers), 4, CHI_FT_U32, CHI_DIR_OUT, -1, 0},
};
static const chi_method_desc_t methods[] = {
    {M_WAIT, sizeof(async_task_t), 0, 2, "Wait", fields, NULL},
    {M_THREAD_WAKE, sizeof(async_task_t), 0, 2, "ThreadWake", fields, NULL},
};

/* Resumes each pending task on its third poll; reports how many are still pending. */
static int poll_pending(void *arg, uint32_t worker) {
    state_t *s = arg;
    (void)worker;
    uint32_t i = 0;
    while (i < s->npending) {
        if (++s->age[i] >= 3) {
            chi_rctx_resume(s->pending[i]);
            s->pending[i] = s->pending[s->npending - 1];
            s->age[i] = s->age[s->npending - 1];
            s->npending--;
        } else {
            i++;
        }
    }
    return (int)s->npending;
}

static int create(chi_container_t *c, const void *params, uint32_t size, void **out) {
    (void)params, (void)size;
    state_t *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    int rc = chi_container_add_lanes(c, 0, 1, CHI_PRIO_LOW_LATENCY);
    if (rc == 0) rc = chi_container_add_poller(c, poll_pending, s);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static void destroy(chi_container_t *c, void *state) {
    (void)c;
    free(state);
}

static void *wake_later(void *arg) {
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    chi_rctx_resume(arg);
    return NULL;
}

static int run(void *state, chi_task_t *task, chi_rctx_t *rctx) {
    state_t *s = state;
    async_task_t *t = (async_task_t *)task;
    if (task->method == M_WAIT) {
        if (s->npending == MAX_PENDING) return -EAGAIN;
        s->pending[s->npending] = rctx;
        s->age[s->npending] = 0;
        s->npending++;
    } else if (task->method == M_THREAD_WAKE) {
        pthread_t th;
        if (pthread_create(&th, NULL, wake_later, rctx) != 0) return -EAGAIN;
        pthread_detach(th);
    } else {
        return -CHI_ENOMETHOD;
    }
    int rc = chi_rctx_suspend(rctx);
    if (rc < 0) return rc;
    t->worker = chi_rctx_worker(rctx);
    t->workers = chi_container_worker_count(chi_rctx_container(rctx));
    return 0;
}

static const chi_module_vtable_t vt = {
    .size = sizeof(chi_module_vtable_t),
    .abi_major = CHI_ABI_MAJOR,
    .abi_minor = CHI_ABI_MINOR,
    .name = "chi_test_async",
    .version = 1,
    .nmethods = 2,
    .methods = methods,
    .create = create,
    .destroy = destroy,
    .run = run,
};

CHI_MODULE_EXPORT(&vt)
