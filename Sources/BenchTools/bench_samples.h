/* Sorted latency samples shared by the bench programs: percentiles, and the samples
 * themselves for `chimaera bench`, which merges several runs before taking percentiles. */
#ifndef CHI_BENCH_SAMPLES_H
#define CHI_BENCH_SAMPLES_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array: the smallest value with at least q of the
 * samples at or below it. */
static uint64_t percentile(const uint64_t *v, size_t n, double q) {
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return v[rank - 1];
}

/* Prints a sorted array as one line, "samples V:COUNT V:COUNT ...": clock readings are
 * coarse, so a run's samples take few distinct values. */
static void print_samples(const uint64_t *v, size_t n) {
    fputs("samples", stdout);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && v[j] == v[i]) j++;
        printf(" %" PRIu64 ":%zu", v[i], j - i);
        i = j;
    }
    putchar('\n');
}

#endif
