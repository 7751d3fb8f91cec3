/* test_lane_moves: lanes move between workers under load, and nothing is lost, run twice or
 * reordered. 4 client threads stream chi_test_seq tasks (2 streams each, a window of 32 in
 * flight) for SECONDS while the policy chi_test_worch_pingpong moves every lane to the next
 * worker every 2 ms; halfway the policy is switched (worch_load_balance, then back), as
 * `chimaera worch set` does. Every task must complete once with rc 0 and report that its
 * stream's previous task was the one sent before it; the module's counts must match. Also:
 * an unknown policy is refused naming the directories searched, and the statistics show the
 * moves and each lane's worker. Needs the test modules on CHI_MODULE_PATH. */
#include <pthread.h>

#include "test_common.h"

#define THREADS 4
#define STREAMS_PER_THREAD 2
#define WINDOW 32
#define CONTAINERS 2

typedef struct seq_task {
    chi_task_t hdr;
    uint32_t stream;
    uint32_t pad;
    uint64_t seq;
    uint64_t prev;
} seq_task_t;

typedef struct stats_task {
    chi_task_t hdr;
    uint64_t tasks;
    uint64_t disorder;
} stats_task_t;

static chi_client_t *c;
static uint64_t pool;
static volatile int stop;
static uint64_t sent[THREADS], bad[THREADS];

static void *stream_main(void *arg) {
    int th = (int)(intptr_t)arg;
    seq_task_t *win[WINDOW] = {0};
    uint64_t next[STREAMS_PER_THREAD] = {0};
    int head = 0, n = 0;
    while (!stop || n > 0) {
        if (!stop && n < WINDOW) {
            int k = (int)(sent[th] % STREAMS_PER_THREAD);
            uint32_t stream = (uint32_t)(th * STREAMS_PER_THREAD + k);
            chi_domain_query_t dq = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, stream % CONTAINERS);
            chi_task_t *t;
            T_OK(chi_task_new(c, pool, 10, sizeof(seq_task_t), &dq, &t));
            seq_task_t *s = (seq_task_t *)t;
            s->stream = stream;
            s->seq = ++next[k];
            T_OK(chi_task_submit(c, t));
            win[(head + n) % WINDOW] = s;
            n++;
            sent[th]++;
            continue;
        }
        seq_task_t *s = win[head];
        T_OK(chi_task_wait(c, &s->hdr, T_WAIT_NS));
        T_ASSERT(s->hdr.rc == 0, "a Seq task failed: rc %d", s->hdr.rc);
        if (s->prev != s->seq - 1) {
            if (bad[th]++ < 5)
                fprintf(stderr, "stream %u: task %llu started after task %llu\n", s->stream,
                        (unsigned long long)s->seq, (unsigned long long)s->prev);
        }
        T_OK(chi_task_del(c, &s->hdr));
        head = (head + 1) % WINDOW;
        n--;
    }
    return NULL;
}

static long long count_json(const char *json, const char *key) {
    long long total = 0;
    size_t klen = strlen(key);
    for (const char *p = strstr(json, key); p; p = strstr(p + klen, key)) total += atoll(p + klen);
    return total;
}

int main(int argc, char **argv) {
    int seconds = argc > 1 ? atoi(argv[1]) : 5;
    static char stats[1 << 20];
    t_watchdog("test_lane_moves", (unsigned)seconds + 60);
    c = t_attach();
    T_OK(chi_module_register(c, "chi_test_seq"));
    chi_pool_create_opts_t o = {.size = sizeof o, .module = "chi_test_seq", .name = "lane_moves",
                                .containers_per_node = CONTAINERS};
    T_OK(chi_pool_create(c, &o, &pool));

    T_EQ_RC(chi_runtime_set_worch(c, "no_such_policy_xyz"), -CHI_ENOMODULE);
    T_ASSERT(strstr(chi_last_error(), "no_such_policy_xyz") != NULL, "the error does not name the module: %s",
             chi_last_error());
    T_EQ_RC(chi_runtime_set_worch(c, "small_message"), -EINVAL); /* not a work orchestrator */
    T_OK(chi_runtime_set_worch(c, "chi_test_worch_pingpong"));

    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) T_ASSERT(pthread_create(&th[i], NULL, stream_main, (void *)(intptr_t)i) == 0, "thread");
    t_sleep_ms(seconds * 1000 / 2);
    T_OK(chi_runtime_set_worch(c, "worch_load_balance"));
    t_sleep_ms(200);
    T_OK(chi_runtime_set_worch(c, "chi_test_worch_pingpong"));
    t_sleep_ms(seconds * 1000 / 2);
    T_OK(chi_runtime_stats(c, stats, sizeof stats));
    long long moved = count_json(stats, "\"lanes_adopted\":");
    stop = 1;
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);

    uint64_t total = 0, disorder = 0, nbad = 0;
    for (int i = 0; i < THREADS; i++) {
        total += sent[i];
        nbad += bad[i];
    }
    for (uint32_t k = 0; k < CONTAINERS; k++) {
        chi_domain_query_t dq = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, k);
        chi_task_t *t;
        T_OK(chi_task_new(c, pool, 11, sizeof(stats_task_t), &dq, &t));
        T_OK(chi_task_call(c, t, T_WAIT_NS));
        disorder += ((stats_task_t *)t)->disorder;
        total -= ((stats_task_t *)t)->tasks;
        T_OK(chi_task_del(c, t));
    }
    printf("test_lane_moves: %llu tasks sent, %llu lane moves done; tasks the module did not see "
           "exactly once: %lld; out of order (client/module): %llu/%llu\n",
           (unsigned long long)(sent[0] + sent[1] + sent[2] + sent[3]), (unsigned long long)moved,
           (long long)total, (unsigned long long)nbad, (unsigned long long)disorder);
    T_ASSERT(moved >= 20, "only %lld lane moves happened", moved);
    T_ASSERT(total == 0, "the module ran %lld tasks more (or fewer, if negative) than were sent", -(long long)total);
    T_ASSERT(nbad == 0 && disorder == 0, "tasks started out of order");
    /* The statistics say where each lane is now. */
    T_ASSERT(strstr(stats, "\"moves\":") && strstr(stats, "\"worker\":"), "no lane placement in the statistics");
    T_OK(chi_runtime_set_worch(c, "worch_load_balance"));
    T_OK(chi_client_finalize(c));
    puts("test_lane_moves: ok");
    return T_EXIT_PASS;
}
