/* The ram:// backend: the device is anonymous memory, reserved lazily by the kernel, and I/O
 * is a copy on the worker that runs the task. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "bdev_internal.h"

int bdev_ram_open(bdev_t *b) {
#if SIZE_MAX < UINT64_MAX
    if (b->size > SIZE_MAX) return -ENOMEM;
#endif
    /* MAP_NORESERVE: a large device costs only the pages written to. */
    void *p = mmap(NULL, (size_t)b->size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return -ENOMEM;
    b->mem = p;
    return 0;
}

void bdev_ram_close(bdev_t *b) {
    if (b->mem != NULL) munmap(b->mem, (size_t)b->size);
    b->mem = NULL;
}

int bdev_ram_io(bdev_t *b, bool write, void *buf, uint64_t off, uint64_t len) {
    /* The caller checked [off, off + len) lies inside the device. */
    if (write)
        memcpy(b->mem + off, buf, (size_t)len);
    else
        memcpy(buf, b->mem + off, (size_t)len);
    return 0;
}
