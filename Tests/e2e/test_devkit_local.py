"""`local: true` on a kit method (CHI_MF_LOCAL, issue 17): a C module made with chi_make_mod
declares Where local and There not (a Swift module the same, its descriptors checked), is built with CMake against the staged Chimaera and loaded
by two daemons. Python builds both tasks from the descriptors: Where routed to the other
node's container fails with -CHI_ENOCONTAINER (with or without CHI_TF_LOCAL on the task: the
runtime reads the method's flag), There runs there. A bad `local:` value is refused with its
line and changes nothing; a C++ module is told to use TaskFlags<TF_LOCAL> instead."""

import json
import os
import sys

import pytest

from conftest import REPO, STAGE, require_staged
from test_devkit import BIN, CMAKE_C_FLAGS, cmake, fill, need_cmake, snapshot, tool

sys.path.insert(0, str(REPO / "bindings" / "python"))
os.environ["CHIMAERA_LIB"] = str(STAGE / "lib" / "libchimaera.so.1")
import chimaera  # noqa: E402

MODULE = "example_lm"
GLOBAL = chimaera.SUBDOMAIN_GLOBAL_CONTAINERS
WAIT = 60

LM_METHODS = """
kWhere:
  id: 10
  local: true
  doc: The daemon's pid; never leaves its node.
  params:
    pid: out u64
kThere:
  id: 11
  local: false
  params:
    pid: out u64
"""

PID_BODY = """#include <unistd.h>
static int {name}(lm_state_t *state, lm_{snake}_task_t *task, chi_rctx_t *rctx) {{
    (void)state;
    (void)rctx;
    task->pid = (uint64_t)getpid();
    return 0;
}}"""


def make_lm(tmp_path, extra=LM_METHODS):
    require_staged()
    for t in ("chi_make_repo", "chi_make_mod", "chi_refresh_repo"):
        assert (BIN / t).is_symlink(), f"{BIN / t} is not installed"
    tool("chi_make_repo", "repo", "example", cwd=tmp_path)
    tool("chi_make_mod", "repo/lm", cwd=tmp_path)
    repo = tmp_path / "repo"
    yaml = repo / "lm/include/lm/lm_methods.yaml"
    yaml.write_text(yaml.read_text() + extra)
    return repo, yaml


def test_local_method_is_refused_on_the_other_node(tmp_path, daemons, monkeypatch):
    need_cmake()
    from test_cluster import Cluster
    repo, _ = make_lm(tmp_path)
    # A Swift module too: its generated descriptor table carries the flag as well.
    tool("chi_make_mod", "repo/ls", "--lang", "swift", cwd=tmp_path)
    syaml = repo / "ls/include/ls/ls_methods.yaml"
    syaml.write_text(syaml.read_text() + LM_METHODS)
    tool("chi_refresh_repo", "repo", cwd=tmp_path)
    # The descriptor table carries the flag for Where only.
    lib_exec = (repo / "lm/src/lm_lib_exec.h").read_text()
    assert lib_exec.count("CHI_MF_LOCAL") == 1, lib_exec
    runtime_c = repo / "lm/src/lm_runtime.c"
    fill(runtime_c, "Where", PID_BODY.format(name="Where", snake="where"))
    fill(runtime_c, "There", PID_BODY.format(name="There", snake="there").split("\n", 1)[1])
    inst = tmp_path / "inst"
    cmake(repo, tmp_path / "build", f"-DCMAKE_PREFIX_PATH={STAGE}",
          f"-DCMAKE_INSTALL_PREFIX={inst}", f"-DCMAKE_C_FLAGS={CMAKE_C_FLAGS}")
    from conftest import run
    rc, out = run(["cmake", "--install", tmp_path / "build"], timeout=120)
    assert rc == 0, out
    mods = inst / "lib/chimaera"
    assert (mods / f"lib{MODULE}.so").exists()
    monkeypatch.setenv("CHI_MODULE_PATH", f"{mods}:{STAGE / 'lib' / 'chimaera'}")
    mod = chimaera.describe(MODULE)
    assert {n: m.local for n, m in mod.methods.items()} == {"Where": True, "There": False}
    smod = chimaera.describe("example_ls")
    assert {n: m.local for n, m in smod.methods.items()} == {"Where": True, "There": False}

    cl = Cluster(daemons, 2)
    for d in cl.nodes:
        text = d.config.read_text()
        d.config.write_text(text.replace("runtime:\n", f"runtime:\n  module_path: [{mods}]\n", 1))
    cl.start()
    with chimaera.Client(segment=cl.node(1).segment, mode="attach") as c:
        pool = c.create_pool(MODULE, "lm", containers_per_node=1)
        rc, out = cl.node(1).status("--json")
        assert rc == 0, out
        st = next(p for p in json.loads(out)["pools"] if p["name"] == "lm")
        held = {x["container"]: x["node"] for x in st["placement"]}
        assert sorted(held.values()) == [1, 2], held
        far = chimaera.dq_direct_id(GLOBAL, next(k for k, n in held.items() if n == 2))
        near = chimaera.dq_direct_id(GLOBAL, next(k for k, n in held.items() if n == 1))
        assert pool.call("There", dq=far, timeout=WAIT).pid == cl.node(2).pid
        where = mod.method("Where")
        for task_flag in (True, False):
            monkeypatch.setattr(where, "local", task_flag)
            with pytest.raises(chimaera.ChimaeraError) as e:
                pool.call("Where", dq=far, timeout=WAIT)
            assert e.value.code == -chimaera.ENOCONTAINER, (task_flag, e.value)
            # The reason names what kept it (the task flag wins when both are set).
            why = "task is marked CHI_TF_LOCAL" if task_flag else "method is CHI_MF_LOCAL"
            assert why in str(e.value), (task_flag, str(e.value))
            assert pool.call("Where", dq=near, timeout=WAIT).pid == cl.node(1).pid


def test_bad_local_value_names_the_line_and_changes_nothing(tmp_path):
    repo, yaml = make_lm(tmp_path, "kWhere:\n  id: 10\n  local: maybe\n")
    line = yaml.read_text().count("\n")
    before = snapshot(repo)
    out = tool("chi_refresh_repo", "repo", cwd=tmp_path, expect=None)
    assert f"lm_methods.yaml:{line}: kWhere.local must be true or false" in out, out
    assert snapshot(repo) == before, "a refused refresh changed files"


def test_local_on_an_inherited_method_or_a_cpp_module_is_refused(tmp_path):
    repo, yaml = make_lm(tmp_path)
    text = yaml.read_text().replace("kCreate: 0        # builds each container's state",
                                    "kCreate:\n  id: 0\n  local: true", 1)
    yaml.write_text(text)
    out = tool("chi_refresh_repo", "repo", cwd=tmp_path, expect=None)
    assert "kCreate is inherited: only a custom method can be local" in out, out
    yaml.write_text(yaml.read_text().replace("kCreate:\n  id: 0\n  local: true", "kCreate: 0", 1))
    tool("chi_make_mod", "repo/cm", "--lang", "cpp", cwd=tmp_path)
    cyaml = repo / "cm/include/cm/cm_methods.yaml"
    cyaml.write_text(cyaml.read_text() + "kWhere:\n  id: 10\n  local: true\n")
    out = tool("chi_refresh_repo", "repo", cwd=tmp_path, expect=None)
    assert "kWhere: a C++ module makes a method local with TaskFlags<TF_LOCAL>" in out, out
