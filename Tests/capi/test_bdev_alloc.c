/* The bdev block allocator alone (Sources/Mods/bdev/block_alloc.c, compiled into this test):
 * no threads, no runtime. Random allocate/free patterns never hand out overlapping or
 * misaligned blocks and account every byte; freeing everything coalesces back to the initial
 * blocks; out-of-space, fragmentation beyond CHI_BDEV_MAX_BLOCKS and bad frees are error
 * codes that change nothing. */
#include "test_common.h"

#include "bdev_internal.h"

#define UNIT CHI_BDEV_UNIT

typedef struct {
    chi_bdev_block_t *v;
    size_t n, cap;
} live_t;

static void live_add(live_t *l, chi_bdev_block_t b) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        T_ASSERT(l->v != NULL, "out of memory");
    }
    l->v[l->n++] = b;
}

static int by_offset(const void *a, const void *b) {
    uint64_t x = ((const chi_bdev_block_t *)a)->offset, y = ((const chi_bdev_block_t *)b)->offset;
    return x < y ? -1 : x > y;
}

static int popcount64(uint64_t x) { return __builtin_popcountll(x); }

/* Every live block is a power-of-two multiple of UNIT, aligned to its size, inside the
 * device, disjoint from the others; free bytes account for the rest. */
static void check(const bdev_alloc_t *a, live_t *l, const char *when) {
    uint64_t used = 0;
    qsort(l->v, l->n, sizeof *l->v, by_offset);
    for (size_t i = 0; i < l->n; i++) {
        chi_bdev_block_t b = l->v[i];
        T_ASSERT(b.size >= UNIT && (b.size & (b.size - 1)) == 0, "%s: block size %llu", when,
                 (unsigned long long)b.size);
        T_ASSERT(b.offset % b.size == 0, "%s: block at %llu not aligned to %llu", when,
                 (unsigned long long)b.offset, (unsigned long long)b.size);
        T_ASSERT(b.offset + b.size <= a->size, "%s: block past the device", when);
        if (i > 0)
            T_ASSERT(l->v[i - 1].offset + l->v[i - 1].size <= b.offset,
                     "%s: blocks at %llu (+%llu) and %llu overlap", when,
                     (unsigned long long)l->v[i - 1].offset,
                     (unsigned long long)l->v[i - 1].size, (unsigned long long)b.offset);
        used += b.size;
    }
    T_ASSERT(a->free_bytes + used == a->size, "%s: free %llu + used %llu != size %llu", when,
             (unsigned long long)a->free_bytes, (unsigned long long)used,
             (unsigned long long)a->size);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int claim_into(void *arg, uint64_t off, uint64_t size) {
    return bdev_alloc_claim(arg, off, size);
}

static int count_used(void *arg, uint64_t off, uint64_t size) {
    (void)off;
    *(uint64_t *)arg += size;
    return 0;
}

/* What a migrated container does: a second allocator claims every block the first has
 * allocated, and ends in the same state (a buddy system's state is its set of allocated
 * blocks). Claims that overlap, straddle or leave the device are -EPROTO and change nothing.
 * The copy is then freed block by block and must coalesce fully. */
static void replay(const bdev_alloc_t *a, const live_t *l) {
    bdev_alloc_t b;
    T_OK(bdev_alloc_init(&b, a->size));
    T_OK(bdev_alloc_each_used(a, claim_into, &b));
    uint64_t used = 0;
    T_OK(bdev_alloc_each_used(&b, count_used, &used));
    T_ASSERT(b.free_bytes == a->free_bytes && used == a->size - a->free_bytes,
             "replayed free bytes %llu, want %llu", (unsigned long long)b.free_bytes,
             (unsigned long long)a->free_bytes);
    T_ASSERT(bdev_alloc_free_blocks(&b) == bdev_alloc_free_blocks(a) &&
                 bdev_alloc_largest(&b) == bdev_alloc_largest(a),
             "replayed free blocks %llu/%llu, want %llu/%llu",
             (unsigned long long)bdev_alloc_free_blocks(&b), (unsigned long long)bdev_alloc_largest(&b),
             (unsigned long long)bdev_alloc_free_blocks(a), (unsigned long long)bdev_alloc_largest(a));
    uint64_t free0 = b.free_bytes, blocks0 = bdev_alloc_free_blocks(&b);
    for (size_t i = 0; i < l->n && i < 64; i++) {
        chi_bdev_block_t x = l->v[i];
        T_EQ_RC(bdev_alloc_claim(&b, x.offset, x.size), -EPROTO);       /* twice */
        T_EQ_RC(bdev_alloc_claim(&b, x.offset, UNIT), -EPROTO);         /* inside one */
        if (x.size >= 2 * UNIT) T_EQ_RC(bdev_alloc_claim(&b, x.offset + x.size / 2, x.size), -EPROTO);
    }
    T_EQ_RC(bdev_alloc_claim(&b, b.size, UNIT), -EPROTO);
    T_EQ_RC(bdev_alloc_claim(&b, UNIT, 2 * UNIT), -EPROTO); /* misaligned */
    T_EQ_RC(bdev_alloc_claim(&b, 0, 3 * UNIT), -EPROTO);    /* not a power of two */
    T_EQ_RC(bdev_alloc_claim(&b, 0, 0), -EPROTO);
    T_ASSERT(b.free_bytes == free0 && bdev_alloc_free_blocks(&b) == blocks0, "refused claims changed state");
    for (size_t i = 0; i < l->n; i++) T_OK(bdev_alloc_put(&b, l->v[i].offset, l->v[i].size));
    T_ASSERT(b.free_bytes == b.size, "replayed copy not empty after freeing all");
    bdev_alloc_t fresh;
    T_OK(bdev_alloc_init(&fresh, a->size));
    T_ASSERT(bdev_alloc_free_blocks(&b) == bdev_alloc_free_blocks(&fresh), "replayed copy not coalesced");
    bdev_alloc_fini(&fresh);
    bdev_alloc_fini(&b);
}

/* Random allocations (sizes 1 byte .. 1/8 of the device) and frees, then free everything. */
static void random_pattern(uint64_t size, int rounds) {
    bdev_alloc_t a;
    live_t l = {0};
    chi_bdev_block_t out[CHI_BDEV_MAX_BLOCKS];
    T_OK(bdev_alloc_init(&a, size));
    uint64_t blocks0 = bdev_alloc_free_blocks(&a), largest0 = bdev_alloc_largest(&a);
    T_ASSERT(blocks0 == (uint64_t)popcount64(size / UNIT), "initial blocks %llu for %llu bytes",
             (unsigned long long)blocks0, (unsigned long long)size);
    int enospc = 0;
    for (int r = 0; r < rounds; r++) {
        if (l.n == 0 || rnd() % 3 != 0) {
            uint64_t want = 1 + rnd() % (size / 8);
            uint64_t before = a.free_bytes;
            int n = bdev_alloc_get(&a, want, out, CHI_BDEV_MAX_BLOCKS);
            if (n == -ENOSPC) {
                T_ASSERT(a.free_bytes == before, "a failed allocation changed free bytes");
                enospc++;
                continue;
            }
            T_OK(n);
            uint64_t got = 0;
            for (int i = 0; i < n; i++) {
                got += out[i].size;
                if (i > 0) T_ASSERT(out[i].size <= out[i - 1].size, "blocks not largest first");
                live_add(&l, out[i]);
            }
            T_ASSERT(got == (want + UNIT - 1) / UNIT * UNIT, "asked %llu, got %llu",
                     (unsigned long long)want, (unsigned long long)got);
        } else {
            size_t i = rnd() % l.n;
            T_OK(bdev_alloc_put(&a, l.v[i].offset, l.v[i].size));
            l.v[i] = l.v[--l.n];
        }
        if (r % 64 == 0) check(&a, &l, "random pattern");
    }
    check(&a, &l, "random pattern end");
    replay(&a, &l);
    while (l.n > 0) {
        size_t i = rnd() % l.n;
        T_OK(bdev_alloc_put(&a, l.v[i].offset, l.v[i].size));
        l.v[i] = l.v[--l.n];
    }
    T_ASSERT(a.free_bytes == a.size, "free bytes %llu after freeing all",
             (unsigned long long)a.free_bytes);
    T_ASSERT(bdev_alloc_free_blocks(&a) == blocks0 && bdev_alloc_largest(&a) == largest0,
             "not fully coalesced: %llu blocks (want %llu), largest %llu (want %llu)",
             (unsigned long long)bdev_alloc_free_blocks(&a), (unsigned long long)blocks0,
             (unsigned long long)bdev_alloc_largest(&a), (unsigned long long)largest0);
    printf("random pattern on %llu bytes: %d rounds, %d out-of-space, fully coalesced\n",
           (unsigned long long)size, rounds, enospc);
    bdev_alloc_fini(&a);
    free(l.v);
}

int main(void) {
    bdev_alloc_t a;
    chi_bdev_block_t out[CHI_BDEV_MAX_BLOCKS], all[256];
    const uint64_t MiB = 1ull << 20;

    t_watchdog("test_bdev_alloc", 50);
    T_EQ_RC(bdev_alloc_init(&a, UNIT - 1), -EINVAL);

    /* A power-of-two device is one block; any size up to it is served. */
    T_OK(bdev_alloc_init(&a, MiB));
    T_ASSERT(bdev_alloc_free_blocks(&a) == 1 && bdev_alloc_largest(&a) == MiB, "initial state");
    T_EQ_RC(bdev_alloc_get(&a, 0, out, CHI_BDEV_MAX_BLOCKS), -EINVAL);
    T_EQ_RC(bdev_alloc_get(&a, MiB + 1, out, CHI_BDEV_MAX_BLOCKS), -EINVAL);
    T_EQ_RC(bdev_alloc_get(&a, MiB, out, CHI_BDEV_MAX_BLOCKS), 1);
    T_ASSERT(out[0].offset == 0 && out[0].size == MiB, "whole device as one block");
    T_EQ_RC(bdev_alloc_get(&a, 1, out + 1, CHI_BDEV_MAX_BLOCKS), -ENOSPC);
    T_OK(bdev_alloc_put(&a, 0, MiB));
    /* 5000 bytes round up to two units: one 8 KiB block. 12 KiB: 8 KiB + 4 KiB. */
    T_EQ_RC(bdev_alloc_get(&a, 5000, out, CHI_BDEV_MAX_BLOCKS), 1);
    T_ASSERT(out[0].size == 2 * UNIT, "5000 bytes gave %llu", (unsigned long long)out[0].size);
    T_EQ_RC(bdev_alloc_get(&a, 3 * UNIT, out + 1, CHI_BDEV_MAX_BLOCKS), 2);
    T_ASSERT(out[1].size == 2 * UNIT && out[2].size == UNIT, "12 KiB as 8 + 4");

    /* Bad frees change nothing: double, partial, misaligned, outside, wrong size. */
    uint64_t free0 = a.free_bytes, blocks0 = bdev_alloc_free_blocks(&a);
    T_EQ_RC(bdev_alloc_put(&a, out[0].offset, UNIT), -EINVAL);
    T_EQ_RC(bdev_alloc_put(&a, out[0].offset + 1, 2 * UNIT), -EINVAL);
    T_EQ_RC(bdev_alloc_put(&a, out[0].offset, 3 * UNIT), -EINVAL);
    T_EQ_RC(bdev_alloc_put(&a, MiB, UNIT), -EINVAL);
    T_EQ_RC(bdev_alloc_put(&a, 512 * 1024, UNIT), -EINVAL); /* free, not allocated */
    T_EQ_RC(bdev_alloc_put(&a, 0, 0), -EINVAL);
    T_ASSERT(a.free_bytes == free0 && bdev_alloc_free_blocks(&a) == blocks0, "bad frees changed state");
    for (int i = 0; i < 3; i++) T_OK(bdev_alloc_put(&a, out[i].offset, out[i].size));
    T_EQ_RC(bdev_alloc_put(&a, out[0].offset, out[0].size), -EINVAL); /* double free */
    T_ASSERT(bdev_alloc_free_blocks(&a) == 1 && bdev_alloc_largest(&a) == MiB, "coalesced back");

    /* Fragmentation: every other 4 KiB unit allocated. 8 KiB is then served as two
     * 4 KiB blocks, and a request needing more than CHI_BDEV_MAX_BLOCKS blocks is -ENOSPC
     * with nothing allocated. */
    for (int i = 0; i < 256; i++) {
        T_EQ_RC(bdev_alloc_get(&a, UNIT, &all[i], 1), 1);
    }
    T_EQ_RC(bdev_alloc_get(&a, 1, out, 1), -ENOSPC);
    for (int i = 0; i < 256; i += 2) T_OK(bdev_alloc_put(&a, all[i].offset, all[i].size));
    T_ASSERT(bdev_alloc_free_blocks(&a) == 128, "128 free units, none coalesced, got %llu",
             (unsigned long long)bdev_alloc_free_blocks(&a));
    free0 = a.free_bytes;
    T_EQ_RC(bdev_alloc_get(&a, 65 * UNIT, out, CHI_BDEV_MAX_BLOCKS), -ENOSPC);
    T_ASSERT(a.free_bytes == free0 && bdev_alloc_free_blocks(&a) == 128, "failed get changed state");
    T_EQ_RC(bdev_alloc_get(&a, 2 * UNIT, out, CHI_BDEV_MAX_BLOCKS), 2);
    T_ASSERT(out[0].size == UNIT && out[1].size == UNIT, "8 KiB as two units");
    T_OK(bdev_alloc_put(&a, out[0].offset, UNIT));
    T_OK(bdev_alloc_put(&a, out[1].offset, UNIT));
    for (int i = 1; i < 256; i += 2) T_OK(bdev_alloc_put(&a, all[i].offset, all[i].size));
    T_ASSERT(bdev_alloc_free_blocks(&a) == 1 && bdev_alloc_largest(&a) == MiB,
             "fragmented device coalesced back to one block");
    bdev_alloc_fini(&a);

    /* A size that is not a power of two (nor a multiple of the unit). */
    T_OK(bdev_alloc_init(&a, 3 * MiB + 5 * UNIT + 100));
    T_ASSERT(a.size == 3 * MiB + 5 * UNIT, "size rounded down to the unit");
    T_ASSERT(bdev_alloc_free_blocks(&a) == 4, "2M + 1M + 16K + 4K: %llu blocks",
             (unsigned long long)bdev_alloc_free_blocks(&a));
    T_EQ_RC(bdev_alloc_get(&a, a.size, out, CHI_BDEV_MAX_BLOCKS), 4);
    T_OK(bdev_alloc_put(&a, out[2].offset, out[2].size));
    T_OK(bdev_alloc_put(&a, out[0].offset, out[0].size));
    T_OK(bdev_alloc_put(&a, out[3].offset, out[3].size));
    T_OK(bdev_alloc_put(&a, out[1].offset, out[1].size));
    T_ASSERT(a.free_bytes == a.size && bdev_alloc_free_blocks(&a) == 4, "odd device restored");
    bdev_alloc_fini(&a);

    random_pattern(64 * MiB, 20000);
    random_pattern(3 * MiB + 7 * UNIT, 20000);
    random_pattern(1ull << 40, 5000); /* a large device costs only its blocks' bookkeeping */
    puts("test_bdev_alloc: ok");
    return T_EXIT_PASS;
}
