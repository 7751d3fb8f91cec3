/* The bdev module's view across containers: the pool groups its kSchedule hook reads, dynamic
 * scheduling (Allocate by free space, the rest by the container their block names) and the
 * aggregation of broadcast replicas. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bdev_internal.h"

/* ---- pool groups: every container of a pool, for the kSchedule hook ----------------------- */

/* Containers are created one by one while their pool is unpublished, and destroyed after it
 * is drained, so the hook never runs while a group changes; the lock only guards the list
 * against other pools being created at the same time. */
static pthread_mutex_t groups_lock = PTHREAD_MUTEX_INITIALIZER;
static bdev_group_t *groups;

int bdev_group_join(bdev_t *b) {
    uint64_t pool = chi_container_pool_id(b->c);
    int rc = 0;
    pthread_mutex_lock(&groups_lock);
    bdev_group_t *g = groups;
    while (g != NULL && g->pool_id != pool) g = g->next;
    if (g == NULL && (g = calloc(1, sizeof *g)) != NULL) {
        g->pool_id = pool;
        g->next = groups;
        groups = g;
    }
    if (g == NULL) {
        rc = -ENOMEM;
    } else if (b->id >= g->cap) {
        uint32_t cap = g->cap ? g->cap : 4;
        while (cap <= b->id) cap *= 2;
        bdev_t **m = realloc(g->members, cap * sizeof *m);
        if (m == NULL) {
            rc = -ENOMEM;
        } else {
            memset(m + g->cap, 0, (cap - g->cap) * sizeof *m);
            g->members = m;
            g->cap = cap;
        }
    }
    if (rc == 0) {
        g->members[b->id] = b;
        if (b->id >= g->n) g->n = b->id + 1;
        b->group = g;
    }
    pthread_mutex_unlock(&groups_lock);
    return rc;
}

void bdev_group_leave(bdev_t *b) {
    bdev_group_t *g = b->group;
    if (g == NULL) return;
    pthread_mutex_lock(&groups_lock);
    g->members[b->id] = NULL;
    bool empty = true;
    for (uint32_t i = 0; i < g->n; i++) empty = empty && g->members[i] == NULL;
    if (empty) {
        bdev_group_t **p = &groups;
        while (*p != g) p = &(*p)->next;
        *p = g->next;
        free(g->members);
        free(g);
    }
    pthread_mutex_unlock(&groups_lock);
    b->group = NULL;
}

/* ---- monitor: dynamic scheduling and broadcast aggregation -------------------------------- */

/* Allocate goes where the most space is free, less what was already routed there and not
 * yet allocated (so a burst spreads out); ties rotate. */
static int schedule_allocate(bdev_t *b0, chi_task_t *task, uint32_t count) {
    bdev_group_t *g = b0->group;
    uint64_t size = ((chi_bdev_allocate_task_t *)task)->size;
    uint32_t n = count < g->n ? count : g->n;
    if (n == 0) return -CHI_ENOCONTAINER;
    uint32_t start = atomic_fetch_add_explicit(&g->cursor, 1, memory_order_relaxed);
    bdev_t *best = NULL;
    uint64_t best_free = 0;
    for (uint32_t i = 0; i < n; i++) {
        bdev_t *m = g->members[(start + i) % n];
        if (m == NULL) continue;
        uint64_t free_now = atomic_load_explicit(&m->free_pub, memory_order_relaxed);
        uint64_t pending = atomic_load_explicit(&m->sched_pending, memory_order_relaxed);
        uint64_t avail = free_now > pending ? free_now - pending : 0;
        if (best == NULL || avail > best_free) {
            best = m;
            best_free = avail;
        }
    }
    if (best == NULL) return -CHI_ENOCONTAINER;
    if (size <= best->size)
        atomic_fetch_add_explicit(&best->sched_pending, size, memory_order_relaxed);
    task->dom_query = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, best->id);
    return 0;
}

static int bdev_schedule(bdev_t *b0, chi_task_t *task, chi_rctx_t *rctx) {
    uint32_t count = chi_container_count(chi_rctx_container(rctx));
    if (count == 0) return -CHI_ENOCONTAINER;
    uint32_t container;
    switch (task->method) {
    case CHI_BDEV_ALLOCATE:
        return schedule_allocate(b0, task, count);
    case CHI_BDEV_FREE:
        container = ((chi_bdev_free_task_t *)task)->block.container;
        break;
    case CHI_BDEV_WRITE:
    case CHI_BDEV_READ:
        container = ((chi_bdev_io_task_t *)task)->block.container;
        break;
    default:
        /* PollStats and Flush have no natural home: the runtime picks one. */
        return 0;
    }
    /* A block of a container that does not exist still gets a container, whose run
     * rejects it (-EXDEV) before touching the device. */
    task->dom_query =
        chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, container < count ? container : 0);
    return 0;
}

/* PollStats over several containers adds their figures; other methods keep the first
 * replica's outputs. The status is the first failure. */
static int bdev_aggregate(chi_task_t *task, chi_rctx_t *rctx) {
    uint32_t n = chi_rctx_replica_count(rctx);
    int32_t rc = 0;
    size_t hdr = sizeof(chi_task_t);
    for (uint32_t i = 0; i < n; i++) {
        chi_task_t *r = chi_rctx_replica(rctx, i);
        if (r == NULL) continue;
        if (rc == 0 && r->rc < 0) rc = r->rc;
        if (task->method == CHI_BDEV_POLL_STATS) {
            chi_bdev_poll_stats_task_t *d = (chi_bdev_poll_stats_task_t *)task;
            const chi_bdev_poll_stats_task_t *s = (const chi_bdev_poll_stats_task_t *)r;
            if (i == 0) memcpy((char *)d + hdr, (const char *)s + hdr, sizeof *d - hdr);
            if (i == 0) continue;
            d->capacity += s->capacity;
            d->free_bytes += s->free_bytes;
            d->free_blocks += s->free_blocks;
            if (s->largest_free > d->largest_free) d->largest_free = s->largest_free;
            d->reads += s->reads;
            d->writes += s->writes;
            d->read_bytes += s->read_bytes;
            d->write_bytes += s->write_bytes;
            d->read_iops += s->read_iops;
            d->write_iops += s->write_iops;
            d->read_mbps += s->read_mbps;
            d->write_mbps += s->write_mbps;
        } else if (i == 0 && task->size > hdr && r->size >= task->size) {
            memcpy((char *)task + hdr, (const char *)r + hdr, task->size - hdr);
        }
    }
    task->rc = rc;
    return 0;
}

int bdev_monitor(void *state, uint32_t mode, chi_task_t *task, chi_rctx_t *rctx) {
    switch (mode) {
    case CHI_MONITOR_SCHEDULE:
        return bdev_schedule(state, task, rctx);
    case CHI_MONITOR_REPLICA_AGG:
        return bdev_aggregate(task, rctx);
    default:
        return -ENOTSUP;
    }
}
