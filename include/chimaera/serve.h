/* Running a runtime in the calling process, and what a launcher needs to know before it
 * does (the `chimaera` tool is built on these; so can any other launcher be). */
#ifndef CHIMAERA_SERVE_H
#define CHIMAERA_SERVE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Parameters of chi_runtime_serve and chi_config_resolve. Zero-initialise, set size. */
typedef struct chi_serve_opts {
    uint32_t size;            /* sizeof(chi_serve_opts_t) */
    int32_t notify_fd;        /* >= 0: receives "OK\n" once serving, or the error text; then
                                 closed. Set -1 for none (0 is a valid descriptor). */
    const char *segment;      /* NULL: $CHIMAERA_SEGMENT, then the config's runtime.name */
    const char *config_path;  /* NULL: $CHIMAERA_CONF, else defaults */
    const char *hostfile;     /* NULL: the config's cluster hosts */
    const char *pid_file;     /* NULL: none; else written once serving, removed at stop */
    uint32_t node_id;         /* 0: the config's cluster.node_id */
    uint32_t reserved;
} chi_serve_opts_t;

/** Runs a runtime in the calling thread until it is stopped (chi_runtime_stop from a
 *  client, SIGINT or SIGTERM). Blocks; returns 0 once stopped, or a negative code with
 *  chi_last_error() set if it could not start (a failed start removes its segment). At
 *  most one runtime per process. Strings are borrowed for the call. */
int chi_runtime_serve(const chi_serve_opts_t *opts);

/** Resolves opts as chi_runtime_serve would, without starting anything: writes a JSON
 *  object {"segment", "segment_path", "pid" (of the runtime serving it, 0: none), "port",
 *  "node_id", "key_set", "hosts": [{"host", "port", "local"}]} into buf (NUL-terminated).
 *  Returns its length, -ERANGE if cap is too small, or a negative code with chi_last_error()
 *  naming the bad key (CHI_ECONFIG) or value. Does not block beyond name resolution. */
int chi_config_resolve(const chi_serve_opts_t *opts, char *buf, size_t cap);

/** Removes the segment (and socket) `segment` names if no live runtime serves it. Returns
 *  1 if there was one, 0 if there was none, -EBUSY if a runtime serves it. */
int chi_segment_remove(const char *segment);

/** Makes a cluster CA and a certificate and key per host of `hostfile` in `dir` (for
 *  cluster.tls: {ca, cert, key}); writes the paths written, one a line, into buf[0..cap).
 *  Returns 0 or -errno (chi_last_error says why). */
int chi_cluster_keygen(const char *dir, const char *hostfile, char *buf, size_t cap);

/** Version of the library as text ("0.1.0"); static storage. */
const char *chi_version_string(void);

#ifdef __cplusplus
}
#endif
#endif
