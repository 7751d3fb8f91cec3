// Process helpers that need C: async-signal-safe stop handlers, thread pinning, and the path
// of the library itself (to find the built-in modules next to it).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "chi_shim.h"

static uint32_t *stop_flag;

static void on_stop_signal(int sig) {
    (void)sig;
    if (stop_flag) {
        __atomic_store_n(stop_flag, 1u, __ATOMIC_RELEASE);
        chi_futex_wake(stop_flag, 1 << 30); /* a raw syscall: async-signal-safe */
    }
}

int chi_install_stop_signals(uint32_t *flag) {
    stop_flag = flag;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0) return -errno;
    if (sigaction(SIGINT, &sa, NULL) != 0) return -errno;
    chi_ignore_write_signals();
    return 0;
}

void chi_ignore_write_signals(void) {
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
}

int chi_pin_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int r = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    return -r;
}

void chi_thread_name(const char *name) { (void)pthread_setname_np(pthread_self(), name); }

int chi_unpin_thread(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    for (long i = 0; i < n && i < CPU_SETSIZE; i++) CPU_SET(i, &set);
    return -pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

const char *chi_self_path(void) {
    Dl_info info;
    if (dladdr((void *)&chi_self_path, &info) && info.dli_fname) return info.dli_fname;
    return "";
}

int chi_current_cpu(void) { return sched_getcpu(); }

int chi_leave_cpus(uint32_t cpus) {
    cpu_set_t mine, other;
    if (pthread_getaffinity_np(pthread_self(), sizeof mine, &mine) != 0) return -1;
    CPU_ZERO(&other);
    int n = 0;
    for (int i = 0; i < CPU_SETSIZE; i++) {
        if (CPU_ISSET(i, &mine) && (i >= 32 || !(cpus & (1u << i)))) {
            CPU_SET(i, &other);
            n++;
        }
    }
    if (n == 0) return -1;
    /* Narrowing the mask moves the thread off its CPU at once; restoring it leaves the
     * thread where it landed. */
    if (pthread_setaffinity_np(pthread_self(), sizeof other, &other) != 0) return -1;
    pthread_setaffinity_np(pthread_self(), sizeof mine, &mine);
    return 0;
}
