"""Builds each C ABI test in Tests/capi against the staged headers and library, and runs it
(exit 0 pass, 1 fail, 77 skip) against a fresh daemon; a few also under ASan + UBSan."""

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import CC, CXX, REPO, STAGE, require_staged, shm_path

CAPI = REPO / "Tests" / "capi"
HEADERS = sorted(p.name for p in (REPO / "include" / "chimaera").glob("*.h"))
DAEMON_TESTS = ["test_client", "test_buffers", "test_md", "test_async", "test_io",
                "test_periodic", "test_bcast", "test_errors_runtime", "test_kill_client",
                "test_stats"]
SANITIZED = ["test_client", "test_buffers", "test_io", "test_errors", "test_md"]
CFLAGS = ["-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Werror"]
SAN_FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
             "-fno-sanitize-recover=undefined"]
# Leak checking is off: the Swift runtime inside libchimaera keeps process-lifetime caches
# that LeakSanitizer would report as leaks on every run. Memory errors are still caught.
SAN_ENV = {"ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1:abort_on_error=0",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
ONE_WORKER = {"runtime": {"shm_size": "256M", "low_latency_workers": 1,
                          "high_latency_workers": 0}}


def link_flags():
    return [f"-L{STAGE}/lib", "-lchimaera", f"-Wl,-rpath,{STAGE}/lib", "-lpthread"]


def compile_cmd(cmd, what):
    proc = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=180)
    assert proc.returncode == 0, f"compiling {what} failed:\n{' '.join(map(str, cmd))}\n" \
                                 f"{proc.stdout.decode(errors='replace')}"


@pytest.fixture(scope="session")
def capi_bin(tmp_path_factory):
    """build(name, sanitize=False) -> path of the compiled test; each is built once."""
    require_staged()
    out_dir = tmp_path_factory.mktemp("capi")
    built = {}

    def build(name, sanitize=False):
        key = (name, sanitize)
        if key not in built:
            out = out_dir / (name + ("_san" if sanitize else ""))
            compile_cmd([CC, *CFLAGS, *(SAN_FLAGS if sanitize else []), f"-I{STAGE}/include",
                         CAPI / f"{name}.c", "-o", out, *link_flags()], name)
            built[key] = out
        return built[key]

    return build


def run_test(binary, env, timeout=60, args=()):
    """Runs one C test; 77 skips; anything else but 0 fails with the program's output. Also
    checks the test left no segment of its own (named with its pid) in /dev/shm."""
    with open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen([str(binary), *args], env=env, stdin=devnull, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            pytest.fail(f"{binary.name} timed out after {timeout} s:\n"
                        f"{out.decode(errors='replace')}")
    text = out.decode(errors="replace")
    # The segments the C tests name after themselves (test_errors, test_embedded).
    mine = re.compile(rf"chimaera_(noruntime|emb){proc.pid}_")
    left = [p for p in Path("/dev/shm").glob("chimaera_*") if mine.match(p.name)]
    for p in left:
        p.unlink(missing_ok=True)
    if proc.returncode == 77:
        pytest.skip(f"{binary.name}: {text.strip()}")
    if proc.returncode < 0:
        pytest.fail(f"{binary.name} was killed by {signal.Signals(-proc.returncode).name} "
                    f"(a trap or crash in the library?):\n{text}")
    assert proc.returncode == 0, f"{binary.name} exited {proc.returncode}:\n{text}"
    assert not left, f"{binary.name} left {[p.name for p in left]} in /dev/shm"
    print(text)
    return text


def no_daemon_env(**extra):
    env = dict(os.environ)
    for k in ("CHIMAERA_SEGMENT", "CHIMAERA_EMBEDDED", "CHIMAERA_CONF"):
        env.pop(k, None)
    env["CHI_MODULE_PATH"] = str(STAGE / "lib" / "chimaera")
    env.update(extra)
    return env


# ---- the headers ----------------------------------------------------------------------

@pytest.mark.parametrize("header", HEADERS)
@pytest.mark.parametrize("std", ["c99", "c11"])
def test_header_compiles_alone(header, std, tmp_path):
    require_staged()
    compile_cmd([CC, f"-std={std}", "-pedantic", "-Wall", "-Wextra", "-Werror",
                 f"-I{STAGE}/include", f'-DCHI_TEST_HEADER="chimaera/{header}"', "-c",
                 CAPI / "test_build.c", "-o", tmp_path / "one.o"], f"{header} alone ({std})")


def test_staged_headers_match_source():
    require_staged()
    for h in HEADERS:
        staged = STAGE / "include" / "chimaera" / h
        assert staged.exists(), f"{staged} is not staged"
        assert staged.read_bytes() == (REPO / "include" / "chimaera" / h).read_bytes(), \
            f"{staged} differs from include/chimaera/{h}: the staging is stale"


def test_build_links_every_export(tmp_path):
    require_staged()
    out = tmp_path / "test_build"
    compile_cmd([CC, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror",
                 f"-I{STAGE}/include", CAPI / "test_build.c", "-o", out, *link_flags()],
                "test_build.c")
    run_test(out, no_daemon_env())


@pytest.mark.parametrize("std", ["c++11", "c++17"])
def test_build_cpp(std, tmp_path):
    require_staged()
    out = tmp_path / "test_build_cpp"
    compile_cmd([CXX, f"-std={std}", "-pedantic", "-Wall", "-Wextra", "-Werror",
                 f"-I{STAGE}/include", CAPI / "test_build_cpp.cc", "-o", out, *link_flags()],
                f"test_build_cpp.cc ({std})")
    run_test(out, no_daemon_env())


# ---- the programs -------------------------------------------------------------------------

def test_errors(capi_bin):
    run_test(capi_bin("test_errors"), no_daemon_env())


def test_embedded(capi_bin):
    run_test(capi_bin("test_embedded"), no_daemon_env())


def test_serve(capi_bin):
    run_test(capi_bin("test_serve"), no_daemon_env())


@pytest.mark.parametrize("name", DAEMON_TESTS)
def test_with_daemon(name, capi_bin, daemon):
    run_test(capi_bin(name), daemon.env)
    assert daemon.status()[0] == 0, f"the daemon stopped serving after {name}:\n{daemon.log()}"


def test_md_depth_one_worker(capi_bin, daemons):
    d = daemons.start(config=ONE_WORKER)
    run_test(capi_bin("test_md_depth"), d.env)


@pytest.mark.parametrize("name", SANITIZED)
def test_sanitized(name, capi_bin, daemons):
    binary = capi_bin(name, sanitize=True)
    if name == "test_errors":
        env = no_daemon_env(**SAN_ENV)
    else:
        env = dict(daemons.start().env, **SAN_ENV)
    run_test(binary, env)


def test_no_segment_left_after_stop(capi_bin, daemons):
    """A daemon that served real work still removes its segment when stopped."""
    d = daemons.start()
    run_test(capi_bin("test_md"), d.env)
    rc, out = d.stop()
    assert rc == 0, f"chimaera stop exited {rc}:\n{out}"
    assert not shm_path(d.segment).exists(), f"{shm_path(d.segment)} left after stop"


def test_runtime_gone_is_reported(capi_bin, daemons):
    """A client of a runtime that died hears "runtime ... (pid P) is gone" (issue 18)."""
    d = daemons.start()
    env = dict(d.env, CHI_DAEMON_PID=str(d.pid))
    run_test(capi_bin("test_runtime_gone"), env)
