// Fibers: a stack-pointer switch in assembly. Only callee-saved state is saved: rbx, rbp,
// r12-r15, MXCSR and the x87 control word (SysV ABI); everything else is caller-saved at the
// call to chi_fiber_switch. swapcontext would cost two sigprocmask system calls per switch.
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "chi_shim.h"

#define CHI_GUARD_SIZE (64u * 1024u) /* larger than any frame: no stack probes are emitted */

/* Under AddressSanitizer every switch is announced (__sanitizer_start/finish_switch_fiber):
 * otherwise ASan takes a fiber's stack for an overflow of the thread's, and its fake stacks
 * (detect_stack_use_after_return) mix frames of different fibers, which gives false reports.
 * The assembly switch is then chi_fiber_switch_raw, wrapped by a C chi_fiber_switch. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHI_FIBER_ASAN 1
#endif
#endif
#if !defined(CHI_FIBER_ASAN) && defined(__SANITIZE_ADDRESS__)
#define CHI_FIBER_ASAN 1
#endif

#ifdef CHI_FIBER_ASAN
#include <sanitizer/common_interface_defs.h>
#define CHI_SWITCH_SYM "chi_fiber_switch_raw"
#else
#define CHI_SWITCH_SYM "chi_fiber_switch"
#endif

int chi_fiber_stack_alloc(chi_fiber_stack_t *st, size_t size) {
    size_t total = size + CHI_GUARD_SIZE;
    void *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) return -errno;
    if (mprotect(p, CHI_GUARD_SIZE, PROT_NONE) != 0) {
        int e = errno;
        munmap(p, total);
        return -e;
    }
    st->base = p;
    st->size = total;
    return 0;
}

void chi_fiber_stack_free(chi_fiber_stack_t *st) {
    if (st->base) munmap(st->base, st->size);
    st->base = NULL;
    st->size = 0;
}

#if defined(__x86_64__)

void chi_fiber_trampoline(void);

__asm__(
    ".text\n"
    ".globl " CHI_SWITCH_SYM "\n"
    ".hidden " CHI_SWITCH_SYM "\n"
    ".type " CHI_SWITCH_SYM ",@function\n"
    CHI_SWITCH_SYM ":\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    subq $16, %rsp\n"
    "    stmxcsr 8(%rsp)\n"
    "    fnstcw 12(%rsp)\n"
    "    movq %rsp, (%rdi)\n"
    "    movq (%rsi), %rsp\n"
    "    ldmxcsr 8(%rsp)\n"
    "    fldcw 12(%rsp)\n"
    "    addq $16, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    ret\n"
    ".size " CHI_SWITCH_SYM ", .-" CHI_SWITCH_SYM "\n"
    ".globl chi_fiber_trampoline\n"
    ".hidden chi_fiber_trampoline\n"
    ".type chi_fiber_trampoline,@function\n"
    "chi_fiber_trampoline:\n"
    "    movq %r12, %rdi\n"
    "    callq *%r13\n"
    "    ud2\n"
    ".size chi_fiber_trampoline, .-chi_fiber_trampoline\n");

#ifdef CHI_FIBER_ASAN
void chi_fiber_switch_raw(chi_fiber_ctx_t *from, chi_fiber_ctx_t *to);

/* The context this thread is leaving; the one resumed records that context's stack, which
 * is how the worker's own context (the thread's stack) learns its bounds. Fibers never leave
 * their thread, so a thread-local is exact. */
static __thread chi_fiber_ctx_t *chi_switching_from;

static void chi_fiber_landed(void *fake_stack) {
    const void *bottom;
    size_t size;
    __sanitizer_finish_switch_fiber(fake_stack, &bottom, &size);
    chi_switching_from->stack_bottom = bottom;
    chi_switching_from->stack_size = size;
}

void chi_fiber_switch(chi_fiber_ctx_t *from, chi_fiber_ctx_t *to) {
    chi_switching_from = from;
    __sanitizer_start_switch_fiber(&from->fake_stack, to->stack_bottom, to->stack_size);
    chi_fiber_switch_raw(from, to);
    chi_fiber_landed(from->fake_stack);
}

/* A new fiber's first frame: finish the switch that started it, then run its function. */
static void chi_fiber_asan_entry(void *p) {
    chi_fiber_ctx_t *ctx = p;
    chi_fiber_landed(NULL);
    ctx->entry(ctx->arg);
}
#endif

void chi_fiber_init(chi_fiber_ctx_t *ctx, chi_fiber_stack_t *st, void (*fn)(void *), void *arg) {
    uintptr_t top = ((uintptr_t)st->base + st->size) & ~(uintptr_t)15;
    ctx->stack_bottom = (char *)st->base + CHI_GUARD_SIZE;
    ctx->stack_size = st->size - CHI_GUARD_SIZE;
    ctx->fake_stack = NULL;
    ctx->entry = fn;
    ctx->arg = arg;
#ifdef CHI_FIBER_ASAN
    arg = ctx;
    fn = chi_fiber_asan_entry;
#endif
    /* Frame, from the saved sp upward: [mxcsr/fpucw 16 bytes] r15 r14 r13 r12 rbx rbp ret.
     * `ret` pops the trampoline's address, leaving rsp 16-aligned for its call. */
    uint64_t *sp = (uint64_t *)(top - 72);
    memset(sp, 0, 72);
    uint32_t mxcsr;
    uint16_t fpucw;
    __asm__ __volatile__("stmxcsr %0" : "=m"(mxcsr));
    __asm__ __volatile__("fnstcw %0" : "=m"(fpucw));
    memcpy((char *)sp + 8, &mxcsr, 4);
    memcpy((char *)sp + 12, &fpucw, 2);
    sp[2] = 0;                       /* r15 */
    sp[3] = 0;                       /* r14 */
    sp[4] = (uint64_t)(uintptr_t)fn; /* r13 */
    sp[5] = (uint64_t)(uintptr_t)arg;/* r12 */
    sp[6] = 0;                       /* rbx */
    sp[7] = 0;                       /* rbp */
    sp[8] = (uint64_t)(uintptr_t)chi_fiber_trampoline;
    ctx->sp = sp;
}

#else
#error "chi_fiber_switch is implemented for x86-64 only; add a ucontext fallback for this arch"
#endif
