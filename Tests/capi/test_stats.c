/* chi_runtime_stats: one well-formed JSON object naming workers and pools (and the pool this
 * test created), NUL-terminated, its length returned; -ERANGE when the buffer is too small. */
#include "test_common.h"

/* A structural check: brackets balance outside strings, strings close, one top-level
 * object. Not a full JSON parser, but it catches truncation and concatenation. */
static const char *json_problem(const char *s) {
    char stack[256];
    int depth = 0, in_str = 0, closed_top = 0;
    for (; *s; s++) {
        if (in_str) {
            if (*s == '\\' && s[1]) s++;
            else if (*s == '"') in_str = 0;
            continue;
        }
        if (closed_top && *s != ' ' && *s != '\n' && *s != '\t' && *s != '\r')
            return "text after the top-level object";
        if (*s == '"') in_str = 1;
        else if (*s == '{' || *s == '[') {
            if (depth == (int)sizeof stack) return "nested too deep";
            stack[depth++] = *s;
        } else if (*s == '}' || *s == ']') {
            if (depth == 0 || stack[depth - 1] != (*s == '}' ? '{' : '[')) return "unbalanced";
            if (--depth == 0) closed_top = 1;
        } else if (depth == 0 && *s != ' ' && *s != '\n' && *s != '\t' && *s != '\r')
            return "not an object";
    }
    if (in_str) return "unterminated string";
    if (!closed_top) return "unterminated object";
    return NULL;
}

int main(void) {
    static char buf[1 << 20];
    char small[4], pool_dec[32];
    chi_client_t *c;
    uint64_t pool;
    const char *why;
    int len, i;

    t_watchdog("test_stats", 30);
    c = t_attach();
    pool = t_sm_pool(c, "stats_test_pool", 3);
    for (i = 0; i < 10; i++)
        T_MD_EXPECT(c, pool, chi_dq_direct_hash(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, (uint64_t)i), 0, 1);

    memset(buf, 'x', sizeof buf);
    len = T_OK(chi_runtime_stats(c, buf, sizeof buf));
    T_ASSERT(len > 2 && (size_t)len == strlen(buf), "returned %d, strlen %zu", len, strlen(buf));
    why = json_problem(buf);
    T_ASSERT(why == NULL, "stats are not one JSON object (%s): %.400s", why, buf);
    T_ASSERT(buf[0] == '{', "stats do not start with '{': %.80s", buf);
    T_ASSERT(strstr(buf, "\"workers\"") != NULL, "no \"workers\" key: %.400s", buf);
    T_ASSERT(strstr(buf, "\"pools\"") != NULL, "no \"pools\" key: %.400s", buf);
    snprintf(pool_dec, sizeof pool_dec, "%llu", (unsigned long long)pool);
    T_ASSERT(strstr(buf, "stats_test_pool") != NULL || strstr(buf, pool_dec) != NULL,
             "the pool stats_test_pool (id %s) is not listed: %.400s", pool_dec, buf);
    printf("stats (%d bytes): %.300s%s\n", len, buf, len > 300 ? " ..." : "");

    memset(small, 'y', sizeof small);
    T_EQ_RC(chi_runtime_stats(c, small, sizeof small), -ERANGE);
    T_EQ_RC(chi_runtime_stats(c, buf, 0), -ERANGE);
    T_OK(chi_client_finalize(c));
    puts("test_stats: ok");
    return T_EXIT_PASS;
}
