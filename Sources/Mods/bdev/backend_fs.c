/* The fs:// backend: one file per container, I/O through one io_uring per worker.
 *
 * A task prepares its SQE on the worker that runs it, submits it and suspends its fiber; the
 * container's poller, called by the same worker on each pass of its loop, reaps completions
 * and resumes their tasks. The worker never blocks on an I/O and keeps polling while any is
 * in flight. Each ring is touched only by its worker, so nothing here takes a lock.
 *
 * A small SQE is submitted at once rather than batched per pass: io_uring plugs a batch, so
 * no request of it reaches the device before the kernel has processed the whole batch (~5 us
 * each on a virtual disk), and with a client that keeps a fixed number of I/Os in flight
 * that delay is lost throughput (measured: 4 KiB random reads at depth 32 went from ~0.75
 * to ~0.95 of fio's rate). A large one (BATCH_MIN and up) is left for the poller, which
 * submits all the pass queued in one io_uring_enter, as fio submits all the I/Os it
 * refills after a wait: the kernel plugs a batch, and the block layer merges adjacent
 * requests of a plug up to the queue's limits (max_sectors_kb, max_segments). Sequential
 * 1 MiB I/Os submitted one by one reached the virtual disk here as ~1.1 MiB requests
 * (/proc/diskstats), batched as 1.4 to 2.3 MiB ones, and the disk moved about 40% more data
 * (reads ~1450 vs ~2150 MB/s, writes ~3200 vs ~4400 MB/s, same machine, minutes apart).
 * Preparing a few large requests takes the kernel little beside their transfer. The
 * poller also submits anything a failed submit left queued.
 *
 * Large direct I/Os (BOUNCE_MIN to BOUNCE_CHUNK bytes) go through a per-worker bounce
 * buffer of transparent huge pages: a client's shared-memory buffer is made of scattered 4 KiB
 * pages, and a 1 MiB transfer of 256 separate pages exceeds a virtio disk's 254 segments per
 * request, so the kernel sends it as a 1016 KiB request plus an 8 KiB one (measured:
 * ~555 KiB mean requests against fio's ~760, and 85-92% of fio's sequential read bandwidth).
 * From physically contiguous memory one transfer is one segment, and adjacent requests merge
 * up to max_sectors_kb. The copy costs a memcpy per I/O on the worker; when every chunk is
 * in use the I/O goes straight to the client's buffer as before.
 *
 * While only I/O is in flight, the worker need not spin: it sleeps in fs_wait, in
 * io_uring_enter, until a completion or its doorbell (an IORING_OP_FUTEX_WAIT on the
 * doorbell word, kernel 6.7 and later). Without futex support in io_uring, it keeps polling.
 *
 * O_DIRECT is used when the file system takes it and the buffer, offset and length meet its
 * alignment (statx STATX_DIOALIGN, else 4 KiB); anything else goes through a second,
 * buffered descriptor of the same file. The kernel keeps the two coherent: a direct read
 * writes back dirty cached pages of its range first, a direct write invalidates them. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bdev_internal.h"

#define RING_ENTRIES 256u
#define MAX_OP (1u << 30) /* a CQE's res is an int: cap one operation's length */
/* Operations of at least this many bytes wait for the poller, at the end of the worker's
 * pass, to be submitted with the others of that pass (see the top of the file). */
#define BATCH_MIN (128u << 10)
#define FD_DIRECT 0
#define FD_BUFFERED 1
/* Bounce buffers (see the top of the file): chunks of one huge-page region per worker. */
#define BOUNCE_MIN (256u << 10)
#define BOUNCE_CHUNK (1u << 20)
#define BOUNCE_CHUNKS 32u
#define HUGE_PAGE (2u << 20)

typedef struct bdev_ring {
    struct io_uring ring;
    uint32_t inflight; /* SQEs prepared and not yet reaped */
    bool fixed_files;  /* the two descriptors are registered: slots FD_DIRECT, FD_BUFFERED */
    unsigned char *bounce;     /* BOUNCE_CHUNKS chunks, huge-page aligned; NULL: none */
    void *bounce_map;          /* the mapping (bounce is aligned inside it) */
    size_t bounce_map_len;
    bool bounce_tried;
    uint32_t bounce_free[BOUNCE_CHUNKS]; /* a stack of free chunk indexes */
    uint32_t bounce_nfree;
    bool futex_ok;     /* the kernel takes IORING_OP_FUTEX_WAIT */
    bool futex_armed;  /* a futex wait on the doorbell is queued */
} bdev_ring_t;

/* IORING_OP_FUTEX_WAIT (Linux 6.7): liburing 2.3's headers predate it. Its SQE, as
 * liburing 2.5 prepares it: fd = futex2 flags, addr = the word, off = the expected value,
 * addr3 = the wake mask. */
#define OP_FUTEX_WAIT 51
#define FUTEX2_SIZE_U32_FLAG 0x02u
/* user_data of the futex wait's CQE: never a request's address. */
#define FUTEX_TAG ((uint64_t)1)

struct bdev_fs {
    int fd[2];            /* [FD_DIRECT] (or -1), [FD_BUFFERED] */
    uint32_t mem_align;   /* O_DIRECT buffer alignment */
    uint32_t off_align;   /* O_DIRECT offset and length alignment */
    bool temporary;
    uint32_t nrings;
    bdev_ring_t **rings;  /* by worker id, created by that worker on its first I/O */
    char path[4096];
};

/* One operation in flight; lives on the suspended task's fiber stack. */
typedef struct bdev_req {
    chi_rctx_t *rctx; /* resumed on completion; NULL when reaped by its own waiter */
    int32_t res;
    uint32_t done;
} bdev_req_t;

/* ---- rings ------------------------------------------------------------------------------- */

/* Completes every reaped request and resumes its task. Returns how many were reaped. */
static uint32_t ring_reap(bdev_ring_t *r) {
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    unsigned seen = 0;
    io_uring_for_each_cqe(&r->ring, head, cqe) {
        seen++;
        if (cqe->user_data == FUTEX_TAG) {
            r->futex_armed = false;
            /* -EAGAIN: the doorbell had moved on already. Anything else means this kernel's
             * futex wait does not work as expected: stop sleeping in it, keep polling. */
            if (cqe->res < 0 && cqe->res != -EAGAIN && cqe->res != -EINTR && cqe->res != -ECANCELED)
                r->futex_ok = false;
            continue;
        }
        bdev_req_t *q = io_uring_cqe_get_data(cqe);
        q->res = cqe->res;
        q->done = 1;
        if (q->rctx != NULL) chi_rctx_resume(q->rctx);
        n++;
    }
    io_uring_cq_advance(&r->ring, seen);
    r->inflight -= n;
    return n;
}

/* The poller: reaps what completed on this worker's ring. Returns the number of operations
 * still in flight, so the worker keeps polling while there are any. */
static int fs_poll(void *arg, uint32_t worker) {
    bdev_fs_t *fs = ((bdev_t *)arg)->fs;
    if (worker >= fs->nrings || fs->rings[worker] == NULL) return 0;
    bdev_ring_t *r = fs->rings[worker];
    if (r->inflight == 0) return 0;
    /* Entering the kernel runs its pending completion work: with IORING_SETUP_COOP_TASKRUN
     * completions wait for us instead of interrupting us, and the kernel flags when there
     * are some. A submit left over from a failed one (-EAGAIN, -EBUSY: the kernel short of
     * resources) is retried on every pass. */
    if (io_uring_sq_ready(&r->ring) > 0)
        io_uring_submit(&r->ring);
    else if (IO_URING_READ_ONCE(*r->ring.sq.kflags) & IORING_SQ_TASKRUN)
        io_uring_get_events(&r->ring);
    ring_reap(r);
    return (int)(r->inflight > INT32_MAX ? INT32_MAX : r->inflight);
}

/* The waiting half of the poller: sleeps in the kernel until an I/O of this worker's ring
 * completes, the doorbell word leaves seq, or timeout_ns passes. */
static int fs_wait(void *arg, uint32_t worker, uint32_t *doorbell, uint32_t seq,
                   uint64_t timeout_ns) {
    bdev_fs_t *fs = ((bdev_t *)arg)->fs;
    if (worker >= fs->nrings || fs->rings[worker] == NULL) return 0;
    bdev_ring_t *r = fs->rings[worker];
    if (r->inflight == 0 || !r->futex_ok) return 0; /* nothing to wait for, or no way to be woken */
    if (!r->futex_armed) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
        if (sqe == NULL) return 0;
        io_uring_prep_rw(OP_FUTEX_WAIT, sqe, (int)FUTEX2_SIZE_U32_FLAG, doorbell, 0, seq);
        sqe->addr3 = 0xffffffffull;
        sqe->user_data = FUTEX_TAG;
        r->futex_armed = true;
    }
    struct __kernel_timespec ts = {(long long)(timeout_ns / 1000000000u),
                                   (long long)(timeout_ns % 1000000000u)};
    struct io_uring_cqe *cqe;
    io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, &ts, NULL);
    ring_reap(r);
    return 0;
}

/* Waits on the calling thread for q, for a task that cannot suspend. */
static void ring_wait_sync(bdev_ring_t *r, bdev_req_t *q) {
    q->rctx = NULL;
    while (!q->done) {
        struct io_uring_cqe *cqe;
        io_uring_submit(&r->ring);
        if (io_uring_wait_cqe(&r->ring, &cqe) == 0) ring_reap(r);
    }
}

/* The calling worker's ring, created on first use. NULL when io_uring is unavailable. */
static bdev_ring_t *ring_for(bdev_fs_t *fs, uint32_t worker) {
    if (worker >= fs->nrings) return NULL;
    if (fs->rings[worker] != NULL) return fs->rings[worker];
    bdev_ring_t *r = calloc(1, sizeof *r);
    if (r == NULL) return NULL;
    /* Cooperative task work: the kernel does not interrupt the worker to post completions;
     * the poller collects them (see fs_poll). Older kernels refuse the flags: plain ring. */
    unsigned flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN |
                     IORING_SETUP_TASKRUN_FLAG;
    if (io_uring_queue_init(RING_ENTRIES, &r->ring, flags) < 0 &&
        io_uring_queue_init(RING_ENTRIES, &r->ring, 0) < 0) {
        free(r);
        return NULL;
    }
    /* Fixed files spare the kernel a descriptor lookup and reference per operation.
     * A -1 entry (no O_DIRECT descriptor) is a sparse slot. */
    r->fixed_files = io_uring_register_files(&r->ring, fs->fd, 2) == 0;
    struct io_uring_probe *probe = io_uring_get_probe_ring(&r->ring);
    if (probe != NULL) {
        r->futex_ok = io_uring_opcode_supported(probe, OP_FUTEX_WAIT);
        io_uring_free_probe(probe);
    }
    fs->rings[worker] = r;
    return r;
}

/* A free bounce chunk of the calling worker's ring, mapped on first use; NULL when none. */
static unsigned char *bounce_get(bdev_ring_t *r) {
    if (r->bounce == NULL && !r->bounce_tried) {
        r->bounce_tried = true;
        size_t len = (size_t)BOUNCE_CHUNKS * BOUNCE_CHUNK + HUGE_PAGE;
        void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) return NULL;
        unsigned char *a =
            (unsigned char *)(((uintptr_t)m + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
        /* Without huge pages the chunks would be as scattered as the client's buffer. */
        if (madvise(a, (size_t)BOUNCE_CHUNKS * BOUNCE_CHUNK, MADV_HUGEPAGE) < 0) {
            munmap(m, len);
            return NULL;
        }
        r->bounce_map = m;
        r->bounce_map_len = len;
        r->bounce = a;
        for (uint32_t i = 0; i < BOUNCE_CHUNKS; i++) r->bounce_free[i] = BOUNCE_CHUNKS - 1 - i;
        r->bounce_nfree = BOUNCE_CHUNKS;
    }
    if (r->bounce == NULL || r->bounce_nfree == 0) return NULL;
    return r->bounce + (size_t)r->bounce_free[--r->bounce_nfree] * BOUNCE_CHUNK;
}

static void bounce_put(bdev_ring_t *r, unsigned char *chunk) {
    r->bounce_free[r->bounce_nfree++] = (uint32_t)((size_t)(chunk - r->bounce) / BOUNCE_CHUNK);
}

static struct io_uring_sqe *ring_sqe(bdev_ring_t *r) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (sqe == NULL) {
        /* Failed submits left the ring full: hand those to the kernel now. */
        io_uring_submit(&r->ring);
        sqe = io_uring_get_sqe(&r->ring);
    }
    return sqe;
}

/* Submits a prepared SQE (now, or with the rest of the worker's pass when the poller runs)
 * and suspends the task until it completes. Returns its result. */
static int ring_run(bdev_ring_t *r, struct io_uring_sqe *sqe, chi_rctx_t *rctx, bool now) {
    bdev_req_t q = {rctx, 0, 0};
    if (r->fixed_files) sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data(sqe, &q);
    r->inflight++;
    if (now) io_uring_submit(&r->ring);
    while (!q.done) {
        if (chi_rctx_suspend(rctx) < 0) {
            ring_wait_sync(r, &q);
            break;
        }
    }
    return q.res;
}

/* ---- I/O ------------------------------------------------------------------------------- */

/* One read or write of at most MAX_OP bytes. Returns bytes moved or -errno. */
static int fs_op(bdev_fs_t *fs, bdev_ring_t *r, chi_rctx_t *rctx, bool write, void *buf,
                 uint64_t off, uint32_t len, uint32_t io_flags) {
    bool aligned = fs->fd[FD_DIRECT] >= 0 && ((off | len) & (fs->off_align - 1)) == 0;
    bool direct = aligned && ((uintptr_t)buf & (fs->mem_align - 1)) == 0;
    /* A bounce chunk is aligned whatever the client's buffer is: large I/Os from a buffer
     * of any alignment still go direct. */
    unsigned char *chunk = aligned && r != NULL && len >= BOUNCE_MIN && len <= BOUNCE_CHUNK ? bounce_get(r) : NULL;
    if (chunk != NULL) direct = true;
    int slot = direct ? FD_DIRECT : FD_BUFFERED;
    int rwf = write && (io_flags & CHI_BDEV_WRITE_FLUSH) ? RWF_DSYNC : 0;
    struct io_uring_sqe *sqe = r != NULL ? ring_sqe(r) : NULL;
    if (sqe == NULL && chunk != NULL) {
        bounce_put(r, chunk);
        chunk = NULL;
        direct = aligned && ((uintptr_t)buf & (fs->mem_align - 1)) == 0;
        slot = direct ? FD_DIRECT : FD_BUFFERED;
    }
    if (sqe == NULL) {
        /* No ring on this thread: plain system calls, blocking the worker. */
        struct iovec iov = {buf, len};
        ssize_t n = write ? pwritev2(fs->fd[slot], &iov, 1, (off_t)off, rwf)
                          : preadv2(fs->fd[slot], &iov, 1, (off_t)off, 0);
        return n < 0 ? -errno : (int)n;
    }
    int fd = r->fixed_files ? slot : fs->fd[slot];
    void *io_buf = chunk != NULL ? chunk : buf;
    if (chunk != NULL && write) memcpy(chunk, buf, len);
    if (write)
        io_uring_prep_write(sqe, fd, io_buf, len, off);
    else
        io_uring_prep_read(sqe, fd, io_buf, len, off);
    sqe->rw_flags = rwf;
    int res = ring_run(r, sqe, rctx, len < BATCH_MIN);
    if (chunk != NULL) {
        if (!write && res > 0) memcpy(buf, chunk, (size_t)res);
        bounce_put(r, chunk);
    }
    return res;
}

int bdev_fs_io(bdev_t *b, chi_rctx_t *rctx, bool write, void *buf, uint64_t off,
               uint64_t len, uint32_t io_flags) {
    bdev_fs_t *fs = b->fs;
    bdev_ring_t *r = ring_for(fs, chi_rctx_worker(rctx));
    uint64_t done = 0;
    while (done < len) {
        uint64_t left = len - done;
        uint32_t n = left > MAX_OP ? MAX_OP : (uint32_t)left;
        int res = fs_op(fs, r, rctx, write, (unsigned char *)buf + done, off + done, n, io_flags);
        if (res == -EINTR || res == -EAGAIN) continue;
        if (res < 0) return res;
        /* The file was sized at create: a zero-length transfer means it shrank under us. */
        if (res == 0) return -EIO;
        done += (uint64_t)res;
    }
    return 0;
}

int bdev_fs_flush(bdev_t *b, chi_rctx_t *rctx) {
    bdev_fs_t *fs = b->fs;
    bdev_ring_t *r = ring_for(fs, chi_rctx_worker(rctx));
    struct io_uring_sqe *sqe = r != NULL ? ring_sqe(r) : NULL;
    if (sqe == NULL) return fdatasync(fs->fd[FD_BUFFERED]) < 0 ? -errno : 0;
    io_uring_prep_fsync(sqe, r->fixed_files ? FD_BUFFERED : fs->fd[FD_BUFFERED],
                        IORING_FSYNC_DATASYNC);
    int res = ring_run(r, sqe, rctx, true);
    return res < 0 ? res : 0;
}

/* ---- open / close ---------------------------------------------------------------------- */

/* Opens path read-write, creating it if absent; *created tells which. */
static int open_file(const char *path, bool *created) {
    *created = false;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0) *created = true;
    }
    return fd < 0 ? -errno : fd;
}

/* Grows the file to size (never shrinks it), reserving the space when the file system can. */
static int size_file(int fd, uint64_t size) {
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    if (!S_ISREG(st.st_mode)) return -EINVAL;
    if ((uint64_t)st.st_size >= size) return 0;
    if (fallocate(fd, 0, 0, (off_t)size) == 0) return 0;
    if (errno != EOPNOTSUPP && errno != ENOSYS) return -errno;
    return ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
}

/* The direct-I/O alignments of fd; false if the file system refuses direct I/O. */
static bool dio_alignment(int fd, uint32_t *mem, uint32_t *off) {
    struct statx sx;
    *mem = *off = 4096;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) < 0 || !(sx.stx_mask & STATX_DIOALIGN))
        return true; /* an older kernel: assume the common 4 KiB */
    if (sx.stx_dio_mem_align == 0 || sx.stx_dio_offset_align == 0) return false;
    *mem = sx.stx_dio_mem_align;
    *off = sx.stx_dio_offset_align;
    return true;
}

static void fs_free(bdev_fs_t *fs, bool remove) {
    for (uint32_t i = 0; i < fs->nrings && fs->rings != NULL; i++) {
        if (fs->rings[i] == NULL) continue;
        /* Exiting a ring with operations in flight waits for them in the kernel. */
        io_uring_queue_exit(&fs->rings[i]->ring);
        if (fs->rings[i]->bounce_map != NULL) munmap(fs->rings[i]->bounce_map, fs->rings[i]->bounce_map_len);
        free(fs->rings[i]);
    }
    free(fs->rings);
    for (int i = 0; i < 2; i++)
        if (fs->fd[i] >= 0) close(fs->fd[i]);
    if (remove) unlink(fs->path);
    free(fs);
}

int bdev_fs_open(bdev_t *b, const char *path) {
    bdev_fs_t *fs = calloc(1, sizeof *fs);
    if (fs == NULL) return -ENOMEM;
    fs->fd[FD_DIRECT] = fs->fd[FD_BUFFERED] = -1;
    fs->temporary = (b->flags & CHI_BDEV_CREATE_TEMPORARY) != 0;
    int n = snprintf(fs->path, sizeof fs->path, "%s.%u", path, b->id);
    if (n < 0 || (size_t)n >= sizeof fs->path) {
        free(fs);
        return -ENAMETOOLONG;
    }
    bool created;
    int rc = open_file(fs->path, &created);
    if (rc < 0) {
        free(fs);
        return rc;
    }
    fs->fd[FD_BUFFERED] = rc;
    rc = size_file(fs->fd[FD_BUFFERED], b->size);
    if (rc == 0 && !(b->flags & CHI_BDEV_CREATE_BUFFERED)) {
        /* EINVAL here means the file system has no O_DIRECT (tmpfs before 6.6): buffered. */
        int dfd = open(fs->path, O_RDWR | O_DIRECT | O_CLOEXEC);
        if (dfd >= 0 && dio_alignment(dfd, &fs->mem_align, &fs->off_align))
            fs->fd[FD_DIRECT] = dfd;
        else if (dfd >= 0)
            close(dfd);
    }
    if (rc == 0) {
        fs->nrings = chi_container_worker_count(b->c);
        fs->rings = calloc(fs->nrings ? fs->nrings : 1, sizeof *fs->rings);
        if (fs->rings == NULL) rc = -ENOMEM;
    }
    b->fs = fs;
    if (rc == 0) rc = chi_container_add_waiting_poller(b->c, fs_poll, fs_wait, b);
    if (rc < 0) {
        b->fs = NULL;
        fs_free(fs, created || fs->temporary);
        return rc;
    }
    return 0;
}

void bdev_fs_unlink_temporary(bdev_t *b) {
    if (b->fs != NULL && b->fs->temporary) {
        unlink(b->fs->path);
        b->fs->temporary = false;
    }
}

int bdev_fs_base_path(const bdev_t *b, char *out, size_t cap) {
    char suffix[16];
    int n = snprintf(suffix, sizeof suffix, ".%u", b->id);
    size_t len = strlen(b->fs->path);
    if (n < 0 || (size_t)n > len || len - (size_t)n >= cap) return -ENAMETOOLONG;
    memcpy(out, b->fs->path, len - (size_t)n);
    out[len - (size_t)n] = 0;
    return 0;
}

int bdev_fs_sync_io(bdev_t *b, bool write, void *buf, uint64_t off, uint64_t len) {
    int fd = b->fs->fd[FD_BUFFERED];
    unsigned char *p = buf;
    while (len > 0) {
        size_t n = len > MAX_OP ? MAX_OP : (size_t)len;
        ssize_t r = write ? pwrite(fd, p, n, (off_t)off) : pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -errno;
        if (r == 0) return -EIO; /* the file is shorter than the device */
        p += r;
        off += (uint64_t)r;
        len -= (uint64_t)r;
    }
    return 0;
}

void bdev_fs_close(bdev_t *b) {
    if (b->fs == NULL) return;
    fs_free(b->fs, b->fs->temporary);
    b->fs = NULL;
}
