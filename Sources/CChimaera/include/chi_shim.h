/* Internal C helpers for the Swift core: atomics on shared memory, futexes, clocks, fibers,
 * the segment layout and the per-thread error message. Not part of the public ABI. */
#ifndef CHI_SHIM_H
#define CHI_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "chimaera/chimaera.h"
#include "chimaera/module.h"
#include "chimaera/small_message.h"

/* ---- Atomics on raw (possibly shared) memory ------------------------------------------ */

static inline uint32_t chi_load32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint32_t chi_load32_relaxed(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void chi_store32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint32_t chi_xchg32(uint32_t *p, uint32_t v) { return __atomic_exchange_n(p, v, __ATOMIC_ACQ_REL); }
static inline bool chi_cas32(uint32_t *p, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
static inline uint32_t chi_add32(uint32_t *p, uint32_t v) { return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL); }
static inline uint32_t chi_sub32(uint32_t *p, uint32_t v) { return __atomic_fetch_sub(p, v, __ATOMIC_ACQ_REL); }

static inline uint64_t chi_load64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint64_t chi_load64_relaxed(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void chi_store64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void chi_store64_relaxed(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline uint64_t chi_xchg64(uint64_t *p, uint64_t v) { return __atomic_exchange_n(p, v, __ATOMIC_ACQ_REL); }
static inline bool chi_cas64(uint64_t *p, uint64_t expected, uint64_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
static inline bool chi_cas64_weak(uint64_t *p, uint64_t expected, uint64_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, true, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}
static inline uint64_t chi_add64(uint64_t *p, uint64_t v) { return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL); }
static inline uint64_t chi_add64_relaxed(uint64_t *p, uint64_t v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline uint64_t chi_sub64(uint64_t *p, uint64_t v) { return __atomic_fetch_sub(p, v, __ATOMIC_ACQ_REL); }
static inline void chi_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void chi_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/** Starts loading the line at p; never faults, so p may lie past the end of a mapping. */
static inline void chi_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }
/** Starts taking the line at p for writing (the line is fetched exclusive, so a later store
 *  does not wait for the other copies to be invalidated). Never faults. */
static inline void chi_prefetch_w(const void *p) {
#if defined(__x86_64__) || defined(__i386__)
    /* prefetchw is a no-op on x86 CPUs without it; __builtin_prefetch(p, 1) would emit a
     * plain read prefetch unless the whole build targets PRFCHW. */
    __asm__ __volatile__("prefetchw %0" : : "m"(*(const char *)p));
#else
    __builtin_prefetch(p, 1, 3);
#endif
}

/* ---- Futexes (shared: they work across processes) -------------------------------------- */

/** Sleeps while *addr == expected, for at most timeout_ns (< 0: forever). Returns 0 when woken
 *  or the value differed, -ETIMEDOUT, or -EINTR. */
int chi_futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns);
/** Wakes up to n sleepers on addr. */
int chi_futex_wake(uint32_t *addr, int n);

/* ---- Clocks ---------------------------------------------------------------------------- */

static inline uint64_t chi_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Task header words both sides touch atomically. Swift's keypath offsets are not always
 * folded to constants; these are. */
static inline uint32_t *chi_task_done_ptr(chi_task_t *t) { return &t->done; }
static inline uint64_t *chi_task_reserved_ptr(chi_task_t *t, int i) { return &t->reserved[i]; }

/** A cheap monotonic tick counter (the TSC on x86-64); convert with a calibrated rate. */
static inline uint64_t chi_ticks(void) {
#if defined(__x86_64__)
    return __builtin_ia32_rdtsc();
#else
    return chi_now_ns();
#endif
}

/* ---- Fibers ---------------------------------------------------------------------------- */

/** A saved execution context: the stack pointer (registers live on the stack). The other
 *  fields serve AddressSanitizer builds only (fiber.c tells it about every switch); they are
 *  there in every build so that C and Swift always agree on the size. */
typedef struct chi_fiber_ctx {
    void *sp;
    const void *stack_bottom; /* this context's stack, for the sanitizer */
    size_t stack_size;
    void *fake_stack;         /* the sanitizer's saved state while this context is switched out */
    void (*entry)(void *);    /* a new fiber's function and argument */
    void *arg;
} chi_fiber_ctx_t;

/** A fiber's stack, with an inaccessible guard region below it. */
typedef struct chi_fiber_stack {
    void *base;   /* the whole mapping, guard included */
    size_t size;  /* mapping size */
} chi_fiber_stack_t;

/** Maps a stack of `size` bytes plus a guard region. Returns 0 or -errno. */
int chi_fiber_stack_alloc(chi_fiber_stack_t *st, size_t size);
void chi_fiber_stack_free(chi_fiber_stack_t *st);
/** Prepares ctx so that the first switch to it calls fn(arg) on the stack. fn must never
 *  return; it switches away instead. */
void chi_fiber_init(chi_fiber_ctx_t *ctx, chi_fiber_stack_t *st, void (*fn)(void *), void *arg);
/** Saves the current context in *from and resumes *to. */
void chi_fiber_switch(chi_fiber_ctx_t *from, chi_fiber_ctx_t *to);

/* ---- Thread-local state ----------------------------------------------------------------- */

/** The current thread's worker (NULL outside runtime workers). */
#define CHI_TASK_CACHE_CLASSES 8
uint64_t chi_tls_cache_take(uint64_t owner, uint32_t cls);
int chi_tls_cache_put(uint64_t owner, uint32_t cls, uint64_t off);
void *chi_tls_worker(void);
void chi_tls_set_worker(void *w);
/** The per-thread error message behind chi_last_error(). */
const char *chi_tls_error(void);
void chi_tls_set_error(const char *msg);

/* ---- Process helpers -------------------------------------------------------------------- */

/** Installs SIGTERM/SIGINT handlers that set *flag to 1 and futex-wake it, and ignores
 *  SIGPIPE and SIGXFSZ (write errors come back as EPIPE and EFBIG instead). */
int chi_install_stop_signals(uint32_t *flag);
/** Ignores SIGPIPE and SIGXFSZ: a write to a closed socket or past `ulimit -f` fails with
 *  EPIPE or EFBIG instead of killing the process. */
void chi_ignore_write_signals(void);
/** Pins the calling thread to one CPU. Returns 0 or -errno. */
int chi_pin_thread(int cpu);
/** Names the calling thread (at most 15 characters show), as top -H and gdb list it. */
void chi_thread_name(const char *name);
/** Lets the calling thread run on every online CPU again. */
int chi_unpin_thread(void);
/** The CPU the calling thread runs on (-1 if unknown); no system call with rseq/vDSO. */
int chi_current_cpu(void);
/** Moves the calling thread to one of its allowed CPUs outside `cpus` (bit i: CPU i, 0-31),
 *  leaving its affinity mask as it was. Returns 0, or -1 if it has no such CPU. */
int chi_leave_cpus(uint32_t cpus);
/** Returns the path of the shared object holding this code ("" if unknown). */
const char *chi_self_path(void);

/* ---- Unix sockets (registration) ------------------------------------------------------ */

/** A non-blocking listening SOCK_SEQPACKET socket at path (mode 0600; a stale file is
 *  replaced). Returns the fd or -errno. */
int chi_unix_listen(const char *path, int backlog);
/** Accepts a connection (non-blocking, close-on-exec). Returns the fd or -errno. */
int chi_unix_accept(int lfd);
/** Connects to path; sends and receives then time out after timeout_ms. Returns fd or -errno. */
int chi_unix_connect(const char *path, int timeout_ms);
/** The pid and uid of the process at the other end, as the kernel recorded them. */
int chi_peer_cred(int fd, int32_t *pid, uint32_t *uid);
/** send/recv of one message, retried on EINTR, never raising SIGPIPE. Return bytes or -errno. */
ssize_t chi_sock_send(int fd, const void *buf, size_t len);
ssize_t chi_sock_recv(int fd, void *buf, size_t len, int nonblock);
/** epoll for readable fds (and hang-ups); eventfd for wake-ups. Return fds, counts or -errno.
 *  chi_epoll_wait fills fds[i] and hangup[i] (EPOLLHUP or EPOLLERR) for up to max (<= 64). */
int chi_epoll_create(void);
int chi_epoll_add(int ep, int fd);
int chi_epoll_del(int ep, int fd);
int chi_epoll_wait(int ep, int32_t *fds, uint32_t *hangup, int max, int timeout_ms);
int chi_eventfd(void);

/* ---- Plain-function handlers (libffi) ---------------------------------------------------- */

typedef struct chi_ffi_method chi_ffi_method_t;
/** Resolves a bulk pointer of the task behind rctx: the address of [p, p + len) if it lies in
 *  one buffer the task may name, else NULL. */
typedef void *(*chi_bulk_resolve_fn)(void *rctx, chi_shm_ptr_t p, uint64_t len);
/** Prepares the libffi call of m->handler from m's descriptors. Returns NULL if m has no
 *  handler, or on error with a message in err. */
chi_ffi_method_t *chi_ffi_prepare(const chi_method_desc_t *m, char *err, size_t errlen);
/** Calls the handler for `task`; stores its result in *rc. Returns 0, or -EFAULT (handler not
 *  called) when `resolve` refuses a bulk field. */
int chi_ffi_call(const chi_ffi_method_t *fm, chi_task_t *task, void *rctx,
                 chi_bulk_resolve_fn resolve, int32_t *rc);

/* ---- Segment layout --------------------------------------------------------------------- */

#define CHI_SEG_MAGIC 0x4348494D41455241ull /* "CHIMAERA" */
#define CHI_SEG_LAYOUT 2u   /* bumped whenever anything below changes */
#define CHI_SEG_READY 1u
#define CHI_SEG_STOPPING 2u
#define CHI_MAX_QUEUES 64u
#define CHI_SPAN_SHIFT 16u  /* the heap is handed out in 64 KiB spans */
#define CHI_MIN_BLOCK_SHIFT 6u
#define CHI_SLAB_CLASSES 10u /* slab blocks of 64 B .. 32 KiB; larger ones are extents */

/** A worker's doorbell: a sequence word to futex-wait on, and whether the worker sleeps. */
typedef struct chi_doorbell {
    uint32_t seq;
    uint32_t sleeping;
    uint32_t pad[14];
} chi_doorbell_t;

/** Bounded multi-producer queue of 64-bit values (Vyukov). Cells follow the header. */
typedef struct chi_ring {
    uint64_t enqueue_pos;
    uint64_t pad0[7];
    uint64_t dequeue_pos;
    uint64_t pad1[7];
    uint64_t mask;
    uint32_t owner;     /* the worker that consumes this queue */
    uint32_t pad2;
    uint64_t pad3[6];
} chi_ring_t;

typedef struct chi_ring_cell {
    uint64_t seq;
    uint64_t value;
} chi_ring_cell_t;

/** The start of every segment. Written by the daemon only; clients read it. The heap's
 *  ownership (which client holds which span) is kept in the daemon's private memory. */
typedef struct chi_seg_header {
    uint64_t magic;
    uint32_t abi_major;
    uint32_t abi_minor;
    uint64_t size;
    int32_t daemon_pid;
    uint32_t state;            /* CHI_SEG_* */
    uint32_t layout;           /* CHI_SEG_LAYOUT */
    uint32_t nworkers;
    uint32_t pinned_cpus;      /* bit i: a worker is pinned to CPU i (CPUs 0-31) */
    uint32_t span_shift;
    uint64_t doorbells_off;    /* nworkers doorbells */
    uint64_t heap_off;         /* spans start here */
    uint64_t heap_size;
    uint64_t start_ns;
    char name[64];
    char socket_path[108];     /* where clients register (a SOCK_SEQPACKET Unix socket) */
} chi_seg_header_t;

/* ---- A client's control area (runtime-owned spans; the client may write its rings) ----- */

#define CHI_MSG_SLOTS 32u
#define CHI_MSG_TEXT 1000u

/** One error message the runtime left for a client's task: the task's reserved[2] holds
 *  (gen << 8 | slot + 1); the text is valid while `gen` still matches. */
typedef struct chi_msg_slot {
    uint32_t gen;       /* odd while the runtime writes the slot */
    uint32_t len;
    uint64_t task_id;
    char text[CHI_MSG_TEXT];
    uint32_t pad[2];
} chi_msg_slot_t;

/** Made by the runtime when a client registers; the client finds it at area_off. */
typedef struct chi_client_area {
    uint64_t client_id;
    uint32_t slot;
    uint32_t nrings;           /* submission rings (one per low-latency worker) */
    uint32_t ring_depth;
    uint32_t returned_cap;
    uint64_t ring_stride;
    uint64_t rings_off;        /* segment offsets */
    uint64_t returned_off;     /* fire-and-forget tasks the runtime hands back, to be freed */
    uint64_t msgs_off;         /* CHI_MSG_SLOTS chi_msg_slot_t */
    uint32_t ring_worker[CHI_MAX_QUEUES]; /* the worker that drains ring i (its doorbell) */
} chi_client_area_t;

/* A submission-ring value: a task offset (64-byte aligned), or one with a low tag. */
#define CHI_RING_TAG_MASK 63ull
#define CHI_RING_CANCEL 1ull  /* cancel the periodic task at (value & ~63) */

/* ---- Registration (client <-> runtime, over the socket in chi_seg_header_t) ----------- */

#define CHI_REG_MAGIC 0x43484952u /* "CHIR" */
#define CHI_REG_MAX_OFFS 32u

/* Requests. */
#define CHI_REG_HELLO      1u /* register; the reply is a chi_reg_reply_t with the area */
#define CHI_REG_SPANS      2u /* `count` spans for slab class `cls` of kind `kind` */
#define CHI_REG_LARGE      3u /* one extent of at least `bytes` of kind `kind` */
#define CHI_REG_FREE_SPANS 4u /* give back `count` slab spans at offs[] (no reply) */
#define CHI_REG_FREE_LARGE 5u /* give back the extent at offs[0] (no reply) */

/* What a client's memory is for (the runtime checks task and bulk pointers against it). */
#define CHI_MEM_TASK   1u
#define CHI_MEM_BUFFER 2u

typedef struct chi_reg_msg {
    uint32_t magic;
    uint32_t type;
    uint32_t abi_major;
    uint32_t abi_minor;
    uint32_t layout;
    int32_t pid;
    uint32_t kind;
    uint32_t cls;
    uint64_t count;
    uint64_t bytes;
    uint64_t offs[CHI_REG_MAX_OFFS];
} chi_reg_msg_t;

typedef struct chi_reg_reply {
    uint32_t magic;
    int32_t status;            /* 0 or -errno / -CHI_E* */
    uint64_t client_id;
    uint64_t area_off;
    uint32_t slot;
    uint32_t count;
    uint64_t bytes;
    uint64_t offs[CHI_REG_MAX_OFFS];
    char message[256];
} chi_reg_reply_t;

#endif
