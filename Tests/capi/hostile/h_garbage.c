/* Issue 12, cases 5 and 6, fresh tasks: header fields a buggy client fills with garbage
 * before submitting. Each task must complete, with an error code where the header is wrong:
 *   pool       pool id 0, 2^40, UINT64_MAX: -CHI_ENOPOOL
 *   method     method 9999 and UINT32_MAX: -CHI_ENOMETHOD
 *   subdomain  sub-domain 0, 99 and UINT32_MAX: an error
 *   range      ranges of count UINT64_MAX (from 0, 1 and UINT64_MAX): an error, or the
 *              broadcast answered by the pool's containers (ret 1 or 2)
 *   dq_flags   query flags 0, UINT32_MAX, two scopes at once: an error, or ret 1 or 2
 *   size       a task smaller than Md's (from chi_task_new, and a size field lowered after),
 *              smaller than the header, larger than its block: -CHI_EBADTASK
 *   flags      flags with the bits above CHI_TASK_USER_FLAGS set, and an odd prio: any status
 */
#include "hostile.h"

static chi_client_t *c;

/* Submits t, waits (bounded) and returns its rc; Md's ret in *ret. Deletes t. */
static int run(chi_task_t *t, int32_t *ret) {
    H_CHECK(chi_task_submit(c, t));
    int rc = h_wait(c, t, 5 * T_SEC_NS, "a task with a garbage header");
    if (ret) *ret = ((chi_sm_md_task_t *)t)->ret;
    H_CHECK(chi_task_del(c, t));
    return rc;
}

static void expect(chi_task_t *t, int want, const char *what) {
    int rc = run(t, NULL);
    if (rc != want)
        h_verdict("wrong", "%s: rc %d (%s), want %d (%s)", what, rc, chi_strerror(rc), want,
                  chi_strerror(want));
    printf("%-44s %s\n", what, chi_strerror(rc));
}

/* An error, or a correct answer from some of the pool's 2 containers. */
static void error_or_answer(chi_domain_query_t dq, const char *what) {
    int32_t ret = 0;
    int rc = run(h_md_task(c, H.pool, dq, 0), &ret);
    if (rc >= 0 && (ret < 1 || ret > 2))
        h_verdict("wrong", "%s: rc %d but ret %d (the pool has 2 containers)", what, rc, ret);
    printf("%-44s rc %d (%s)%s\n", what, rc, chi_strerror(rc), rc >= 0 ? ", answered" : "");
}

static chi_task_t *md(void) { return h_md_task(c, H.pool, H_DQ(0), 0); }

int main(int argc, char **argv) {
    static const char *const modes[] = {"pool", "method", "subdomain", "range", "dq_flags",
                                        "size", "flags", NULL};
    const char *mode = h_mode(argc, argv, modes);
    chi_domain_query_t dq = H_DQ(0);
    chi_task_t *t;
    int32_t ret = 0;

    h_begin("h_garbage", 50);
    c = h_client();
    if (strcmp(mode, "pool") == 0) {
        expect(h_md_task(c, 0, dq, 0), -CHI_ENOPOOL, "pool id 0");
        expect(h_md_task(c, 1ull << 40, dq, 0), -CHI_ENOPOOL, "pool id 2^40");
        expect(h_md_task(c, UINT64_MAX, dq, 0), -CHI_ENOPOOL, "pool id UINT64_MAX");
    } else if (strcmp(mode, "method") == 0) {
        (t = md())->method = 9999;
        expect(t, -CHI_ENOMETHOD, "method 9999");
        (t = md())->method = UINT32_MAX;
        expect(t, -CHI_ENOMETHOD, "method UINT32_MAX");
    } else if (strcmp(mode, "subdomain") == 0) {
        static const uint32_t subs[] = {0, 99, UINT32_MAX};
        for (int i = 0; i < 3; i++) {
            t = h_md_task(c, H.pool, chi_dq_direct_id(subs[i], 0), 0);
            int rc = run(t, NULL);
            T_ASSERT(rc < 0, "sub-domain %u: rc %d, want an error", subs[i], rc);
            printf("sub-domain %-33u %s\n", subs[i], chi_strerror(rc));
        }
    } else if (strcmp(mode, "range") == 0) {
        error_or_answer(chi_dq_range(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0, UINT64_MAX, CHI_DQ_BCAST),
                        "range [0, +UINT64_MAX) broadcast");
        error_or_answer(chi_dq_range(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 1, UINT64_MAX, CHI_DQ_BCAST),
                        "range [1, +UINT64_MAX) broadcast");
        error_or_answer(chi_dq_range(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, UINT64_MAX, 2,
                                     CHI_DQ_BCAST), "range [UINT64_MAX, +2) broadcast");
        error_or_answer(chi_dq_range(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0, UINT64_MAX,
                                     CHI_DQ_REP_UNTIL_SUCCESS), "[0, +UINT64_MAX) until success");
        error_or_answer(chi_dq_range(CHI_SUBDOMAIN_LOCAL_CONTAINERS, 0, UINT64_MAX,
                                     CHI_DQ_CHOOSE_ONE), "local [0, +UINT64_MAX) choose one");
    } else if (strcmp(mode, "dq_flags") == 0) {
        error_or_answer(chi_dq_make(0, CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0, 1), "query flags 0");
        error_or_answer(chi_dq_make(UINT32_MAX, CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0, 1),
                        "query flags UINT32_MAX");
        error_or_answer(chi_dq_make(CHI_DQ_DIRECT | CHI_DQ_GLOBAL | CHI_DQ_ID | CHI_DQ_RANGE,
                                    CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0, 1), "two scopes");
        error_or_answer(chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, UINT64_MAX),
                        "direct id UINT64_MAX");
    } else if (strcmp(mode, "size") == 0) {
        H_CHECK(chi_task_new(c, H.pool, CHI_SM_MD, sizeof(chi_sm_md_task_t) - 4, &dq, &t));
        expect(t, -CHI_EBADTASK, "a task 4 bytes smaller than Md's");
        (t = md())->size = sizeof(chi_task_t);
        expect(t, -CHI_EBADTASK, "size field = the header's size");
        (t = md())->size = 100;
        expect(t, -CHI_EBADTASK, "size field 100 (< the header)");
        (t = md())->size = 0;
        expect(t, -CHI_EBADTASK, "size field 0");
        (t = md())->size = 1u << 20;
        expect(t, -CHI_EBADTASK, "size field 1 MiB (> its block)");
        (t = md())->size = UINT32_MAX;
        expect(t, -CHI_EBADTASK, "size field UINT32_MAX");
    } else {
        /* Those bits are the library's own: it may refuse the submit (then the bits go back so
         * the task can be deleted), or mask them. */
        (t = md())->flags |= ~CHI_TASK_USER_FLAGS;
        int rc = chi_task_submit(c, t);
        if (rc < 0) {
            printf("flags above CHI_TASK_USER_FLAGS: submit refused: %s\n", chi_strerror(rc));
            t->flags &= CHI_TASK_USER_FLAGS;
            H_CHECK(chi_task_del(c, t));
        } else {
            rc = h_wait(c, t, 5 * T_SEC_NS, "a task with the library's flag bits set");
            T_ASSERT(rc < 0 || ((chi_sm_md_task_t *)t)->ret == 1, "flags 0x%x: rc %d ret %d",
                     ~CHI_TASK_USER_FLAGS, rc, ((chi_sm_md_task_t *)t)->ret);
            printf("flags above CHI_TASK_USER_FLAGS: rc %d (%s)\n", rc, chi_strerror(rc));
            H_CHECK(chi_task_del(c, t));
        }
        (t = md())->prio = UINT32_MAX;
        rc = run(t, &ret);
        T_ASSERT(rc < 0 || ret == 1, "prio UINT32_MAX: rc %d ret %d", rc, ret);
        printf("prio UINT32_MAX: rc %d (%s)\n", rc, chi_strerror(rc));
    }
    h_md_ok(c, H.pool, H_DQ(1), 1, 1, "Md after the garbage");
    H_CHECK(chi_client_finalize(c));
    h_end(0);
    return T_EXIT_PASS;
}
