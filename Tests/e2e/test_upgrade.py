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
