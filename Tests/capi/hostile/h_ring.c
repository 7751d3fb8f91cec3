/* h_ring: a client that bypasses the library. It registers over the runtime's socket by
 * hand (the layouts are in Sources/CChimaera/include/chi_shim.h, the runtime's internal
 * header) and writes raw entries into its own submission ring.
 *
 *   offsets    entries that are not tasks of this client: the segment header, the
 *              doorbells, its own rings and control area, a free span, a misaligned
 *              offset, an unknown tag, a cancel of nothing, another client's task: each is
 *              counted in bad_tasks and dropped, and nothing is written there
 *   raw_task   a task built by hand in a span it asked for: a good Md runs (ret 1); one whose
 *              size exceeds its block fails with -CHI_EBADTASK, written into its own task
 *   half_push  claims a ring cell without publishing it (a client killed mid-push) and
 *              goes: the runtime drops the ring and reclaims everything
 *   hello      connections that say nothing, say garbage, speak another ABI, or pile up
 *              unregistered: each refused, and the runtime keeps serving */
#include "hostile.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>

#include "chi_shim.h"

static char *base;          /* the segment, mapped here */
static size_t seg_size;
static chi_seg_header_t *hdr;
static int sock = -1;
static chi_reg_reply_t welcome;
static chi_client_area_t *area;

static int connect_socket(void) {
    struct sockaddr_un a;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    T_ASSERT(fd >= 0, "socket");
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", hdr->socket_path);
    T_ASSERT(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect %s: %s", a.sun_path,
             strerror(errno));
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static chi_reg_msg_t msg(uint32_t type) {
    chi_reg_msg_t m;
    memset(&m, 0, sizeof m);
    m.magic = CHI_REG_MAGIC;
    m.type = type;
    m.abi_major = CHI_ABI_MAJOR;
    m.abi_minor = CHI_ABI_MINOR;
    m.layout = CHI_SEG_LAYOUT;
    m.pid = getpid();
    return m;
}

/* Sends m on fd and reads the reply; returns the reply's status, or -EIO if none came. */
static int call(int fd, chi_reg_msg_t m, chi_reg_reply_t *r) {
    if (send(fd, &m, sizeof m, MSG_NOSIGNAL) != (ssize_t)sizeof m) return -EIO;
    ssize_t n = recv(fd, r, sizeof *r, 0);
    if (n != (ssize_t)sizeof *r || r->magic != CHI_REG_MAGIC) return -EIO;
    return r->status;
}

/* Maps the segment and registers by hand. */
static void attach_raw(void) {
    char name[128];
    struct stat st;
    snprintf(name, sizeof name, "/chimaera_%s", getenv("CHIMAERA_SEGMENT"));
    int fd = shm_open(name, O_RDWR, 0);
    T_ASSERT(fd >= 0 && fstat(fd, &st) == 0, "shm_open %s", name);
    seg_size = (size_t)st.st_size;
    base = mmap(NULL, seg_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    T_ASSERT(base != MAP_FAILED, "mmap");
    close(fd);
    hdr = (chi_seg_header_t *)base;
    T_ASSERT(hdr->layout == CHI_SEG_LAYOUT, "segment layout %u, this test knows %u", hdr->layout,
             CHI_SEG_LAYOUT);
    sock = connect_socket();
    T_OK(call(sock, msg(CHI_REG_HELLO), &welcome));
    area = (chi_client_area_t *)(base + welcome.area_off);
    printf("registered by hand: client %llu, slot %u, area at %llu, ring 0 at %llu\n",
           (unsigned long long)welcome.client_id, welcome.slot,
           (unsigned long long)welcome.area_off, (unsigned long long)area->rings_off);
}

static void detach_raw(void) {
    close(sock);
    sock = -1;
}

static chi_ring_t *ring0(void) { return (chi_ring_t *)(base + area->rings_off); }
static chi_ring_cell_t *cells(chi_ring_t *r) { return (chi_ring_cell_t *)(r + 1); }

/* Vyukov push, as the library does it; then the doorbell. */
static void push(uint64_t v) {
    chi_ring_t *r = ring0();
    for (;;) {
        uint64_t pos = __atomic_load_n(&r->enqueue_pos, __ATOMIC_RELAXED);
        chi_ring_cell_t *c = &cells(r)[pos & r->mask];
        uint64_t seq = __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE);
        if (seq == pos && __atomic_compare_exchange_n(&r->enqueue_pos, &pos, pos + 1, 0,
                                                      __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            c->value = v;
            __atomic_store_n(&c->seq, pos + 1, __ATOMIC_RELEASE);
            break;
        }
        T_ASSERT((int64_t)(seq - pos) >= 0, "our own ring is full");
    }
    chi_doorbell_t *db = (chi_doorbell_t *)(base + hdr->doorbells_off) + area->ring_worker[0];
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(&db->sleeping, __ATOMIC_RELAXED)) {
        __atomic_add_fetch(&db->seq, 1, __ATOMIC_ACQ_REL);
        syscall(SYS_futex, &db->seq, 1 /* FUTEX_WAKE */, 1, NULL, NULL, 0);
    }
}

static long long bad_tasks(void) {
    h_stats_t s;
    chi_client_t *c = h_client();
    H_CHECK(h_read_stats(c, &s));
    const char *v = h_json_member(h_json, "bad_tasks");
    long long n = v ? h_json_int(v, -1) : -1;
    H_CHECK(chi_client_finalize(c));
    return n;
}

/* A span of ours for tasks of class cls (blocks of 64 << cls bytes). */
static uint64_t task_span(uint32_t cls) {
    chi_reg_msg_t m = msg(CHI_REG_SPANS);
    chi_reg_reply_t r;
    m.kind = CHI_MEM_TASK;
    m.cls = cls;
    m.count = 1;
    T_OK(call(sock, m, &r));
    T_ASSERT(r.count == 1, "asked for one span, got %u", r.count);
    return r.offs[0];
}

static void offsets(void) {
    chi_client_t *other = h_client();
    chi_task_t *ot = h_md_task(other, H.pool, H_DQ(0), 0);
    uint64_t ot_off = (uint64_t)((char *)ot - base);
    unsigned char header_before[256], other_before[sizeof(chi_sm_md_task_t)];
    memcpy(header_before, base, sizeof header_before);
    memcpy(other_before, ot, sizeof other_before);
    long long before = bad_tasks();
    uint64_t mine = task_span(2);
    const uint64_t entries[] = {
        0, 64, hdr->doorbells_off, welcome.area_off, area->rings_off, area->returned_off,
        area->msgs_off, hdr->heap_off, mine + 8, mine + 3 /* an unknown tag */,
        hdr->heap_off | CHI_RING_CANCEL /* a cancel of nothing of ours */,
        UINT64_MAX & ~63ull, (seg_size + 4096) & ~63ull, ot_off, ot_off | CHI_RING_CANCEL,
    };
    size_t n = sizeof entries / sizeof entries[0];
    for (size_t i = 0; i < n; i++) push(entries[i]);
    long long after = before;
    for (int i = 0; i < 50 && after < before + (long long)n; i++) {
        t_sleep_ms(20);
        after = bad_tasks();
    }
    printf("offsets: %zu raw entries, bad_tasks %lld -> %lld\n", n, before, after);
    T_ASSERT(after - before == (long long)n, "%zu bad entries, bad_tasks moved by %lld", n,
             after - before);
    T_ASSERT(memcmp(header_before + 64, base + 64, sizeof header_before - 64) == 0,
             "the segment header changed");
    T_ASSERT(memcmp(other_before, ot, sizeof other_before) == 0,
             "the other client's task was written");
    /* The other client's task still works for its owner. */
    H_CHECK(chi_task_submit(other, ot));
    T_ASSERT(h_wait(other, ot, T_WAIT_NS, "the other client's Md") == 0 &&
                 ((chi_sm_md_task_t *)ot)->ret == 1, "the other client's Md failed");
    H_CHECK(chi_task_del(other, ot));
    H_CHECK(chi_client_finalize(other));
    detach_raw();
}

static int wait_done(chi_task_t *t) {
    int64_t deadline = t_now_ns() + T_WAIT_NS;
    while (__atomic_load_n(&t->done, __ATOMIC_ACQUIRE) != CHI_TASK_DONE) {
        if (t_now_ns() > deadline) h_verdict("hung", "a raw task never completed");
        t_sleep_ms(1);
    }
    return t->rc;
}

static void raw_task(void) {
    uint64_t span = task_span(2); /* 256-byte blocks */
    chi_sm_md_task_t *t = (chi_sm_md_task_t *)(base + span);
    memset(t, 0, sizeof *t);
    t->hdr.size = sizeof *t;
    t->hdr.method = CHI_SM_MD;
    t->hdr.pool_id = H.pool;
    t->hdr.dom_query = H_DQ(1);
    t->ret = -7;
    push(span);
    T_ASSERT(wait_done(&t->hdr) == 0 && t->ret == 1, "a hand-made Md: rc %d ret %d", t->hdr.rc,
             t->ret);
    chi_sm_md_task_t *big = (chi_sm_md_task_t *)(base + span + 256);
    memcpy(big, t, sizeof *t);
    big->hdr.done = 0;
    big->hdr.rc = 0;
    big->hdr.size = 100000;
    push(span + 256);
    int rc = wait_done(&big->hdr);
    printf("raw_task: a good Md gave ret %d; a 100000-byte task in a 256-byte block: rc %d\n",
           t->ret, rc);
    T_ASSERT(rc == -CHI_EBADTASK, "an oversized task: rc %d, want -CHI_EBADTASK", rc);
    detach_raw();
}

static void half_push(void) {
    chi_ring_t *r = ring0();
    uint64_t span = task_span(2);
    chi_sm_md_task_t *t = (chi_sm_md_task_t *)(base + span);
    memset(t, 0, sizeof *t);
    t->hdr.size = sizeof *t;
    t->hdr.method = CHI_SM_MD;
    t->hdr.pool_id = H.pool;
    t->hdr.dom_query = H_DQ(0);
    /* Claim the next cell and never publish it, then queue a task behind it: the runtime
     * cannot get past the cell, as with a client killed between the claim and the store. */
    __atomic_add_fetch(&r->enqueue_pos, 1, __ATOMIC_ACQ_REL);
    push(span);
    t_sleep_ms(100);
    T_ASSERT(t->hdr.done == CHI_TASK_PENDING, "a task behind an unpublished cell ran");
    /* Everyone else is served meanwhile. */
    chi_client_t *c = h_client();
    h_md_ok(c, H.pool, H_DQ(0), 0, 1, "another client, beside a stuck ring");
    H_CHECK(chi_client_finalize(c));
    detach_raw();
    puts("half_push: the stuck client went; its ring and memory go with it");
}

static void hello(void) {
    int fds[80], n = 0;
    chi_reg_reply_t r;
    /* Garbage, a short message, another ABI, a request before hello. */
    int fd = connect_socket();
    T_ASSERT(send(fd, "garbage", 7, MSG_NOSIGNAL) == 7, "send");
    T_ASSERT(recv(fd, &r, sizeof r, 0) <= 0, "garbage got a reply");
    close(fd);
    chi_reg_msg_t m = msg(CHI_REG_HELLO);
    m.abi_major = CHI_ABI_MAJOR + 1;
    fd = connect_socket();
    T_EQ_RC(call(fd, m, &r), -CHI_EABI);
    close(fd);
    fd = connect_socket();
    T_ASSERT(call(fd, msg(CHI_REG_SPANS), &r) == -EIO, "a span request before hello was served");
    close(fd);
    /* Connections that never say hello: at most 64 wait, each for 2 s. */
    for (n = 0; n < 80; n++) fds[n] = connect_socket();
    chi_client_t *c = h_client();
    h_md_ok(c, H.pool, H_DQ(0), 0, 1, "a client beside 80 silent connections");
    H_CHECK(chi_client_finalize(c));
    t_sleep_ms(2500);
    int closed = 0;
    for (int i = 0; i < n; i++) {
        char b;
        if (recv(fds[i], &b, 1, MSG_DONTWAIT) == 0) closed++;
        close(fds[i]);
    }
    printf("hello: %d of %d silent connections were closed by the runtime\n", closed, n);
    T_ASSERT(closed == n, "the runtime left %d silent connections open", n - closed);
}

int main(int argc, char **argv) {
    static const char *const modes[] = {"offsets", "raw_task", "half_push", "hello", NULL};
    const char *mode = h_mode(argc, argv, modes);
    h_begin("h_ring", 60);
    attach_raw();
    if (!strcmp(mode, "offsets")) offsets();
    else if (!strcmp(mode, "raw_task")) raw_task();
    else if (!strcmp(mode, "half_push")) half_push();
    else {
        detach_raw();
        hello();
    }
    h_end(0);
    return T_EXIT_PASS;
}
