"""`make install` lays out a prefix that users build against with CMake (find_package) and
pkg-config; the examples built that way run against a daemon from the installed prefix, and
a copy of the prefix elsewhere works as well (the CMake files compute paths from their own
location)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import CC, LATENCY_RE, REPO, STAGE, require_staged, run

INSTALLED = ["bin/chimaera", "lib/libchimaera.so.1", "lib/libchimaera.so",
             "lib/chimaera/libsmall_message.so", "lib/chimaera/libchimaera_admin.so",
             "include/chimaera/chimaera.h", "include/chimaera/module.h",
             "lib/cmake/Chimaera/ChimaeraConfig.cmake",
             "lib/cmake/Chimaera/ChimaeraConfigVersion.cmake", "lib/pkgconfig/chimaera.pc"]


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    require_staged()
    dest = tmp_path_factory.mktemp("install") / "prefix"
    rc, out = run(["make", "install", f"PREFIX={dest}", f"STAGE={STAGE}"], cwd=REPO,
                  timeout=1800)
    assert rc == 0, f"make install failed:\n{out[-4000:]}"
    return dest


def need(tool):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (`make deps` installs it)")


def cmake_build(src, build, prefix_path, *args):
    need("cmake")
    rc, out = run(["cmake", "-S", src, "-B", build, f"-DCMAKE_PREFIX_PATH={prefix_path}",
                   *args], timeout=300)
    if rc != 0:
        return rc, out
    rc2, out2 = run(["cmake", "--build", build], timeout=300)
    return rc2, out + out2


def run_example(binary, daemon):
    rc, out = run([binary], env=daemon.env, timeout=60)
    assert rc == 0, f"{binary} exited {rc}:\n{out}"
    assert "OPS: 256" in out and LATENCY_RE.search(out), f"no 256-op latency line:\n{out}"
    return out


def linked_lib(binary):
    """The libchimaera path the dynamic loader picks for binary (from ldd)."""
    out = subprocess.run(["ldd", str(binary)], stdout=subprocess.PIPE, text=True,
                         timeout=30).stdout
    for line in out.splitlines():
        if "libchimaera.so" in line:
            return line.split("=>")[1].split("(")[0].strip()
    return None


def test_install_layout(prefix):
    for rel in INSTALLED:
        assert (prefix / rel).exists(), f"{rel} was not installed"
    assert os.readlink(prefix / "lib/libchimaera.so") == "libchimaera.so.1"
    pc = (prefix / "lib/pkgconfig/chimaera.pc").read_text()
    assert f"prefix={prefix}\n" in pc, f"chimaera.pc does not point at {prefix}:\n{pc}"
    config = (prefix / "lib/cmake/Chimaera/ChimaeraConfig.cmake").read_text()
    assert str(STAGE) not in config and str(prefix) not in config, \
        "ChimaeraConfig.cmake holds an absolute path: a copied prefix would break"


def test_cmake_and_pkg_config_examples_run(prefix, daemons, tmp_path):
    d = daemons.start(stage=prefix)
    rc, out = cmake_build(REPO / "examples/c", tmp_path / "cmake", prefix)
    assert rc == 0, f"CMake build of examples/c failed:\n{out}"
    built = tmp_path / "cmake" / "client_example"
    assert linked_lib(built) == str(prefix / "lib/libchimaera.so.1"), linked_lib(built)
    print(run_example(built, d))

    need("pkg-config")
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib/pkgconfig"))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "chimaera"], env=env,
                           stdout=subprocess.PIPE, text=True, check=True, timeout=30).stdout
    libdir = subprocess.run(["pkg-config", "--variable=libdir", "chimaera"], env=env,
                            stdout=subprocess.PIPE, text=True, check=True, timeout=30).stdout
    out_bin = tmp_path / "pc_example"
    rc, out = run([CC, "-O2", REPO / "examples/c/client_example.c", "-o", out_bin,
                   *flags.split(), f"-Wl,-rpath,{libdir.strip()}"], timeout=120)
    assert rc == 0, f"pkg-config build failed ({flags.strip()}):\n{out}"
    assert linked_lib(out_bin) == str(prefix / "lib/libchimaera.so.1")
    print(run_example(out_bin, d))


def test_pkg_config_metadata(prefix):
    need("pkg-config")
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib/pkgconfig"))

    def q(*args):
        return subprocess.run(["pkg-config", *args, "chimaera"], env=env, text=True,
                              stdout=subprocess.PIPE, check=True, timeout=30).stdout.strip()
    assert q("--modversion") == "0.1.0"
    assert q("--variable=moduledir") == str(prefix / "lib/chimaera")
    assert f"-I{prefix}/include" in q("--cflags")


def test_copied_prefix_still_works(prefix, daemons, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(prefix, moved, symlinks=True)
    d = daemons.start(stage=moved)
    rc, out = cmake_build(REPO / "examples/c", tmp_path / "b", moved)
    assert rc == 0, f"CMake build against a copied prefix failed:\n{out}"
    assert linked_lib(tmp_path / "b" / "client_example") == str(moved / "lib/libchimaera.so.1")
    run_example(tmp_path / "b" / "client_example", d)


def version_probe(tmp_path, prefix, request):
    src = tmp_path / "probe"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\nproject(probe NONE)\n"
        f"find_package(Chimaera {request} CONFIG REQUIRED)\n"
        'message(STATUS "CHI_VERSION=${Chimaera_VERSION}")\n'
        'message(STATUS "CHI_MODULE_DIR=${CHIMAERA_MODULE_DIR}")\n'
        "get_target_property(loc chimaera::chimaera IMPORTED_LOCATION)\n"
        'message(STATUS "CHI_LOCATION=${loc}")\n')
    need("cmake")
    return run(["cmake", "-S", src, "-B", src / "b", f"-DCMAKE_PREFIX_PATH={prefix}"],
               timeout=120)


@pytest.mark.parametrize("request_,ok", [("", True), ("0.1", True), ("0.1.0 EXACT", True),
                                         ("0.0.5", True), ("0.2", False), ("1.0", False)])
def test_cmake_version_file(prefix, tmp_path, request_, ok):
    rc, out = version_probe(tmp_path, prefix, request_)
    if not ok:
        assert rc != 0, f"find_package(Chimaera {request_}) accepted version 0.1.0:\n{out}"
        return
    assert rc == 0, f"find_package(Chimaera {request_}) failed:\n{out}"
    assert "CHI_VERSION=0.1.0" in out
    assert f"CHI_MODULE_DIR={prefix}/lib/chimaera" in out, out
    assert f"CHI_LOCATION={prefix}/lib/libchimaera.so.1" in out, out
