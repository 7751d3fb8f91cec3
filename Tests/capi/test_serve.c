/* chi_runtime_serve, chi_config_resolve, chi_segment_remove, chi_runtime_stop_node and
 * chi_version_string: a forked child runs a runtime in its own process (as `chimaera start`
 * does), reports "OK" on its notify pipe, a client attaches and stops it; a bad config is
 * refused by resolve and serve alike and leaves no segment. Needs no daemon. */
#include <sys/wait.h>

#include "test_common.h"

static char segment[64], conf_path[128], bad_conf[128], shm[160];

static void cleanup(void) { /* async-signal-safe: the watchdog calls it */
    if (shm[0]) unlink(shm);
    if (conf_path[0]) unlink(conf_path);
    if (bad_conf[0]) unlink(bad_conf);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    T_ASSERT(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

int main(void) {
    char buf[4096], want[128];
    chi_serve_opts_t o;
    int fds[2], status, rc;
    pid_t pid;
    ssize_t n;

    t_watchdog("test_serve", 60);
    snprintf(segment, sizeof segment, "capi_serve_%d", (int)getpid());
    snprintf(shm, sizeof shm, "/dev/shm/chimaera_%s", segment);
    snprintf(conf_path, sizeof conf_path, "/tmp/chi_test_serve_%d.yaml", (int)getpid());
    snprintf(bad_conf, sizeof bad_conf, "/tmp/chi_test_serve_bad_%d.yaml", (int)getpid());
    atexit(cleanup);
    write_file(conf_path, "runtime:\n  shm_size: 64M\n");
    write_file(bad_conf, "runtime:\n  no_such_knob: 1\n");

    T_ASSERT(chi_version_string() != NULL && strcmp(chi_version_string(), CHI_VERSION_STRING) == 0,
             "chi_version_string() is not %s", CHI_VERSION_STRING);
    T_EQ_RC(chi_runtime_stop_node(NULL, 2), -EINVAL);
    T_EQ_RC(chi_segment_remove(NULL), -EINVAL);
    T_EQ_RC(chi_segment_remove(segment), 0);

    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.notify_fd = -1;
    o.segment = segment;
    o.config_path = bad_conf;
    T_EQ_RC(chi_config_resolve(&o, buf, sizeof buf), -CHI_ECONFIG);
    T_ASSERT(strstr(chi_last_error(), "no_such_knob") != NULL, "the error does not name the key: %s",
             chi_last_error());
    T_EQ_RC(chi_runtime_serve(&o), -CHI_ECONFIG);
    T_ASSERT(access(shm, F_OK) != 0, "a refused serve left %s", shm);

    o.config_path = conf_path;
    rc = chi_config_resolve(&o, buf, sizeof buf);
    T_ASSERT(rc > 0, "chi_config_resolve: %d %s", rc, chi_last_error());
    snprintf(want, sizeof want, "\"segment\":\"%s\"", segment);
    T_ASSERT(strstr(buf, want) != NULL && strstr(buf, "\"pid\":0") != NULL, "resolved: %s", buf);
    T_EQ_RC(chi_config_resolve(&o, buf, 4), -ERANGE);

    T_ASSERT(pipe(fds) == 0, "pipe");
    fflush(NULL);
    pid = fork();
    T_ASSERT(pid >= 0, "fork");
    if (pid == 0) {
        close(fds[0]);
        o.notify_fd = fds[1];
        _exit(chi_runtime_serve(&o) == 0 ? 0 : 3);
    }
    close(fds[1]);
    n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    T_ASSERT(n >= 2 && strncmp(buf, "OK", 2) == 0, "the serving child said %.*s", (int)(n > 0 ? n : 0), buf);

    /* Resolve now names the serving pid; removing a served segment is refused. */
    o.notify_fd = -1;
    T_ASSERT(chi_config_resolve(&o, buf, sizeof buf) > 0, "resolve: %s", chi_last_error());
    snprintf(want, sizeof want, "\"pid\":%d", (int)pid);
    T_ASSERT(strstr(buf, want) != NULL, "resolve does not name the serving pid %d: %s", (int)pid, buf);
    T_EQ_RC(chi_segment_remove(segment), -EBUSY);
    /* A second serve on the same segment is refused while the first serves. */
    T_ASSERT(chi_runtime_serve(&o) < 0 && strstr(chi_last_error(), "already served") != NULL,
             "a second serve on a served segment: %s", chi_last_error());

    {
        chi_client_opts_t co;
        chi_client_t *c = NULL;
        memset(&co, 0, sizeof co);
        co.size = sizeof co;
        co.mode = CHI_MODE_ATTACH;
        co.segment = segment;
        co.connect_timeout_ms = 5000;
        T_OK(chi_client_init(&co, &c));
        T_OK(chi_runtime_stop(c));
        T_OK(chi_client_finalize(c));
    }
    T_ASSERT(waitpid(pid, &status, 0) == pid, "waitpid");
    T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the serving child exited with status 0x%x", status);
    T_ASSERT(access(shm, F_OK) != 0, "the stopped runtime left %s", shm);
    return T_EXIT_PASS;
}
