// Fibers: a stack-pointer switch in assembly. Only callee-saved state is saved: rbx, rbp,
// r12-r15, MXCSR and the x87 control word (SysV ABI); everything else is caller-saved at the
// call to chi_fiber_switch. swapcontext would cost two sigprocmask system calls per switch.
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "chi_shim.h"

#define CHI_GUARD_SIZE (64u * 1024u) /* larger than any frame: no stack probes are emitted */

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
    ".globl chi_fiber_switch\n"
    ".hidden chi_fiber_switch\n"
    ".type chi_fiber_switch,@function\n"
    "chi_fiber_switch:\n"
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
    ".size chi_fiber_switch, .-chi_fiber_switch\n"
    ".globl chi_fiber_trampoline\n"
    ".hidden chi_fiber_trampoline\n"
    ".type chi_fiber_trampoline,@function\n"
    "chi_fiber_trampoline:\n"
    "    movq %r12, %rdi\n"
    "    callq *%r13\n"
    "    ud2\n"
    ".size chi_fiber_trampoline, .-chi_fiber_trampoline\n");

void chi_fiber_init(chi_fiber_ctx_t *ctx, chi_fiber_stack_t *st, void (*fn)(void *), void *arg) {
    uintptr_t top = ((uintptr_t)st->base + st->size) & ~(uintptr_t)15;
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
