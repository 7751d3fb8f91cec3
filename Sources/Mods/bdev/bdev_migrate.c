/* Moving a bdev container to another node (chi_container_migrate).
 *
 * migrate_out writes a header (the device's kind, size, flags and path, its block count and
 * its I/O totals), then every allocated block as {offset, size} and its bytes. Free space is
 * not sent: a 1 TiB device with 4 KiB in use moves 4 KiB. migrate_in builds the container as
 * create would, claims each block in a fresh allocator (the buddy allocator's state is
 * determined by its allocated blocks, so the receiver ends in the sender's state) and writes
 * its bytes to the new device: ram:// into its memory, fs:// into the file at the same path
 * on the destination.
 *
 * The stream comes from a peer: every field is checked before use, the block list must
 * claim cleanly (inside the device, aligned, disjoint) and the byte counts must add up to
 * what the stream holds, else -EPROTO and the container stays where it was.
 *
 * Both hooks run on a worker with the container plugged (no task of it runs), and copy with
 * plain memcpy or pread/pwrite in MIGRATE_CHUNK pieces, blocking that worker for the copy. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bdev_internal.h"

#define MIGRATE_CHUNK (1u << 20)
#define PATH_MAX_BYTES 4095u

static const char kMagic[8] = {'C', 'H', 'I', 'B', 'D', 'E', 'V', '1'};

typedef struct bdev_mig_head {
    char magic[8];
    uint32_t kind;
    uint32_t flags;
    uint64_t size;
    uint64_t nblocks;
    uint64_t data_bytes;
    uint64_t reads, writes, read_bytes, write_bytes;
    uint32_t path_len; /* fs:// only; the path follows the header, not NUL-terminated */
    uint32_t reserved;
} bdev_mig_head_t;

typedef struct bdev_mig_block {
    uint64_t offset;
    uint64_t size;
} bdev_mig_block_t;

/* Copies [off, off + len) between the device and buf. */
static int device_io(bdev_t *b, bool write, void *buf, uint64_t off, uint64_t len) {
    if (b->kind == BDEV_RAM) return bdev_ram_io(b, write, buf, off, len);
    return bdev_fs_sync_io(b, write, buf, off, len);
}

/* ---- out ---------------------------------------------------------------------------------- */

typedef struct out_ctx {
    bdev_t *b;
    chi_migrate_stream_t *s;
    unsigned char *buf;
    uint64_t nblocks, bytes;
} out_ctx_t;

static int count_block(void *arg, uint64_t off, uint64_t size) {
    (void)off;
    out_ctx_t *x = arg;
    x->nblocks++;
    x->bytes += size;
    return 0;
}

static int write_block(void *arg, uint64_t off, uint64_t size) {
    out_ctx_t *x = arg;
    bdev_mig_block_t blk = {off, size};
    int rc = chi_migrate_write(x->s, &blk, sizeof blk);
    for (uint64_t done = 0; rc == 0 && done < size;) {
        uint64_t n = size - done < MIGRATE_CHUNK ? size - done : MIGRATE_CHUNK;
        rc = device_io(x->b, false, x->buf, off + done, n);
        if (rc == 0) rc = chi_migrate_write(x->s, x->buf, (size_t)n);
        done += n;
    }
    return rc;
}

int bdev_migrate_out(chi_container_t *c, void *state, chi_migrate_stream_t *out) {
    (void)c;
    bdev_t *b = state;
    bdev_mig_head_t h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, kMagic, sizeof h.magic);
    h.kind = b->kind;
    h.flags = b->flags;
    h.size = b->size;
    for (uint32_t w = 0; w <= b->nworkers; w++) {
        h.reads += atomic_load(&b->counters[w].reads);
        h.writes += atomic_load(&b->counters[w].writes);
        h.read_bytes += atomic_load(&b->counters[w].read_bytes);
        h.write_bytes += atomic_load(&b->counters[w].write_bytes);
    }
    char path[PATH_MAX_BYTES + 1] = {0};
    if (b->kind == BDEV_FS) {
        int rc = bdev_fs_base_path(b, path, sizeof path);
        if (rc < 0) return rc;
        h.path_len = (uint32_t)strlen(path);
    }
    out_ctx_t x = {.b = b, .s = out};
    bdev_alloc_each_used(&b->alloc, count_block, &x);
    h.nblocks = x.nblocks;
    h.data_bytes = x.bytes;
    x.buf = malloc(MIGRATE_CHUNK);
    if (x.buf == NULL) return -ENOMEM;
    int rc = chi_migrate_write(out, &h, sizeof h);
    if (rc == 0 && h.path_len > 0) rc = chi_migrate_write(out, path, h.path_len);
    if (rc == 0) rc = bdev_alloc_each_used(&b->alloc, write_block, &x);
    free(x.buf);
    return rc;
}

/* ---- in ----------------------------------------------------------------------------------- */

/* Reads exactly len bytes, or -EPROTO if the stream ends first. */
static int read_exact(chi_migrate_stream_t *s, void *buf, size_t len) {
    unsigned char *p = buf;
    while (len > 0) {
        long n = chi_migrate_read(s, p, len);
        if (n < 0) return (int)n;
        if (n == 0) return -EPROTO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The header alone, before anything is built. */
static int check_head(const bdev_mig_head_t *h, uint64_t remaining) {
    if (memcmp(h->magic, kMagic, sizeof kMagic) != 0) return -EPROTO;
    if (h->kind != BDEV_RAM && h->kind != BDEV_FS) return -EPROTO;
    if ((h->flags & ~(uint32_t)BDEV_CREATE_FLAGS) != 0) return -EPROTO;
    if (h->size < CHI_BDEV_UNIT || (h->size & (CHI_BDEV_UNIT - 1)) != 0) return -EPROTO;
    if (h->kind == BDEV_FS ? h->path_len == 0 || h->path_len > PATH_MAX_BYTES : h->path_len != 0)
        return -EPROTO;
    if (h->data_bytes > h->size || h->nblocks > h->data_bytes / CHI_BDEV_UNIT) return -EPROTO;
    /* Exactly the path, one {offset, size} per block and the blocks' bytes remain. */
    uint64_t want = (uint64_t)h->path_len + h->nblocks * sizeof(bdev_mig_block_t) + h->data_bytes;
    return remaining == want ? 0 : -EPROTO;
}

int bdev_migrate_in(chi_container_t *c, chi_migrate_stream_t *in, uint32_t version,
                    void **state) {
    if (version == 0 || version > 1) return -EPROTO; /* a format this version does not know */
    bdev_mig_head_t h;
    if (chi_migrate_remaining(in) < sizeof h) return -EPROTO;
    int rc = read_exact(in, &h, sizeof h);
    if (rc == 0) rc = check_head(&h, chi_migrate_remaining(in));
    if (rc < 0) return rc;
    char path[PATH_MAX_BYTES + 1] = {0};
    if (h.path_len > 0) {
        rc = read_exact(in, path, h.path_len);
        if (rc < 0) return rc;
        if (memchr(path, 0, h.path_len) != NULL || path[0] != '/') return -EPROTO;
    }
    bdev_t *b;
    rc = bdev_build(c, h.kind, path, h.size, h.flags, &b);
    if (rc < 0) return rc;
    unsigned char *buf = malloc(MIGRATE_CHUNK);
    if (buf == NULL) rc = -ENOMEM;
    uint64_t bytes = 0;
    for (uint64_t i = 0; rc == 0 && i < h.nblocks; i++) {
        bdev_mig_block_t blk;
        rc = read_exact(in, &blk, sizeof blk);
        if (rc == 0 && blk.size > h.data_bytes - bytes) rc = -EPROTO;
        if (rc == 0) rc = bdev_alloc_claim(&b->alloc, blk.offset, blk.size);
        for (uint64_t done = 0; rc == 0 && done < blk.size;) {
            uint64_t n = blk.size - done < MIGRATE_CHUNK ? blk.size - done : MIGRATE_CHUNK;
            rc = read_exact(in, buf, (size_t)n);
            if (rc == 0) rc = device_io(b, true, buf, blk.offset + done, n);
            done += n;
        }
        bytes += blk.size;
    }
    free(buf);
    if (rc == 0 && (bytes != h.data_bytes || chi_migrate_remaining(in) != 0)) rc = -EPROTO;
    if (rc < 0) {
        bdev_free(b);
        return rc;
    }
    atomic_store(&b->free_pub, b->alloc.free_bytes);
    /* The totals go on from the sender's, in the slot for workers not counted apart. */
    bdev_counters_t *rest = &b->counters[b->nworkers];
    atomic_store(&rest->reads, h.reads);
    atomic_store(&rest->writes, h.writes);
    atomic_store(&rest->read_bytes, h.read_bytes);
    atomic_store(&rest->write_bytes, h.write_bytes);
    *state = b;
    return 0;
}
