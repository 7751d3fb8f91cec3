"""The C++ binding (bindings/cpp, staged with the headers): the seed documentation's client
example and the API test, built with $CXX as C++11 and C++17 (-pedantic -Wall -Wextra -Werror)
against the staged headers and library, run against a daemon; the example also in embedded
mode; the examples in examples/cpp with CMake, and the MPI one where mpicxx exists."""

import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import CXX, REPO, STAGE, client_env, require_staged, run, shm_path, unique_segment
from test_capi import compile_cmd

CPP = REPO / "Tests" / "cpp"
STDS = ["c++11", "c++17"]
CXXFLAGS = ["-O2", "-pedantic", "-Wall", "-Wextra", "-Werror"]
# The seed documentation the example is copied from; the copy is checked when it is at hand.
SEED_DOC = Path(os.environ.get("CHI_SEED_DOC", "/work/shared/seed/chimaera-docs.md"))
# The seed example's last line: HILOG(kInfo, "Latency: {} MOps, {} MTasks", ...).
SEED_LATENCY = re.compile(r"^Latency: [0-9.e+-]+ MOps, [0-9.e+-]+ MTasks$", re.M)


def link_flags(stage=STAGE):
    return ["-pthread", f"-L{stage}/lib", "-lchimaera", f"-Wl,-rpath,{stage}/lib"]


@pytest.fixture(scope="module")
def cpp_bin(tmp_path_factory):
    """build(name, std) -> the compiled Tests/cpp/<name>.cc; each is built once."""
    require_staged()
    for h in ("chimaera/api/chimaera_client.h", "chimaera_admin/chimaera_admin_client.h",
              "small_message/small_message_client.h"):
        if not (STAGE / "include" / h).exists():
            pytest.fail(f"{STAGE}/include/{h} is not staged: run `make all` (or `make headers`)")
    out_dir = tmp_path_factory.mktemp("cpp")
    built = {}

    def build(name, std):
        if (name, std) not in built:
            out = out_dir / f"{name}_{std.replace('+', 'x')}"
            compile_cmd([CXX, f"-std={std}", *CXXFLAGS, f"-I{STAGE}/include", CPP / f"{name}.cc",
                         "-o", out, *link_flags()], f"{name}.cc ({std})")
            built[(name, std)] = out
        return built[(name, std)]

    return build


def run_ok(cmd, env, timeout=120):
    rc, out = run(cmd, env=env, timeout=timeout)
    assert rc == 0, f"{Path(str(cmd[0])).name} exited {rc}:\n{out}"
    print(out)
    return out


def seed_block():
    """The seed documentation's first C++ block after "# Client API Example"."""
    doc = SEED_DOC.read_text()
    start = doc.index("```cpp\n", doc.index("# Client API Example")) + len("```cpp\n")
    return doc[start:doc.index("```", start)]


def test_seed_example_is_the_documentation_code_unchanged():
    if not SEED_DOC.exists():
        pytest.skip(f"the seed documentation is not at {SEED_DOC} (set CHI_SEED_DOC)")
    text = (CPP / "seed_client_example.cc").read_text()
    block = seed_block()
    assert text.endswith(block), \
        "Tests/cpp/seed_client_example.cc no longer ends with the documentation's code block"
    prologue = text[:-len(block)]
    assert "main" not in prologue and "CHI_" not in prologue.split("*/", 1)[1], \
        "the prologue may only add REQUIRE and the MPI stand-ins"


@pytest.mark.parametrize("std", STDS)
def test_seed_client_example(std, cpp_bin, daemon):
    out = run_ok([cpp_bin("seed_client_example", std)], daemon.env)
    assert re.search(r"^OPS: 256$", out, re.M), f"no OPS line:\n{out}"
    assert SEED_LATENCY.search(out), f"no latency line:\n{out}"
    assert daemon.status()[0] == 0, f"the daemon stopped serving:\n{daemon.log()}"


def test_seed_client_example_embedded(cpp_bin):
    """With CHIMAERA_EMBEDDED=1 the unchanged example needs no daemon: the runtime runs in the
    client and goes with it, leaving nothing in /dev/shm. (That the client singleton's static
    destructor finalizes is checked by test_cpp_api, through its stale handle.)"""
    seg = unique_segment("cppemb")
    try:
        out = run_ok([cpp_bin("seed_client_example", "c++11")],
                     client_env(seg, CHIMAERA_EMBEDDED="1"))
        assert SEED_LATENCY.search(out), f"no latency line:\n{out}"
        assert not shm_path(seg).exists(), f"{shm_path(seg)} left after the embedded run"
    finally:
        shm_path(seg).unlink(missing_ok=True)


@pytest.mark.parametrize("std", STDS)
def test_cpp_api(std, cpp_bin, daemon):
    out = run_ok([cpp_bin("test_cpp_api", std)], daemon.env, timeout=180)
    assert "test_cpp_api: ok" in out
    assert "test_cpp_api: client finalized at exit" in out, out
    assert daemon.status()[0] == 0, f"the daemon stopped serving:\n{daemon.log()}"


def test_cpp_api_without_a_runtime_throws(cpp_bin):
    seg = unique_segment("cppnort")
    try:
        out = run_ok([cpp_bin("test_cpp_api", "c++11"), "noruntime"], client_env(seg))
        assert seg in out
        assert not shm_path(seg).exists(), f"a failed attach left {shm_path(seg)}"
    finally:
        shm_path(seg).unlink(missing_ok=True)


def test_cpp_examples_build_with_cmake_and_run(daemon, tmp_path):
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed (`make deps` installs it)")
    build = tmp_path / "b"
    rc, out = run(["cmake", "-S", REPO / "examples" / "cpp", "-B", build,
                   f"-DCMAKE_PREFIX_PATH={STAGE}", f"-DCMAKE_CXX_COMPILER={shutil.which(CXX)}",
                   "-DCMAKE_CXX_FLAGS=-Wall -Wextra -Werror"], timeout=300)
    assert rc == 0, f"cmake configure of examples/cpp failed:\n{out}"
    rc, out = run(["cmake", "--build", build], timeout=300)
    assert rc == 0, f"cmake build of examples/cpp failed:\n{out}"
    out = run_ok([build / "client_example"], daemon.env)
    assert SEED_LATENCY.search(out), f"no latency line:\n{out}"
    assert "Async: 256 of 256" in out and "Io: 1048576 bytes filled (ok)" in out, out


def test_mpi_client_example(daemon, tmp_path):
    mpicxx = shutil.which("mpicxx")
    if mpicxx is None:
        pytest.skip("mpicxx not found: examples/cpp/mpi_client_example.cc needs an MPI "
                    "compiler wrapper (the binding itself does not use MPI)")
    out_bin = tmp_path / "mpi_client_example"
    compile_cmd([mpicxx, "-std=c++11", *CXXFLAGS, f"-I{STAGE}/include",
                 REPO / "examples" / "cpp" / "mpi_client_example.cc", "-o", out_bin,
                 *link_flags()], "mpi_client_example.cc")
    launcher = shutil.which("mpirun") or shutil.which("mpiexec")
    # Open MPI refuses to run as root unless told; CI containers often are root.
    env = dict(daemon.env, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = [launcher, "-n", "2", out_bin] if launcher else [out_bin]
    out = run_ok(cmd, env, timeout=180)
    assert SEED_LATENCY.search(out), f"no latency line:\n{out}"


@pytest.mark.parametrize("std", STDS)
def test_cpp_bdev_client(std, cpp_bin, daemon):
    out = run_ok([cpp_bin("test_cpp_bdev", std)], daemon.env, timeout=180)
    assert "test_cpp_bdev: ok" in out
