"""The Python binding as a package: pip install into a fresh virtualenv, where the library is
found, an ABI-major mismatch, ctypes mirrors against the C headers, an embedded runtime, and
the examples in examples/python."""

import ctypes
import json
import os
import shutil
import sys

import pytest

from conftest import CC, LATENCY_RE, REPO, STAGE, require_staged, run, shm_path, unique_segment

BINDING = REPO / "bindings" / "python"
LIB = STAGE / "lib" / "libchimaera.so.1"
sys.path.insert(0, str(BINDING))
import chimaera  # noqa: E402
from chimaera import _types  # noqa: E402


def py_env(lib=LIB, pythonpath=BINDING, **extra):
    """The environment of a Python subprocess: CHIMAERA_LIB=lib (None: unset)."""
    env = dict(os.environ)
    for k in ("CHIMAERA_LIB", "PYTHONPATH", "CHIMAERA_EMBEDDED", "CHIMAERA_CONF"):
        env.pop(k, None)
    if lib is not None:
        env["CHIMAERA_LIB"] = str(lib)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def python(code, env, exe=sys.executable, cwd=None, timeout=120):
    return run([exe, "-c", code], env=env, cwd=cwd, timeout=timeout)


def test_pip_install_into_a_fresh_virtualenv_then_import(daemon, tmp_path):
    require_staged()
    # A copy, so that a setuptools build's build/ and *.egg-info stay out of the source tree.
    src = tmp_path / "src"
    shutil.copytree(BINDING, src, ignore=shutil.ignore_patterns("__pycache__", "build",
                                                                "*.egg-info"))
    venv = tmp_path / "venv"
    rc, out = run([sys.executable, "-m", "venv", venv], timeout=300)
    if rc != 0 and "ensurepip" in out:
        pytest.skip(f"python3 -m venv is unusable here (`make deps` installs python3-venv):\n{out}")
    assert rc == 0, out
    vpy = venv / "bin" / "python"
    # The build bundles the staged library and built-in modules ($CHI_STAGE names the stage
    # when, as here, the package is built outside the source tree).
    rc, out = run([vpy, "-m", "pip", "install", "--no-build-isolation", "--no-index", src],
                  env=py_env(lib=None, pythonpath=None, CHI_STAGE=str(STAGE)), timeout=600)
    assert rc == 0, f"pip install failed:\n{out}"
    assert not (src / "chimaera" / "lib").exists(), "the build left its copy in the source"
    # No environment variable at all: the library is the one installed beside the package.
    code = ("import chimaera, sys; print(chimaera.__file__); print(chimaera.abi_version()); "
            "print(chimaera._lib.path()); "
            "c = chimaera.Client(); p = c.create_pool('small_message', 'venv'); "
            "print('md', p.md(timeout=30)); c.close()")
    env = py_env(lib=None, pythonpath=None, CHIMAERA_SEGMENT=daemon.segment)
    env.pop("CHI_MODULE_PATH", None)
    env.pop("LD_LIBRARY_PATH", None)
    rc, out = python(code, env, exe=vpy, cwd=tmp_path)
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(str(venv)), f"imported from outside the virtualenv: {lines[0]}"
    assert lines[1] == f"({chimaera.ABI_MAJOR}, {chimaera.ABI_MINOR})" and lines[3] == "md 1"
    assert lines[2].startswith(str(venv)), f"the library came from outside the virtualenv: {lines[2]}"
    # An embedded runtime from the installed package: its built-in modules are the bundled ones.
    code = ("import chimaera; c = chimaera.Client(mode='embedded'); "
            "p = c.create_pool('small_message', 'emb'); print('md', p.md(timeout=30)); c.close()")
    env = py_env(lib=None, pythonpath=None, CHIMAERA_SEGMENT=unique_segment("venvemb"))
    env.pop("CHI_MODULE_PATH", None)
    rc, out = python(code, env, exe=vpy, cwd=tmp_path)
    assert rc == 0 and "md 1" in out, out


def test_the_library_is_found_beside_the_package_or_on_the_library_path(tmp_path):
    require_staged()
    pkg = tmp_path / "site"
    shutil.copytree(BINDING / "chimaera", pkg / "chimaera",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(LIB, pkg / "chimaera" / "libchimaera.so.1")
    code = "import chimaera; print(chimaera.library_path()); print(chimaera.abi_version())"
    rc, out = python(code, py_env(lib=None, pythonpath=pkg))
    assert rc == 0, out
    assert out.splitlines()[0] == str((pkg / "chimaera" / "libchimaera.so.1").resolve())
    # No copy beside the package: the dynamic linker's path.
    rc, out = python(code, py_env(lib=None, LD_LIBRARY_PATH=STAGE / "lib"))
    assert rc == 0, out
    assert out.splitlines()[0] == "libchimaera.so.1"


def test_a_missing_library_fails_naming_chimaera_lib(tmp_path):
    missing = tmp_path / "nope" / "libchimaera.so.1"
    rc, out = python("import chimaera; chimaera.Client()", py_env(lib=missing))
    assert rc != 0 and "ChimaeraError" in out
    assert str(missing) in out and "CHIMAERA_LIB" in out


def test_a_library_with_another_abi_major_is_refused(tmp_path):
    src = tmp_path / "fake.c"
    src.write_text("unsigned chi_abi_version(void) { return (2u << 16) | 7u; }\n")
    fake = tmp_path / "libchimaera.so.2"
    rc, out = run([CC, "-shared", "-fPIC", src, "-o", fake], timeout=120)
    assert rc == 0, out
    code = ("import chimaera\ntry:\n    chimaera.Client()\nexcept chimaera.ChimaeraError as e:\n"
            "    print(e.code, e.message)\n")
    rc, out = python(code, py_env(lib=fake))
    assert rc == 0, out
    code_s, message = out.strip().split(" ", 1)
    assert int(code_s) == -chimaera.EABI
    assert "ABI 2.7" in message and f"ABI {chimaera.ABI_MAJOR}.x" in message
    assert str(fake) in message


def _c_layout_program():
    """C that prints sizeof and every field's offsetof, named after the ctypes mirrors."""
    mirrors = {"chi_shm_ptr_t": _types.ChiShmPtr, "chi_domain_query_t": _types.ChiDomainQuery,
               "chi_task_t": _types.ChiTask, "chi_client_opts_t": _types.ChiClientOpts,
               "chi_pool_create_opts_t": _types.ChiPoolCreateOpts,
               "chi_field_desc_t": _types.ChiFieldDesc, "chi_method_desc_t": _types.ChiMethodDesc,
               "chi_record_desc_t": _types.ChiRecordDesc,
               "chi_module_vtable_t": _types.ChiModuleVtable,
               "chi_sm_md_task_t": _types.ChiSmMdTask, "chi_sm_io_task_t": _types.ChiSmIoTask}
    lines = ["#include <stddef.h>", "#include <stdio.h>", "#include <chimaera/module.h>",
             "#include <chimaera/small_message.h>", "static void dq(const char *n, "
             "chi_domain_query_t q) { printf(\"%s %u %u %llu %llu\\n\", n, q.flags, "
             "q.sub_domain, (unsigned long long)q.sel, (unsigned long long)q.count); }",
             "int main(void) {"]
    expected = []
    for cname, cls in mirrors.items():
        lines.append(f'printf("{cname} %zu\\n", sizeof({cname}));')
        expected.append(f"{cname} {ctypes.sizeof(cls)}")
        for fname, *_ in cls._fields_:
            lines.append(f'printf("{cname}.{fname} %zu\\n", offsetof({cname}, {fname}));')
            expected.append(f"{cname}.{fname} {getattr(cls, fname).offset}")
    d = chimaera
    for name, args, py in (
            ("chi_dq_local_id", "2, 5", d.dq_local_id(2, 5)),
            ("chi_dq_direct_id", "1, 3", d.dq_direct_id(1, 3)),
            ("chi_dq_direct_hash", "1, 77", d.dq_direct_hash(1, 77)),
            ("chi_dq_local_hash", "9", d.dq_local_hash(9)),
            ("chi_dq_global", "3, CHI_DQ_CHOOSE_ONE", d.dq_global(3, d.DQ_CHOOSE_ONE)),
            ("chi_dq_range", "1, 2, 4, CHI_DQ_REP_UNTIL_SUCCESS",
             d.dq_range(1, 2, 4, d.DQ_REP_UNTIL_SUCCESS)),
            ("chi_dq_global_bcast", "", d.dq_global_bcast()),
            ("chi_dq_dynamic", "", d.dq_dynamic())):
        lines.append(f'dq("{name}", {name}({args}));')
        expected.append(f"{name} {py.flags} {py.sub_domain} {py.sel} {py.count}")
    lines.append("return 0; }")
    return "\n".join(lines) + "\n", expected


def test_ctypes_mirrors_and_dq_helpers_match_the_c_headers(tmp_path):
    require_staged()
    src, expected = _c_layout_program()
    (tmp_path / "layout.c").write_text(src)
    exe = tmp_path / "layout"
    rc, out = run([CC, "-std=c99", "-Wall", "-Werror", f"-I{STAGE}/include",
                   tmp_path / "layout.c", "-o", exe], timeout=120)
    assert rc == 0, out
    rc, out = run([exe])
    assert rc == 0, out
    assert out.splitlines() == expected


def test_an_embedded_runtime_runs_inside_the_python_process():
    require_staged()
    seg = unique_segment("pyemb")
    code = ("import os, chimaera\n"
            f"with chimaera.Client(segment={seg!r}, mode='embedded') as c:\n"
            "    p = c.create_pool('small_message', 'emb', containers_per_node=2)\n"
            "    assert c.stats()['pid'] == os.getpid()\n"
            "    print(p.md(timeout=30), p.call('Md', depth=3, timeout=30).ret,\n"
            "          p.md(dq=chimaera.dq_global_bcast(), timeout=30))\n")
    try:
        rc, out = python(code, py_env(CHI_MODULE_PATH=STAGE / "lib" / "chimaera"))
        assert rc == 0, out
        assert out.split() == ["1", "1", "2"]
    finally:
        leftover = shm_path(seg).exists()
        shm_path(seg).unlink(missing_ok=True)
    assert not leftover, "the embedded runtime left its segment behind"


def test_md_example_prints_the_seed_latency_line(daemon):
    rc, out = run([sys.executable, REPO / "examples" / "python" / "md_example.py"],
                  env=py_env(CHIMAERA_SEGMENT=daemon.segment), timeout=120)
    assert rc == 0, out
    assert "OPS: 256" in out and LATENCY_RE.search(out), out


def test_bench_md_prints_one_json_line(daemon):
    rc, out = run([sys.executable, REPO / "examples" / "python" / "bench_md.py",
                   "--segment", daemon.segment, "--ops", "2000", "--warmup", "100"],
                  env=py_env(), timeout=120)
    assert rc == 0, out
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    r = json.loads(lines[0])
    assert 0 < r["python_sync_rtt_ns_p50"] <= r["python_sync_rtt_ns_p99"] and r["ops"] == 2000
