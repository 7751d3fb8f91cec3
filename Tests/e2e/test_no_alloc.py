"""The task path allocates nothing: a malloc-counting preload library in the daemon sees no
heap allocation during 10,000 synchronous Md calls after warm-up (not a timing test)."""

from conftest import CC, REPO, STAGE, require_staged
from test_capi import capi_bin, compile_cmd, run_test  # noqa: F401 (capi_bin is a fixture)


def test_daemon_makes_no_heap_allocation_on_the_sync_task_path(daemons, tmp_path, capi_bin):
    require_staged()
    preload = tmp_path / "libmalloc_count.so"
    compile_cmd([CC, "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                 REPO / "Tests" / "capi" / "preload" / "malloc_count.c", "-o", preload],
                "malloc_count.c")
    counter = tmp_path / "count"
    counter.write_bytes(b"\0" * 8)
    d = daemons.new()
    d.env.update({"LD_PRELOAD": str(preload), "CHI_MALLOC_COUNT_FILE": str(counter)})
    d.start()
    env = dict(d.env)
    del env["LD_PRELOAD"]
    run_test(capi_bin("test_no_alloc"), env)
