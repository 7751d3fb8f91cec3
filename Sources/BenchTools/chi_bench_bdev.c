/* chi_bench_bdev: the bdev module through a running runtime beside fio (io_uring engine,
 * O_DIRECT) on the same file, in the same run: 4 KiB random read and write and 1 MiB
 * sequential read and write, each at the same queue depth.
 *
 *   chi_bench_bdev --segment NAME [--seconds S] [--rounds R] [--dir DIR] [--size BYTES]
 *                  [--depth N] [--only write,read,randwrite,randread] [--no-fio] [--verbose]
 *
 * Ours: one client thread keeps `depth` Write or Read tasks in flight on a bdev pool whose
 * device is a file in DIR (default /tmp), polling their completion words (it sleeps only
 * after a millisecond without a completion). fio runs one job on that same file while ours
 * is idle, so both see the same blocks of the same file system.
 *
 * Each phase gives each side S seconds (default 5) in R alternating slices (default: the even
 * number at or above S; order fio, ours | ours, fio | ...), so that a device whose speed
 * drifts during the run (a virtual disk on a shared host does, by tens of percent from one
 * second to the next) weighs on both alike; a rate is the mean over slices. The device is
 * written whole before anything is timed, and written data is made unique per write as fio
 * does by default (scramble_buffers).
 *
 * Prints ONE JSON line: randread_4k_iops, randwrite_4k_iops, seqread_1m_mbps,
 * seqwrite_1m_mbps, the same with a fio_ prefix, and ratio_* (ours / fio's). MB/s are
 * 10^6 bytes per second. Progress goes to stderr, with the mean size of the requests the
 * disk under DIR served during each side's slices (from /proc/diskstats, so other I/O on
 * that disk counts too): the block layer merges adjacent requests, and a disk that is
 * faster with larger ones rewards whichever side lets it merge. The file is removed at the
 * end. Exits 1 if fio is missing or anything fails. --only, --no-fio and --verbose are for
 * profiling.
 *
 * --contended runs two CPU hogs (processes that spin, as `yes > /dev/null` does) for the
 * whole measurement, beside ours and fio's slices alike, and suffixes every key with
 * _contended: how I/O holds up when the CPUs are busy with other work. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chimaera/bdev.h"
#include "chimaera/chimaera.h"

#define WAIT_NS 30000000000ll
#define MAX_DEPTH 256
#define SPIN_NS 1000000ull /* how long the client polls for completions before sleeping */

extern char **environ;

typedef struct opts {
    const char *segment;
    const char *dir;
    double seconds;
    uint32_t rounds;
    uint64_t size;
    uint32_t depth;
    const char *only; /* run only the phase whose fio --rw is this (profiling) */
    bool contended;   /* two CPU hogs run meanwhile */
    bool no_fio;      /* skip fio (profiling) */
    bool verbose;     /* each slice's figures on stderr */
} opts_t;

/* Requests and bytes of one direction, as /proc/diskstats counts them. */
typedef struct disk_use {
    uint64_t requests, bytes;
} disk_use_t;

typedef struct phase {
    const char *name; /* fio's --rw */
    const char *key;  /* our JSON key, without fio_ / ratio_ */
    bool write;
    bool random;
    uint64_t bs;
    double ours, fio; /* IOPS for 4 KiB, MB/s for 1 MiB: sums over slices, then means */
    disk_use_t ours_disk, fio_disk; /* requests and bytes the disk served, over all slices */
} phase_t;

static char g_dir[4096];     /* the temporary directory holding the device file */
static char g_fio_file[4200];
static uint64_t g_pool;
static chi_client_t *g_client;
static unsigned g_disk_major, g_disk_minor; /* the device holding g_dir; major 0: none */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void cleanup(void) {
    if (g_client != NULL && g_pool != 0) chi_pool_destroy(g_client, g_pool);
    if (g_dir[0]) {
        /* The pool's file is temporary, but a runtime that died would leave it. */
        if (g_fio_file[0]) unlink(g_fio_file);
        rmdir(g_dir);
    }
}

static void die(const char *what, int rc) {
    fprintf(stderr, "chi_bench_bdev: %s: %s (%s)\n", what, chi_strerror(rc), chi_last_error());
    cleanup();
    exit(1);
}

/* ---- the disk ---------------------------------------------------------------------------- */

/* The counters of the disk holding g_dir, for reads or writes. False when /proc/diskstats
 * does not list it (a file system without one block device: tmpfs, btrfs). */
static bool disk_sample(bool write, disk_use_t *out) {
    if (g_disk_major == 0) return false;
    FILE *f = fopen("/proc/diskstats", "r");
    if (f == NULL) return false;
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof line, f) != NULL) {
        unsigned maj, min;
        unsigned long long rd, rd_merged, rd_sectors, rd_ms, wr, wr_merged, wr_sectors;
        if (sscanf(line, "%u %u %*s %llu %llu %llu %llu %llu %llu %llu", &maj, &min, &rd,
                   &rd_merged, &rd_sectors, &rd_ms, &wr, &wr_merged, &wr_sectors) != 9 ||
            maj != g_disk_major || min != g_disk_minor)
            continue;
        /* Sectors here are always 512 bytes, whatever the device's block size. */
        out->requests = write ? wr : rd;
        out->bytes = 512 * (write ? wr_sectors : rd_sectors);
        found = true;
    }
    fclose(f);
    return found;
}

/* Adds to *sum what the disk did since *before (from disk_sample). */
static void disk_add(bool write, const disk_use_t *before, disk_use_t *sum) {
    disk_use_t now;
    if (!disk_sample(write, &now)) return;
    sum->requests += now.requests - before->requests;
    sum->bytes += now.bytes - before->bytes;
}

/* Mean request size in KiB, 0 when none. */
static double disk_kib(const disk_use_t *u) {
    return u->requests ? (double)u->bytes / 1024.0 / (double)u->requests : 0;
}

/* ---- fio ------------------------------------------------------------------------------- */

/* Runs argv with stdout into out_path (stderr inherited). Returns the exit status or -1. */
static int run_to_file(char *const argv[], const char *out_path) {
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int st = 0;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return -1;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    for (size_t got; s != NULL && (got = fread(s + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (n + 1 == cap) s = realloc(s, cap *= 2);
    }
    fclose(f);
    if (s != NULL) s[n] = 0;
    return s;
}

/* The number after `"key" :` in the section that starts at `"section" : {`. Just enough
 * JSON for fio's output: sections and keys are unique where we look. */
static bool json_number(const char *text, const char *section, const char *key, double *out) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\" : {", section);
    const char *s = strstr(text, pat);
    if (s == NULL) return false;
    snprintf(pat, sizeof pat, "\"%s\" : ", key);
    const char *k = strstr(s, pat);
    if (k == NULL) return false;
    char *end;
    *out = strtod(k + strlen(pat), &end);
    return end != k + strlen(pat);
}

static void fio_phase(const opts_t *o, phase_t *p, double secs) {
    char bs[32], size[32], runtime[32], iodepth[32], file[4300], out[4300];
    snprintf(bs, sizeof bs, "--bs=%llu", (unsigned long long)p->bs);
    snprintf(size, sizeof size, "--size=%llu", (unsigned long long)o->size);
    snprintf(runtime, sizeof runtime, "--runtime=%.0fms", secs * 1e3);
    snprintf(iodepth, sizeof iodepth, "--iodepth=%u", o->depth);
    snprintf(file, sizeof file, "--filename=%s", g_fio_file);
    snprintf(out, sizeof out, "%s/fio.json", g_dir);
    char rw[32];
    snprintf(rw, sizeof rw, "--rw=%s", p->name);
    char *argv[] = {"fio", "--name=chi_bench_bdev", file, "--ioengine=io_uring", "--direct=1",
                    iodepth, bs, rw, size, runtime, "--time_based", "--output-format=json",
                    NULL};
    int st = run_to_file(argv, out);
    char *text = read_all(out);
    unlink(out);
    double v;
    const char *section = p->write ? "write" : "read";
    const char *key = p->bs >= (1u << 20) ? "bw_bytes" : "iops";
    if (st != 0 || text == NULL || !json_number(text, section, key, &v)) {
        fprintf(stderr, "chi_bench_bdev: fio %s failed (status %d)\n", p->name, st);
        free(text);
        cleanup();
        exit(1);
    }
    free(text);
    p->fio += p->bs >= (1u << 20) ? v / 1e6 : v;
}

/* ---- ours ------------------------------------------------------------------------------ */

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint64_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Makes every write's data unique, as fio's default scramble_buffers does, so that a device
 * that deduplicates or compresses sees the same kind of data from both: 8 bytes at each
 * 512-byte boundary. */
static void scramble(unsigned char *buf, uint64_t bs, uint64_t offset) {
    uint64_t v = next_rand() ^ offset;
    for (uint64_t k = 0; k < bs; k += 512) {
        v += 0x9E3779B97F4A7C15ull;
        memcpy(buf + k, &v, sizeof v);
    }
}

/* Writes the whole device once, 1 MiB at a time with depth writes in flight, so that the
 * file is fully written (no unwritten extents) before anything is timed. */
static void fill_device(const opts_t *o, chi_bdev_block_t dev, chi_task_t **t,
                        unsigned char **buf) {
    const uint64_t bs = 1u << 20, n = dev.size / bs;
    int rc;
    for (uint64_t done = 0; done < n;) {
        uint32_t batch = (uint32_t)(n - done < o->depth ? n - done : o->depth);
        for (uint32_t i = 0; i < batch; i++) {
            chi_bdev_block_t b = dev;
            b.offset = dev.offset + (done + i) * bs;
            b.size = bs;
            scramble(buf[i], bs, b.offset);
            if ((rc = chi_bdev_io_prep(g_client, t[i], CHI_BDEV_WRITE, buf[i], bs, b, 0)) < 0 ||
                (rc = chi_task_submit(g_client, t[i])) < 0)
                die("fill", rc);
        }
        for (uint32_t i = 0; i < batch; i++) {
            if ((rc = chi_task_wait(g_client, t[i], WAIT_NS)) < 0) die("fill wait", rc);
            if (t[i]->rc < 0) die("fill write", t[i]->rc);
        }
        done += batch;
    }
}

/* Keeps depth tasks in flight for the phase's time; counts those completed within it. */
static void our_phase(const opts_t *o, phase_t *p, double slice, chi_bdev_block_t dev,
                      chi_task_t **t, unsigned char **buf) {
    uint64_t blocks = dev.size / p->bs, seq = 0, done = 0;
    uint32_t method = p->write ? CHI_BDEV_WRITE : CHI_BDEV_READ;
    uint32_t depth = o->depth;
    uint64_t submitted_at[MAX_DEPTH];
    int rc;

    for (uint32_t i = 0; i < depth; i++) {
        chi_bdev_block_t b = dev;
        uint64_t n = p->random ? next_rand() % blocks : seq++ % blocks;
        b.offset = dev.offset + n * p->bs;
        b.size = p->bs;
        if (p->write) scramble(buf[i], p->bs, b.offset);
        if ((rc = chi_bdev_io_prep(g_client, t[i], method, buf[i], p->bs, b, 0)) < 0)
            die("prep", rc);
    }
    uint64_t start = now_ns(), end = start + (uint64_t)(slice * 1e9);
    for (uint32_t i = 0; i < depth; i++) {
        if ((rc = chi_task_submit(g_client, t[i])) < 0) die("submit", rc);
        submitted_at[i] = start;
    }
    uint32_t oldest = 0;
    uint64_t last_done = start;
    bool stopping = false;
    for (uint32_t live = depth; live > 0;) {
        bool any = false;
        for (uint32_t i = 0; i < depth; i++) {
            if (submitted_at[i] == 0 || !chi_task_is_done(t[i])) continue;
            any = true;
            if (t[i]->rc < 0) die(p->write ? "Write" : "Read", t[i]->rc);
            uint64_t now = now_ns();
            if (now <= end) done++;
            if (now >= end) stopping = true;
            if (stopping) {
                submitted_at[i] = 0;
                live--;
                continue;
            }
            chi_bdev_io_task_t *io = (chi_bdev_io_task_t *)t[i];
            uint64_t n = p->random ? next_rand() % blocks : seq++ % blocks;
            io->block.offset = dev.offset + n * p->bs;
            if (p->write) scramble(buf[i], p->bs, io->block.offset);
            if ((rc = chi_task_submit(g_client, t[i])) < 0) die("submit", rc);
            submitted_at[i] = now;
        }
        uint64_t now = now_ns();
        if (any) last_done = now;
        if (any || live == 0) continue;
        /* Nothing done. Poll on while completions are due (an I/O takes well under a
         * millisecond): sleeping costs a wake-up per batch of completions, tens of
         * microseconds on a virtual machine, each a gap in the queue depth. After a quiet
         * millisecond, sleep on the task in flight longest. */
        if (now - last_done < SPIN_NS) {
            __builtin_ia32_pause();
            continue;
        }
        for (uint32_t k = 0; k < depth; k++) {
            uint32_t i = (oldest + k) % depth;
            if (submitted_at[i] != 0 && (submitted_at[oldest] == 0 ||
                                         submitted_at[i] < submitted_at[oldest]))
                oldest = i;
        }
        if (submitted_at[oldest] != 0) {
            rc = chi_task_wait(g_client, t[oldest], WAIT_NS);
            if (rc < 0) die("wait", rc);
        }
    }
    double secs = (double)(end - start) / 1e9;
    p->ours += p->bs >= (1u << 20) ? (double)done * (double)p->bs / secs / 1e6
                                   : (double)done / secs;
}

/* ---- main ------------------------------------------------------------------------------- */

/* Whether `name` is an item of the comma-separated `list`. */
static bool in_list(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; p != NULL; p = strchr(p, ',')) {
        if (*p == ',') p++;
        if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == 0)) return true;
    }
    return false;
}

static void usage(void) {
    fprintf(stderr, "usage: chi_bench_bdev --segment NAME [--seconds S] [--rounds R] "
                    "[--dir DIR] [--size BYTES] [--depth N] [--only RW,...] [--no-fio] "
                    "[--verbose] [--contended]\n");
    exit(2);
}

int main(int argc, char **argv) {
    opts_t o = {NULL, "/tmp", 5, 0, 1ull << 30, 32, NULL, false, false, false};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--contended") == 0) {
            o.contended = true;
            continue;
        }
        if (strcmp(argv[i], "--no-fio") == 0 || strcmp(argv[i], "--verbose") == 0) {
            if (argv[i][2] == 'n') o.no_fio = true;
            else o.verbose = true;
            continue;
        }
        if (i + 1 >= argc) usage();
        if (strcmp(argv[i], "--segment") == 0) o.segment = argv[++i];
        else if (strcmp(argv[i], "--seconds") == 0) o.seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0) o.rounds = (uint32_t)atoi(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0) o.dir = argv[++i];
        else if (strcmp(argv[i], "--size") == 0) o.size = strtoull(argv[++i], NULL, 0);
        else if (strcmp(argv[i], "--depth") == 0) o.depth = (uint32_t)atoi(argv[++i]);
        else if (strcmp(argv[i], "--only") == 0) o.only = argv[++i];
        else usage();
    }
    /* An even number of slices by default: which side goes first in a slice pair matters
     * on a drifting device, so each goes first equally often. */
    if (o.rounds == 0) o.rounds = 2 * (uint32_t)((o.seconds + 1.999) / 2);
    if (o.segment == NULL || o.seconds <= 0 || o.depth == 0 || o.depth > MAX_DEPTH ||
        o.size < (4u << 20) || (o.size & (o.size - 1)) != 0)
        usage();

    char *ver[] = {"fio", "--version", NULL};
    if (run_to_file(ver, "/dev/null") != 0) {
        fprintf(stderr, "chi_bench_bdev: fio is not installed (make deps installs it)\n");
        return 1;
    }
    snprintf(g_dir, sizeof g_dir, "%s/chi_bench_bdev_XXXXXX", o.dir);
    if (mkdtemp(g_dir) == NULL) {
        fprintf(stderr, "chi_bench_bdev: cannot make a directory in %s: %s\n", o.dir,
                strerror(errno));
        return 1;
    }
    /* fio runs on the device's own file (container 0's), between our slices: the same
     * blocks of the same file system, laid out the same way. On a virtual disk, two files
     * of a run differ in speed by more than the difference being measured. */
    snprintf(g_fio_file, sizeof g_fio_file, "%s/dev.0", g_dir);
    struct stat dst;
    if (stat(g_dir, &dst) == 0) {
        g_disk_major = major(dst.st_dev);
        g_disk_minor = minor(dst.st_dev);
    }

    chi_client_opts_t co;
    memset(&co, 0, sizeof co);
    co.size = sizeof co;
    co.mode = CHI_MODE_ATTACH;
    co.segment = o.segment;
    co.connect_timeout_ms = 5000;
    int rc = chi_client_init(&co, &g_client);
    if (rc < 0) die("attach", rc);
    char url[4200], name[64];
    snprintf(url, sizeof url, "fs://%s/dev", g_dir);
    if (strlen(url) >= CHI_BDEV_URL_MAX) {
        fprintf(stderr, "chi_bench_bdev: %s is too long for a bdev URL\n", url);
        cleanup();
        return 1;
    }
    snprintf(name, sizeof name, "bench_bdev_%d", (int)getpid());
    chi_bdev_create_params_t params = chi_bdev_params(url, o.size, CHI_BDEV_CREATE_TEMPORARY);
    if ((rc = chi_bdev_create(g_client, name, 1, &params, &g_pool)) < 0) die("create", rc);
    chi_bdev_block_t dev;
    uint32_t n = 0;
    chi_domain_query_t dq = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0);
    rc = chi_bdev_allocate(g_client, g_pool, dq, o.size, &dev, 1, &n, WAIT_NS);
    if (rc < 0 || n != 1) die("allocate the device", rc < 0 ? rc : -ENOSPC);

    chi_task_t *t[MAX_DEPTH];
    unsigned char *buf[MAX_DEPTH];
    for (uint32_t i = 0; i < o.depth; i++) {
        if ((rc = chi_task_new(g_client, g_pool, CHI_BDEV_WRITE, sizeof(chi_bdev_io_task_t),
                               &dq, &t[i])) < 0)
            die("task", rc);
        if ((rc = chi_buffer_alloc(g_client, 1u << 20, (void **)&buf[i])) < 0) die("buffer", rc);
        for (size_t k = 0; k < (1u << 20); k += 8) {
            uint64_t v = next_rand();
            memcpy(buf[i] + k, &v, 8);
        }
    }

    /* The device is written whole before anything is timed (no unwritten extents left);
     * then writes come first, so that the read phases read written data. */
    fill_device(&o, dev, t, buf);
    pid_t hogs[2] = {0, 0};
    if (o.contended) {
        for (int h = 0; h < 2; h++) {
            hogs[h] = fork();
            if (hogs[h] == 0) {
                for (volatile uint64_t x = 0;; x++) {
                }
            }
        }
    }
    phase_t ph[] = {
        {.name = "write", .key = "seqwrite_1m_mbps", .write = true, .bs = 1u << 20},
        {.name = "read", .key = "seqread_1m_mbps", .bs = 1u << 20},
        {.name = "randwrite", .key = "randwrite_4k_iops", .write = true, .random = true, .bs = 4096},
        {.name = "randread", .key = "randread_4k_iops", .random = true, .bs = 4096},
    };
    const size_t np = sizeof ph / sizeof ph[0];
    for (size_t i = 0; i < np; i++) {
        if (o.only != NULL && !in_list(o.only, ph[i].name)) continue;
        double slice = o.seconds / o.rounds;
        for (uint32_t r = 0; r < o.rounds; r++) {
            /* fio, ours | ours, fio | fio, ours ... */
            double f0 = ph[i].fio, o0 = ph[i].ours;
            disk_use_t d0;
            bool w = ph[i].write, sampled;
            if (r % 2 == 0 && !o.no_fio) {
                sampled = disk_sample(w, &d0);
                fio_phase(&o, &ph[i], slice);
                if (sampled) disk_add(w, &d0, &ph[i].fio_disk);
            }
            sampled = disk_sample(w, &d0);
            our_phase(&o, &ph[i], slice, dev, t, buf);
            if (sampled) disk_add(w, &d0, &ph[i].ours_disk);
            if (r % 2 == 1 && !o.no_fio) {
                sampled = disk_sample(w, &d0);
                fio_phase(&o, &ph[i], slice);
                if (sampled) disk_add(w, &d0, &ph[i].fio_disk);
            }
            if (o.verbose)
                fprintf(stderr, "chi_bench_bdev:   %s slice %u: ours %.1f fio %.1f\n", ph[i].name,
                        r, ph[i].ours - o0, ph[i].fio - f0);
        }
        ph[i].ours /= o.rounds;
        ph[i].fio /= o.rounds;
        fprintf(stderr,
                "chi_bench_bdev: %-18s ours %12.1f  fio %12.1f  ratio %.3f  "
                "disk requests KiB: ours %.1f fio %.1f\n",
                ph[i].key, ph[i].ours, ph[i].fio, ph[i].fio > 0 ? ph[i].ours / ph[i].fio : 0,
                disk_kib(&ph[i].ours_disk), disk_kib(&ph[i].fio_disk));
    }
    for (int h = 0; h < 2; h++) {
        if (hogs[h] > 0) {
            kill(hogs[h], SIGKILL);
            waitpid(hogs[h], NULL, 0);
        }
    }
    for (uint32_t i = 0; i < o.depth; i++) {
        chi_task_del(g_client, t[i]);
        chi_buffer_free(g_client, buf[i]);
    }
    cleanup();
    chi_client_finalize(g_client);

    const char *sfx = o.contended ? "_contended" : "";
    printf("{");
    for (size_t i = 0; i < np; i++) printf("\"%s%s\": %.1f, ", ph[i].key, sfx, ph[i].ours);
    for (size_t i = 0; i < np; i++) printf("\"fio_%s%s\": %.1f, ", ph[i].key, sfx, ph[i].fio);
    for (size_t i = 0; i < np; i++) {
        /* ratio_randread_4k from randread_4k_iops: the key less its unit. */
        char k[64];
        snprintf(k, sizeof k, "%s", ph[i].key);
        *strrchr(k, '_') = 0;
        printf("\"ratio_%s%s\": %.3f%s", k, sfx, ph[i].fio > 0 ? ph[i].ours / ph[i].fio : 0,
               i + 1 < np ? ", " : "");
    }
    printf("}\n");
    return 0;
}
