"""Hot module upgrade (chi_module_upgrade, `chimaera module upgrade`) against a real daemon:
small_message upgraded under load from 4 client threads with nothing lost, and refused upgrades
(a failing hook, an older version, another ABI, no hook, a file that is not the module, a
writable file) that leave the old version serving with its state."""

import json
import os
import stat
import sys

import pytest

from conftest import CC, REPO, STAGE, client_env, require_staged, run
from test_capi import capi_bin, run_test  # noqa: F401 (capi_bin is a fixture)

sys.path.insert(0, str(REPO / "bindings" / "python"))
os.environ["CHIMAERA_LIB"] = str(STAGE / "lib" / "libchimaera.so.1")
import chimaera  # noqa: E402
from chimaera import ChimaeraError  # noqa: E402

SM_SOURCE = REPO / "Sources" / "Mods" / "small_message" / "small_message.c"
CONFIG = {"runtime": {"shm_size": "256M", "low_latency_workers": 2, "high_latency_workers": 1}}


def build_sm(out_dir, name, *defines):
    """A build of small_message with -D defines (SM_VERSION, SM_MD_RET, SM_UPGRADE_FAIL...)."""
    out = out_dir / f"{name}.so"
    rc, text = run([CC, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                    "-fvisibility=hidden", f"-I{STAGE}/include", *[f"-D{d}" for d in defines],
                    str(SM_SOURCE), "-o", str(out), f"-L{STAGE}/lib", "-lchimaera"], timeout=120)
    assert rc == 0, text
    out.chmod(0o755)
    return out


def md(pool, container):
    return pool.call("Md", depth=0, dq=chimaera.dq_direct_id(chimaera.SUBDOMAIN_GLOBAL_CONTAINERS, container)).ret


def served(pool, containers):
    return [pool.call("Served", dq=chimaera.dq_direct_id(chimaera.SUBDOMAIN_GLOBAL_CONTAINERS, c)).served
            for c in range(containers)]


def test_upgrade_under_load_loses_nothing_and_carries_state(daemons, tmp_path, capi_bin):
    require_staged()
    v2 = build_sm(tmp_path, "libsm_v2", "SM_VERSION=2", "SM_MD_RET=2")
    d = daemons.start(config=CONFIG)
    out = run_test(capi_bin("test_upgrade_load"), client_env(d.segment), args=[str(v2)])
    print(out)
    log = d.log()
    assert "upgraded from version 1 to 2" in log, log


def test_refused_upgrades_leave_the_old_version_serving(daemons, tmp_path):
    require_staged()
    d = daemons.start(config=CONFIG)
    with chimaera.Client(segment=d.segment, mode="attach") as c:
        pool = c.create_pool("small_message", "up_refused", containers_per_node=2)
        for i in range(10):
            assert md(pool, i % 2) == 1
        assert served(pool, 2) == [5, 5]

        def refused(path, code, **kw):
            with pytest.raises(ChimaeraError) as e:
                c.upgrade_module("small_message", str(path), **kw)
            assert e.value.code == code, e.value
            # The old code and its state serve on; the counters still count.
            before = served(pool, 2)
            assert md(pool, 0) == 1 and md(pool, 1) == 1
            assert served(pool, 2) == [before[0] + 1, before[1] + 1]
            return e.value

        failing = build_sm(tmp_path, "libsm_fail", "SM_VERSION=2", "SM_MD_RET=2", "SM_UPGRADE_FAIL")
        e = refused(failing, -71)  # the hook's -EPROTO
        assert "upgrade of container" in e.message
        refused(build_sm(tmp_path, "libsm_abi", "SM_VERSION=2", "SM_ABI_MAJOR=9"), -chimaera.errors.EABI)
        refused(build_sm(tmp_path, "libsm_same", "SM_VERSION=1", "SM_MD_RET=2"), -chimaera.errors.EVERSION)
        nohook = build_sm(tmp_path, "libsm_nohook", "SM_VERSION=2", "SM_MD_RET=2", "SM_NO_UPGRADE")
        refused(nohook, -95)  # ENOTSUP without recreate
        refused(STAGE / "lib" / "chimaera" / "libbdev.so", -22)  # another module's file
        refused(tmp_path / "missing.so", -chimaera.errors.ENOMODULE)
        writable = build_sm(tmp_path, "libsm_w", "SM_VERSION=2", "SM_MD_RET=2")
        writable.chmod(0o777)
        refused(writable, -1)  # EPERM: anyone could have written the code

        # Accepted: version 3, then version 2 only with force, state carried each time.
        v3 = build_sm(tmp_path, "libsm_v3", "SM_VERSION=3", "SM_MD_RET=3")
        before = served(pool, 2)
        rep = c.upgrade_module("small_message", str(v3))
        assert rep["old_version"] == 1 and rep["new_version"] == 3 and rep["containers"] == 2, rep
        assert all(p["pause_us"] > 0 for p in rep["pauses"]), rep
        assert served(pool, 2) == before
        assert md(pool, 0) == 3
        v2 = build_sm(tmp_path, "libsm_v2", "SM_VERSION=2", "SM_MD_RET=2")
        refused_v2 = pytest.raises(ChimaeraError)
        with refused_v2 as e:
            c.upgrade_module("small_message", str(v2))
        assert e.value.code == -chimaera.errors.EVERSION
        assert md(pool, 0) == 3
        rep = c.upgrade_module("small_message", str(v2), force=True)
        assert rep["old_version"] == 3 and rep["new_version"] == 2, rep
        assert md(pool, 1) == 2

        # No hook: only a fresh create, which loses the counters.
        rep = c.upgrade_module("small_message", str(nohook), force=True, recreate=True)
        assert rep["new_version"] == 2
        assert served(pool, 2) == [0, 0]
        assert md(pool, 0) == 2

        # A pool created after the upgrade gets the new code.
        p2 = c.create_pool("small_message", "up_after")
        assert md(p2, 0) == 2
        status = json.loads(d.status("--json")[1])
        mods = {m["name"]: m for m in status.get("modules", [])}
        assert mods.get("small_message", {}).get("version") == 2, status.get("modules")
        pools = {p["name"]: p for p in status["pools"]}
        assert pools["up_refused"]["module_version"] == 2
        assert [(x["container"], x["node"]) for x in pools["up_refused"]["placement"]] == [(0, 1), (1, 1)]
        rc, text = d.status()
        assert rc == 0 and "small_message version 2 from" in text and "module=small_message v2" in text, text


def test_cli_module_upgrade(daemons, tmp_path):
    require_staged()
    d = daemons.start(config=CONFIG)
    with chimaera.Client(segment=d.segment, mode="attach") as c:
        pool = c.create_pool("small_message", "up_cli")
        assert md(pool, 0) == 1
        v2 = build_sm(tmp_path, "libsm_v2", "SM_VERSION=2", "SM_MD_RET=2")
        rc, out = run([d.bin, "module", "upgrade", "small_message", "--path", str(v2),
                       "--segment", d.segment, "--json"], env=d.env, timeout=60)
        assert rc == 0, out
        rep = json.loads(out)
        assert rep["old_version"] == 1 and rep["new_version"] == 2, rep
        assert md(pool, 0) == 2
        rc, out = run([d.bin, "module", "upgrade", "small_message", "--path", str(v2),
                       "--segment", d.segment], env=d.env, timeout=60)
        assert rc != 0 and "not newer" in out, out
        rc, out = run([d.bin, "module", "upgrade", "--help"], env=d.env)
        assert rc == 0 and "--recreate" in out and "--force" in out, out


def test_bench_upgrade_reports_pauses_and_nothing_lost():
    require_staged()
    rc, out = run([STAGE / "bin" / "chimaera", "bench", "upgrade", "--json"], timeout=120)
    assert rc == 0, out
    f = json.loads(out.strip().splitlines()[-1])
    print(f)
    assert f["tasks_lost"] == 0 and f["upgrades"] == 21 and f["tasks"] > 0, f
    assert 0 < f["upgrade_pause_us_p50"] <= f["upgrade_pause_us_max"], f
    assert f["baseline_rtt_us_p50"] > 0, f


# ---- modules made by the kit (chi_make_mod), in C and in Swift --------------------------------

KIT_METHOD = "kBump:\n  id: 10\n  params:\n    served: out u64\n    version: out u32\n"
C_BUMP = """    (void)rctx;
    state->served++;
    task->served = state->served;
    task->version = CTR_ANSWER;
    return 0;"""
SWIFT_BUMP = """    state.served += 1
    task.pointee.served = state.served
    task.pointee.version = answer
    return 0
}"""


def kit_repo(tmp_path, version):
    """A repo with a C module (ctr) and a Swift one (sctr) whose Bump counts its calls in the
    container's state and answers `version`; kUpgrade on, its skeleton kept (C) or carrying the
    counter (Swift). Built with CMake; returns the directory holding both .so files."""
    from test_devkit import cmake, fill, need_cmake, tool  # noqa: F401
    need_cmake()
    root = tmp_path / f"v{version}"
    root.mkdir()
    tool("chi_make_repo", "repo", "kup", cwd=root)
    tool("chi_make_mod", "repo/ctr", cwd=root)
    tool("chi_make_mod", "repo/sctr", "--lang", "swift", cwd=root)
    repo = root / "repo"
    for m in ("ctr", "sctr"):
        y = repo / m / "include" / m / f"{m}_methods.yaml"
        y.write_text(y.read_text().replace("kUpgrade: -1", "kUpgrade: 5") + KIT_METHOD)
        mod = repo / m / "chimaera_mod.yaml"
        mod.write_text(mod.read_text().replace("version: 1", f"version: {version}"))
    tool("chi_refresh_repo", "repo", cwd=root)
    c = repo / "ctr/src/ctr_runtime.c"
    text = c.read_text()
    text = text.replace("#include <string.h>", f"#include <string.h>\n#define CTR_ANSWER {version}u")
    text = text.replace("    uint32_t id; /* the container's id in its pool */",
                        "    uint32_t id; /* the container's id in its pool */\n    uint64_t served;")
    text = text.replace("    (void)state;\n    (void)task;\n    (void)rctx;\n    return -ENOSYS;", C_BUMP)
    assert C_BUMP in text and "uint64_t served;" in text
    c.write_text(text)
    s = repo / "sctr/Sources/sctr/sctr_runtime.swift"
    text = s.read_text()
    text = text.replace("import Glibc", f"import Glibc\n\nlet answer: UInt32 = {version}")
    text = text.replace("    let id: UInt32\n", "    let id: UInt32\n    var served: UInt64 = 0\n")
    text = text.replace("    return State(id: o.id)\n",
                        "    let s = State(id: o.id)\n    s.served = o.served\n    return s\n")
    text = text.replace("    -ENOSYS\n}", SWIFT_BUMP)
    assert SWIFT_BUMP in text and "s.served = o.served" in text and "var served" in text
    s.write_text(text)
    cmake(repo, root / "build", f"-DCMAKE_PREFIX_PATH={STAGE}")
    out = root / "build" / "chimaera_modules"
    for m in ("ctr", "sctr"):
        assert (out / f"libkup_{m}.so").exists()
    return out


def bump(pool, h):
    r = pool.call("Bump", dq=chimaera.dq_direct_hash(chimaera.SUBDOMAIN_GLOBAL_CONTAINERS, h))
    return r.version, r.served


def test_kit_modules_in_c_and_swift_upgrade_under_load(daemons, tmp_path):
    require_staged()
    v1 = kit_repo(tmp_path, 1)
    v2 = kit_repo(tmp_path, 2)
    os.environ["CHI_MODULE_PATH"] = f"{v1}:{STAGE / 'lib' / 'chimaera'}"
    d = daemons.start(config={**CONFIG, "runtime": {**CONFIG["runtime"], "module_path": [str(v1)]}})
    import threading
    import time
    with chimaera.Client(segment=d.segment, mode="attach") as c:
        for mod in ("kup_ctr", "kup_sctr"):
            pool = c.create_pool(mod, f"{mod}_p", containers_per_node=2)
            assert bump(pool, 0)[0] == 1
            stop = threading.Event()
            upgraded = threading.Event()
            errors, counts = [], []

            def load(tid):
                n, last, flips, h = 0, 1, 0, tid * 1000
                try:
                    while not stop.is_set():
                        after = upgraded.is_set()
                        v, _ = bump(pool, h)
                        h += 1
                        n += 1
                        assert v in (1, 2) and v >= last, (v, last)
                        assert not after or v == 2, "submitted after the upgrade, answered 1"
                        flips += v != last
                        last = v
                        futs = [pool.call_async("Bump", dq=chimaera.dq_direct_hash(
                            chimaera.SUBDOMAIN_GLOBAL_CONTAINERS, h + i)) for i in range(4)]
                        h += 4
                        for f in futs:
                            r = f.result(timeout=30)
                            assert r.version in (1, 2)
                            n += 1
                    counts.append((n, flips))
                except Exception as e:  # noqa: BLE001 (reported by the main thread)
                    errors.append(repr(e))
            threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            time.sleep(1.0)
            rep = c.upgrade_module(mod, str(v2 / f"lib{mod}.so"))
            upgraded.set()
            time.sleep(1.0)
            stop.set()
            for t in threads:
                t.join(timeout=60)
            assert not errors, errors
            assert rep["old_version"] == 1 and rep["new_version"] == 2 and rep["containers"] == 2, rep
            total = sum(n for n, _ in counts) + 1
            assert all(f == 1 for _, f in counts), counts
            # The counters went on across the upgrade: every Bump counted exactly once.
            served = sum(bump(pool, h)[1] - 1 for h in range(2))
            assert served == total, (served, total)
            print(mod, rep["pause_us_max"], "us pause,", total, "calls")


def test_docs_show_the_upgrade_hooks_these_tests_run(tmp_path):
    """docs/modules.md: the Upgrade region the kit generates, and the code the kit test adds."""
    from test_devkit import tool
    require_staged()
    doc = (REPO / "docs" / "modules.md").read_text()
    tool("chi_make_repo", "repo", "kup", cwd=tmp_path)
    tool("chi_make_mod", "repo/ctr", cwd=tmp_path)
    y = tmp_path / "repo/ctr/include/ctr/ctr_methods.yaml"
    y.write_text(y.read_text().replace("kUpgrade: -1", "kUpgrade: 5"))
    tool("chi_refresh_repo", "repo", cwd=tmp_path)
    text = (tmp_path / "repo/ctr/src/ctr_runtime.c").read_text()
    body = text[text.index("static int Upgrade(chi_container_t *c, void *old_state, uint32_t old_version, ctr_state_t **state) {"):]
    body = body[:body.index("\n}\n") + 2]
    for snippet in (body, C_BUMP, "    uint64_t served;",
                    "    let s = State(id: o.id)\n    s.served = o.served\n    return s",
                    "chimaera module upgrade NAME --path FILE"):
        assert snippet in doc, f"docs/modules.md lacks:\n{snippet}"


def test_upgrade_reaches_every_node_and_is_all_or_nothing(daemons, tmp_path):
    """Three nodes: an upgrade asked on node 2 swaps every node's containers; one refused on
    node 3's container leaves all three on the version they had, state included."""
    from test_cluster import Cluster
    require_staged()
    cl = Cluster(daemons, 3).start()
    v2 = build_sm(tmp_path, "libsm_v2", "SM_VERSION=2", "SM_MD_RET=2")
    v3 = build_sm(tmp_path, "libsm_v3f", "SM_VERSION=3", "SM_MD_RET=3", "SM_UPGRADE_FAIL_CONTAINER=2")
    clients = [chimaera.Client(segment=d.segment, mode="attach") for d in cl.nodes]
    try:
        pool = clients[1].create_pool("small_message", "cluster_up")
        pools = [c.pool("cluster_up") for c in clients]
        for p in pools:
            assert [md(p, i) for i in range(3)] == [1, 1, 1]
        assert served(pools[0], 3) == [3, 3, 3]
        rep = clients[1].upgrade_module("small_message", str(v2))
        assert rep["old_version"] == 1 and rep["new_version"] == 2 and rep["containers"] == 3, rep
        assert sorted({p["node"] for p in rep["pauses"]}) == [1, 2, 3], rep
        for p in pools:
            assert [md(p, i) for i in range(3)] == [2, 2, 2]
        assert served(pool, 3) == [6, 6, 6]
        with pytest.raises(ChimaeraError) as e:
            clients[0].upgrade_module("small_message", str(v3))
        assert e.value.code == -71 and "node 3" in e.value.message, e.value
        for p in pools:
            assert [md(p, i) for i in range(3)] == [2, 2, 2]
        assert served(pool, 3) == [9, 9, 9]
        for d in cl.nodes:
            assert "abandoned" in d.log(), d.log()
    finally:
        for c in clients:
            c.close()


def test_cpp_admin_client_upgrades(daemons, tmp_path):
    from conftest import CXX
    require_staged()
    v2 = build_sm(tmp_path, "libsm_v2", "SM_VERSION=2", "SM_MD_RET=2")
    exe = tmp_path / "test_cpp_upgrade"
    rc, out = run([CXX, "-std=c++11", "-O2", "-pedantic", "-Wall", "-Wextra", "-Werror",
                   f"-I{STAGE}/include", str(REPO / "Tests/cpp/test_cpp_upgrade.cc"), "-o", str(exe),
                   "-pthread", f"-L{STAGE}/lib", "-lchimaera", f"-Wl,-rpath,{STAGE}/lib"], timeout=180)
    assert rc == 0, out
    d = daemons.start(config=CONFIG)
    rc, out = run([exe, str(v2)], env=d.env, timeout=60)
    assert rc == 0 and "cpp upgrade: ok" in out, out
