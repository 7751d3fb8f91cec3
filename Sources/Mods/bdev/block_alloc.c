/* The bdev block allocator: a buddy allocator whose size classes are CHI_BDEV_UNIT << order.
 * A request is served as the binary decomposition of its unit count (largest block first);
 * a class with no free block is split from a larger one, or, failing that, served by two
 * blocks of the class below. Freeing merges a block with its buddy while the buddy is free,
 * so a device with nothing allocated is always back to its initial blocks. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bdev_internal.h"

#define UNIT_SHIFT 12
_Static_assert((1ull << UNIT_SHIFT) == CHI_BDEV_UNIT, "UNIT_SHIFT matches CHI_BDEV_UNIT");

static inline uint64_t order_bytes(uint32_t k) { return CHI_BDEV_UNIT << k; }

static inline uint64_t hash_off(uint64_t off) {
    return (off >> UNIT_SHIFT) * 0x9E3779B97F4A7C15ull;
}

/* ---- offset -> slot table (linear probing, backward-shift deletion) ------------------------ */

static bdev_slot_t *slot_find(const bdev_alloc_t *a, uint64_t off) {
    uint64_t mask = a->cap - 1;
    for (uint64_t i = hash_off(off) & mask;; i = (i + 1) & mask) {
        bdev_slot_t *s = &a->slots[i];
        if (s->key == 0) return NULL;
        if (s->key == off + 1) return s;
    }
}

static int table_grow(bdev_alloc_t *a, uint64_t want) {
    if ((a->count + want) * 2 <= a->cap) return 0;
    uint64_t cap = a->cap ? a->cap : 64;
    while ((a->count + want) * 2 > cap) cap *= 2;
    bdev_slot_t *slots = calloc(cap, sizeof *slots);
    if (slots == NULL) return -ENOMEM;
    for (uint64_t i = 0; i < a->cap; i++) {
        bdev_slot_t *s = &a->slots[i];
        if (s->key == 0) continue;
        uint64_t j = hash_off(s->key - 1) & (cap - 1);
        while (slots[j].key != 0) j = (j + 1) & (cap - 1);
        slots[j] = *s;
    }
    free(a->slots);
    a->slots = slots;
    a->cap = cap;
    return 0;
}

/* Capacity was reserved by table_grow: inserting never fails. */
static bdev_slot_t *slot_insert(bdev_alloc_t *a, uint64_t off) {
    uint64_t mask = a->cap - 1;
    uint64_t i = hash_off(off) & mask;
    while (a->slots[i].key != 0) i = (i + 1) & mask;
    bdev_slot_t *s = &a->slots[i];
    memset(s, 0, sizeof *s);
    s->key = off + 1;
    a->count++;
    return s;
}

static void slot_erase(bdev_alloc_t *a, bdev_slot_t *s) {
    uint64_t mask = a->cap - 1;
    uint64_t hole = (uint64_t)(s - a->slots);
    for (uint64_t i = (hole + 1) & mask; a->slots[i].key != 0; i = (i + 1) & mask) {
        uint64_t home = hash_off(a->slots[i].key - 1) & mask;
        /* Move the entry back unless its home lies cyclically in (hole, i]. */
        bool stays = hole <= i ? (hole < home && home <= i) : (hole < home || home <= i);
        if (!stays) {
            a->slots[hole] = a->slots[i];
            hole = i;
        }
    }
    a->slots[hole].key = 0;
    a->count--;
}

/* ---- free vectors -------------------------------------------------------------------------- */

static int vectors_reserve(bdev_alloc_t *a, uint64_t want) {
    for (uint32_t k = 0; k < a->orders; k++) {
        if (a->freen[k] + want <= a->freecap[k]) continue;
        uint64_t cap = a->freecap[k] ? a->freecap[k] : 16;
        while (a->freen[k] + want > cap) cap *= 2;
        uint64_t *v = realloc(a->freev[k], cap * sizeof *v);
        if (v == NULL) return -ENOMEM;
        a->freev[k] = v;
        a->freecap[k] = cap;
    }
    return 0;
}

/* Marks [off, off + order_bytes(k)) free. Capacity was reserved. */
static void push_free(bdev_alloc_t *a, uint64_t off, uint32_t k) {
    bdev_slot_t *s = slot_insert(a, off);
    s->order = (uint8_t)k;
    s->used = 0;
    s->idx = (uint32_t)a->freen[k];
    a->freev[k][a->freen[k]++] = off;
}

/* Removes a free block's slot and its vector entry. */
static void drop_free(bdev_alloc_t *a, bdev_slot_t *s) {
    uint32_t k = s->order;
    uint64_t last = a->freev[k][--a->freen[k]];
    if (s->idx < a->freen[k]) {
        a->freev[k][s->idx] = last;
        slot_find(a, last)->idx = s->idx;
    }
    slot_erase(a, s);
}

/* Takes a free block of order k, splitting a larger one if needed. Returns false if no block
 * of order k or above is free. */
static bool take(bdev_alloc_t *a, uint32_t k, uint64_t *off) {
    uint32_t j = k;
    while (j < a->orders && a->freen[j] == 0) j++;
    if (j >= a->orders) return false;
    uint64_t o = a->freev[j][a->freen[j] - 1];
    drop_free(a, slot_find(a, o));
    while (j > k) {
        j--;
        push_free(a, o + order_bytes(j), j);
    }
    bdev_slot_t *s = slot_insert(a, o);
    s->order = (uint8_t)k;
    s->used = 1;
    a->free_bytes -= order_bytes(k);
    *off = o;
    return true;
}

/* ---- API ------------------------------------------------------------------------------------ */

int bdev_alloc_init(bdev_alloc_t *a, uint64_t size) {
    memset(a, 0, sizeof *a);
    size &= ~(CHI_BDEV_UNIT - 1);
    if (size == 0) return -EINVAL;
    a->size = size;
    a->orders = 1;
    while (a->orders < BDEV_ORDERS && order_bytes(a->orders) <= size) a->orders++;
    /* At most one initial block per order (the binary decomposition of size). */
    int rc = table_grow(a, BDEV_ORDERS);
    if (rc == 0) rc = vectors_reserve(a, 1);
    if (rc < 0) {
        bdev_alloc_fini(a);
        return rc;
    }
    uint64_t off = 0;
    for (uint32_t k = a->orders; k-- > 0;) {
        if (size - off >= order_bytes(k)) {
            push_free(a, off, k);
            off += order_bytes(k);
        }
    }
    a->free_bytes = size;
    return 0;
}

void bdev_alloc_fini(bdev_alloc_t *a) {
    free(a->slots);
    for (uint32_t k = 0; k < BDEV_ORDERS; k++) free(a->freev[k]);
    memset(a, 0, sizeof *a);
}

int bdev_alloc_get(bdev_alloc_t *a, uint64_t size, chi_bdev_block_t *out, uint32_t max) {
    if (size == 0 || size > a->size || max == 0) return -EINVAL;
    uint64_t units = (size + CHI_BDEV_UNIT - 1) >> UNIT_SHIFT;
    if (units << UNIT_SHIFT > a->free_bytes) return -ENOSPC;
    /* Each block taken splits at most one block per order and adds one used slot; a
     * rollback adds at most one free entry per block taken. */
    uint64_t worst = (uint64_t)max * (a->orders + 1);
    int rc = table_grow(a, worst);
    if (rc == 0) rc = vectors_reserve(a, 2ull * max);
    if (rc < 0) return rc;

    uint64_t need[BDEV_ORDERS] = {0};
    uint64_t pending = 0; /* blocks still needed, over all orders */
    for (uint32_t k = 0; k < a->orders; k++) {
        need[k] = (units >> k) & 1;
        pending += need[k];
    }
    uint32_t n = 0;
    for (uint32_t k = a->orders; k-- > 0;) {
        while (need[k] > 0) {
            uint64_t off;
            if (pending > (uint64_t)(max - n)) goto fail;
            if (take(a, k, &off)) {
                out[n].offset = off;
                out[n].size = order_bytes(k);
                out[n].container = 0;
                out[n].reserved = 0;
                n++;
                need[k]--;
                pending--;
                continue;
            }
            /* Nothing of order k or above is free: two blocks of the order below instead. */
            if (k == 0) goto fail;
            need[k - 1] += 2 * need[k];
            pending += need[k];
            need[k] = 0;
        }
    }
    return (int)n;
fail:
    /* Freeing what was taken restores the exact free state: a buddy system's state is
     * determined by the set of allocated blocks. */
    for (uint32_t i = n; i-- > 0;) bdev_alloc_put(a, out[i].offset, out[i].size);
    return -ENOSPC;
}

int bdev_alloc_put(bdev_alloc_t *a, uint64_t offset, uint64_t size) {
    if (size == 0 || (size & (size - 1)) != 0 || size < CHI_BDEV_UNIT) return -EINVAL;
    if (offset >= a->size || size > a->size - offset || (offset & (size - 1)) != 0)
        return -EINVAL;
    bdev_slot_t *s = slot_find(a, offset);
    if (s == NULL || !s->used || order_bytes(s->order) != size) return -EINVAL;
    /* The one vector entry this adds is reserved before anything changes; the table needs
     * no room: the used slot goes before the merged block's slot comes. */
    if (vectors_reserve(a, 1) < 0) return -ENOMEM;
    uint32_t k = s->order;
    slot_erase(a, s);
    a->free_bytes += size;
    while (k + 1 < a->orders) {
        uint64_t buddy = offset ^ order_bytes(k);
        bdev_slot_t *b = slot_find(a, buddy);
        if (b == NULL || b->used || b->order != k) break;
        drop_free(a, b);
        offset &= ~order_bytes(k);
        k++;
    }
    push_free(a, offset, k);
    return 0;
}

int bdev_alloc_claim(bdev_alloc_t *a, uint64_t offset, uint64_t size) {
    if (size == 0 || (size & (size - 1)) != 0 || size < CHI_BDEV_UNIT) return -EPROTO;
    if (offset >= a->size || size > a->size - offset || (offset & (size - 1)) != 0)
        return -EPROTO;
    uint32_t k = 0;
    while (order_bytes(k) < size) k++;
    if (k >= a->orders) return -EPROTO;
    /* The free block that holds it starts at the offset aligned down to its order, and no
     * other block starts at the candidates in between: the first slot found is that block,
     * or the range is not wholly free. */
    bdev_slot_t *s = NULL;
    uint64_t base = 0;
    for (uint32_t j = k; j < a->orders && s == NULL; j++) {
        base = offset & ~(order_bytes(j) - 1);
        s = slot_find(a, base);
    }
    if (s == NULL || s->used || s->order < k || base + order_bytes(s->order) < offset + size)
        return -EPROTO;
    uint32_t j = s->order;
    /* Splitting j down to k adds j - k free entries and one used slot. */
    if (table_grow(a, (uint64_t)(j - k) + 1) < 0 || vectors_reserve(a, 1) < 0) return -ENOMEM;
    s = slot_find(a, base);
    uint64_t o = base;
    drop_free(a, s);
    while (j > k) {
        j--;
        /* Keep the half that holds the block, free the other. */
        if (offset >= o + order_bytes(j)) {
            push_free(a, o, j);
            o += order_bytes(j);
        } else {
            push_free(a, o + order_bytes(j), j);
        }
    }
    bdev_slot_t *u = slot_insert(a, o);
    u->order = (uint8_t)k;
    u->used = 1;
    a->free_bytes -= size;
    return 0;
}

int bdev_alloc_each_used(const bdev_alloc_t *a, int (*fn)(void *arg, uint64_t off, uint64_t size),
                         void *arg) {
    for (uint64_t i = 0; i < a->cap; i++) {
        const bdev_slot_t *s = &a->slots[i];
        if (s->key == 0 || !s->used) continue;
        int rc = fn(arg, s->key - 1, order_bytes(s->order));
        if (rc != 0) return rc;
    }
    return 0;
}

uint64_t bdev_alloc_free_blocks(const bdev_alloc_t *a) {
    uint64_t n = 0;
    for (uint32_t k = 0; k < a->orders; k++) n += a->freen[k];
    return n;
}

uint64_t bdev_alloc_largest(const bdev_alloc_t *a) {
    for (uint32_t k = a->orders; k-- > 0;)
        if (a->freen[k] > 0) return order_bytes(k);
    return 0;
}
