"""Work orchestration (issue 14): lanes move between workers under load with nothing lost, run
twice or reordered, for several worker layouts (more workers than cores, high-latency only);
the load-balance policy's decisions on made-up loads; and the built-in policies load by name."""

import json
import os
import sys
import time

import pytest

from conftest import CC, REPO, STAGE, client_env, require_staged, run
from test_capi import CFLAGS, capi_bin, compile_cmd, link_flags, run_test  # noqa: F401

MODS = REPO / "Tests" / "capi" / "mods"


@pytest.fixture(scope="module")
def test_mods(tmp_path_factory):
    """Builds chi_test_seq and chi_test_worch_pingpong; returns their directory."""
    require_staged()
    d = tmp_path_factory.mktemp("worch_mods")
    for src, name in (("mod_seq.c", "chi_test_seq"), ("mod_worch_pingpong.c", "chi_test_worch_pingpong")):
        compile_cmd([CC, "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                     "-fvisibility=hidden", f"-I{STAGE}/include", MODS / src,
                     "-o", d / f"lib{name}.so"], src)
    return d


LAYOUTS = {
    "2ll_1hl": {"low_latency_workers": 2, "high_latency_workers": 1},
    "4_workers": {"low_latency_workers": 2, "high_latency_workers": 2},
    "8_workers": {"low_latency_workers": 4, "high_latency_workers": 4, "pin_workers": False},
    "hl_only": {"low_latency_workers": 0, "high_latency_workers": 3},
}


@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
def test_lanes_move_under_load_with_nothing_lost_or_reordered(layout, test_mods, capi_bin, daemons):
    d = daemons.start(config={"runtime": {"shm_size": "256M", "module_path": [str(test_mods)],
                                          **LAYOUTS[layout]}})
    env = client_env(d.segment, CHI_MODULE_PATH=f"{STAGE}/lib/chimaera:{test_mods}")
    run_test(capi_bin("test_lane_moves"), env, timeout=120, args=["3"])
    rc, out = d.status("--json")
    assert rc == 0, out
    st = json.loads(out[out.index("{"):])
    lanes = [l for p in st["pools"] if p["name"] == "lane_moves" for l in p["lanes"]]
    assert lanes and all(0 <= l["worker"] < len(st["workers"]) for l in lanes)
    assert sum(l["moves"] for l in lanes) > 0, lanes
    assert st["orchestrator"]["policy"] == "worch_load_balance"


def test_the_load_balance_policy_decides_from_loads_alone(tmp_path):
    """Tests/capi/test_worch_policy.c drives the policy with made-up snapshots and a manual
    clock (no runtime, no threads): skew, a burst, idleness, a stalled worker, no ping-pong."""
    require_staged()
    out = tmp_path / "test_worch_policy"
    objs = []
    for mod, entry in (("worch_load_balance", "chi_lb_entry"), ("worch_queue_round_robin", "chi_rr_entry")):
        obj = tmp_path / f"{mod}.o"
        compile_cmd([CC, *CFLAGS, "-c", f"-Dchi_module_entry={entry}", f"-I{STAGE}/include",
                     REPO / "Sources" / "Mods" / mod / f"{mod}.c", "-o", obj], mod)
        objs.append(obj)
    compile_cmd([CC, *CFLAGS, f"-I{STAGE}/include", REPO / "Tests" / "capi" / "test_worch_policy.c",
                 *objs, "-o", out, *link_flags()], "test_worch_policy")
    run_test(out, {})


def test_ten_thousand_pool_cycles_leave_the_runtime_able_to_create_pools(capi_bin, daemons):
    d = daemons.start(config={"runtime": {"shm_size": "256M"}})
    run_test(capi_bin("test_pool_cycles"), client_env(d.segment), timeout=240, args=["4000"])


def test_a_policy_written_as_a_user_would_is_built_with_the_kit_and_moves_lanes(tmp_path, daemons):
    """examples/worch_spread (the policy of docs/modules.md) built with find_package(Chimaera)
    and add_chimaera_module, named in runtime.work_orchestrator: under a load on two lanes of
    one worker it moves one of them, and `chimaera worch` names it."""
    require_staged()
    build, inst = tmp_path / "build", tmp_path / "inst"
    for cmd in (["cmake", "-S", REPO / "examples" / "worch_spread", "-B", build,
                 f"-DCMAKE_PREFIX_PATH={STAGE}"],
                ["cmake", "--build", build],
                ["cmake", "--install", build, "--prefix", inst]):
        compile_cmd(cmd, "examples/worch_spread")
    mods = inst / "lib" / "chimaera"
    assert (mods / "libexample_worch_spread.so").exists()
    d = daemons.start(config={"runtime": {"shm_size": "256M", "module_path": [str(mods)],
                                          "low_latency_workers": 2, "high_latency_workers": 0,
                                          "work_orchestrator": "example_worch_spread"}})
    rc, out = run([d.bin, "worch", "--segment", d.segment], env=d.env, timeout=30)
    assert rc == 0 and "example_worch_spread" in out, out

    sys.path.insert(0, str(REPO / "bindings" / "python"))
    os.environ["CHIMAERA_LIB"] = str(STAGE / "lib" / "libchimaera.so.1")
    import chimaera
    from chimaera.dq import SUBDOMAIN_GLOBAL_CONTAINERS as SUB_GLOBAL_CONTAINERS, dq_direct_id

    def placement(st):
        return {l["container"]: l["worker"] for p in st["pools"] if p["name"] == "spread"
                for l in p["lanes"]}

    c = chimaera.Client(segment=d.segment, mode="attach", connect_timeout_ms=5000)
    try:
        pool = c.create_pool("small_message", "spread", containers_per_node=4)
        where = placement(c.stats())
        assert len(where) == 4 and len(set(where.values())) == 2, where
        hot = [k for k in sorted(where) if where[k] == where[min(where)]][:2]
        assert len(hot) == 2, where
        moved, deadline = None, time.monotonic() + 20
        while moved is None and time.monotonic() < deadline:
            for _ in range(200):
                for k in hot:
                    assert pool.md(dq=dq_direct_id(SUB_GLOBAL_CONTAINERS, k), timeout=10) == 1
            now = placement(c.stats())
            if now[hot[0]] != now[hot[1]]:
                moved = now
        assert moved is not None, f"the hot lanes {hot} stayed together: {placement(c.stats())}"
        st = c.stats()
        assert st["orchestrator"]["policy"] == "example_worch_spread", st["orchestrator"]
        assert st["orchestrator"]["moves"] >= 1, st["orchestrator"]
    finally:
        c.close()
