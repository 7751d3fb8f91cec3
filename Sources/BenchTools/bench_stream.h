/* The wire's bandwidth, for the bench programs that report a transfer beside it: a loopback
 * TCP stream between two threads of this process. */
#ifndef CHI_BENCH_STREAM_H
#define CHI_BENCH_STREAM_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BENCH_STREAM_PIECE (1u << 20)

static void *bench_stream_sink(void *arg) {
    int fd = accept(*(int *)arg, NULL, NULL);
    char *buf = malloc(BENCH_STREAM_PIECE);
    if (fd >= 0 && buf != NULL)
        while (read(fd, buf, BENCH_STREAM_PIECE) > 0) {
        }
    if (fd >= 0) close(fd);
    free(buf);
    return NULL;
}

/* Streams `bytes` over loopback TCP in BENCH_STREAM_PIECE writes; returns MB/s, or 0 if the
 * sockets cannot be set up. */
static double bench_tcp_stream_mbps(uint64_t bytes) {
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 1) < 0 ||
        getsockname(ls, (struct sockaddr *)&a, &len) < 0) {
        if (ls >= 0) close(ls);
        return 0;
    }
    pthread_t th;
    pthread_create(&th, NULL, bench_stream_sink, &ls);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char *buf = calloc(1, BENCH_STREAM_PIECE);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t sent = 0;
    if (buf != NULL && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        while (sent < bytes) {
            ssize_t n = write(fd, buf, BENCH_STREAM_PIECE);
            if (n <= 0) break;
            sent += (uint64_t)n;
        }
    }
    close(fd);
    pthread_join(th, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    close(ls);
    free(buf);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    return sent < bytes || s <= 0 ? 0 : (double)sent / 1e6 / s;
}

#endif
