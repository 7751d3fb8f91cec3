"""Module loading edge cases against a real daemon: modules found through the config's
runtime.module_path, an ABI-major mismatch and a shared object that is not a module."""

from conftest import CC, REPO, STAGE, client_env, require_staged
from test_capi import capi_bin, compile_cmd, run_test  # noqa: F401 (capi_bin is a fixture)

MODS = REPO / "Tests" / "capi" / "mods"


def test_bad_modules_are_refused_with_clear_errors_and_the_runtime_keeps_serving(daemons, tmp_path, capi_bin):
    require_staged()
    mod_dir = tmp_path / "mods"
    mod_dir.mkdir()
    for src, name in (("mod_bad_abi.c", "chi_test_bad_abi"), ("mod_no_entry.c", "chi_test_no_entry")):
        compile_cmd([CC, "-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                     "-fvisibility=hidden", f"-I{STAGE}/include", MODS / src,
                     "-o", mod_dir / f"lib{name}.so"], src)
    d = daemons.start(config={"runtime": {"module_path": [str(mod_dir)]}})
    run_test(capi_bin("test_module_loading"), client_env(d.segment))


def test_tasks_suspended_by_a_module_resume_from_a_poller_or_another_thread(daemons, tmp_path, capi_bin):
    require_staged()
    mod_dir = tmp_path / "mods"
    mod_dir.mkdir()
    compile_cmd([CC, "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                 "-fvisibility=hidden", f"-I{STAGE}/include", MODS / "mod_async.c", "-lpthread",
                 "-o", mod_dir / "libchi_test_async.so", f"-L{STAGE}/lib", "-lchimaera"],
                "mod_async.c")
    for workers in ({"low_latency_workers": 1, "high_latency_workers": 0},
                    {"low_latency_workers": 1, "high_latency_workers": 1}):
        d = daemons.start(config={"runtime": {"module_path": [str(mod_dir)], **workers}})
        run_test(capi_bin("test_async_module"), client_env(d.segment))


def test_a_plain_c_function_method_is_called_through_libffi(daemons, tmp_path, capi_bin):
    require_staged()
    mod_dir = tmp_path / "mods"
    mod_dir.mkdir()
    compile_cmd([CC, "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                 "-fvisibility=hidden", f"-I{STAGE}/include", MODS / "mod_plain.c",
                 "-o", mod_dir / "libchi_test_plain.so"], "mod_plain.c")
    d = daemons.start(config={"runtime": {"module_path": [str(mod_dir)]}})
    run_test(capi_bin("test_plain_handler"), client_env(d.segment))
