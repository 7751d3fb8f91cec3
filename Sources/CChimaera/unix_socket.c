// The registration socket: a SOCK_SEQPACKET Unix socket (one message per send, and a hang-up
// the runtime sees when a client process dies, however it dies). SO_PEERCRED tells the
// runtime who connected, as the kernel knows it.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "chi_shim.h"

static int fill_addr(struct sockaddr_un *a, const char *path) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof a->sun_path) return -ENAMETOOLONG;
    memcpy(a->sun_path, path, n);
    return 0;
}

int chi_unix_listen(const char *path, int backlog) {
    struct sockaddr_un a;
    int rc = fill_addr(&a, path);
    if (rc < 0) return rc;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    unlink(path); /* a stale socket of a runtime that died; the caller checked none serves */
    /* Only this user may connect: the socket is made 0600 before anyone can reach it. */
    mode_t old = umask(0177);
    rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    umask(old);
    if (rc != 0 || listen(fd, backlog) != 0) {
        rc = -errno;
        close(fd);
        unlink(path);
        return rc;
    }
    return fd;
}

int chi_unix_accept(int lfd) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

int chi_unix_connect(const char *path, int timeout_ms) {
    struct sockaddr_un a;
    int rc = fill_addr(&a, path);
    if (rc < 0) return rc;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

int chi_peer_cred(int fd, int32_t *pid, uint32_t *uid) {
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) return -errno;
    *pid = cr.pid;
    *uid = cr.uid;
    return 0;
}

ssize_t chi_sock_send(int fd, const void *buf, size_t len) {
    ssize_t n;
    do n = send(fd, buf, len, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

ssize_t chi_sock_recv(int fd, void *buf, size_t len, int nonblock) {
    ssize_t n;
    do n = recv(fd, buf, len, nonblock ? MSG_DONTWAIT : 0); while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

/* ---- epoll, for the registry's one thread ---- */

int chi_epoll_create(void) {
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int chi_epoll_add(int ep, int fd) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.fd = fd;
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

int chi_epoll_del(int ep, int fd) {
    return epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL) == 0 ? 0 : -errno;
}

int chi_epoll_wait(int ep, int32_t *fds, uint32_t *hangup, int max, int timeout_ms) {
    struct epoll_event evs[64];
    if (max > 64) max = 64;
    int n = epoll_wait(ep, evs, max, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        fds[i] = evs[i].data.fd;
        hangup[i] = (evs[i].events & (EPOLLHUP | EPOLLERR)) != 0;
    }
    return n;
}

int chi_eventfd(void) {
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}
