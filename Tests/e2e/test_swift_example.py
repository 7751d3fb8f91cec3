"""The Swift example (examples/swift, `import ChimaeraSwift`) builds with SwiftPM against the
staged library and runs against a real daemon and embedded; the Swift API sits on
libchimaera.so (one runtime copy, none in the program); `chimaera bench swift` reports its
figures."""

import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import LATENCY_RE, REPO, STAGE, require_staged, run

SCRATCH = REPO / ".build-examples"
EXAMPLE = SCRATCH / "debug" / "SwiftClientExample"


@pytest.fixture(scope="module")
def example():
    """The example, built against STAGE (its run path points there)."""
    if shutil.which("swift") is None:
        pytest.skip("no Swift toolchain")
    require_staged()
    env = dict(os.environ, CHIMAERA_PREFIX=str(STAGE))
    rc, out = run(["swift", "build", "--package-path", REPO / "examples" / "swift",
                   "--scratch-path", SCRATCH, "--product", "SwiftClientExample"],
                  env=env, timeout=900)
    assert rc == 0, out
    return EXAMPLE


def defined_symbols(path, dynamic=False):
    out = subprocess.run(["nm", "--defined-only"] + (["-D"] if dynamic else []) + [str(path)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if len(line.split()) >= 3}


def test_swift_example_builds_and_runs_against_a_daemon(example, daemon):
    rc, out = run([example], env=daemon.env, timeout=120)
    assert rc == 0, out
    assert "OPS: 256" in out and LATENCY_RE.search(out), out
    assert "Async latency: 256 ops" in out, out
    assert "Runtime: attached, libchimaera.so mapped from 1 file(s)" in out, out
    check_create_params(out)


def check_create_params(out):
    """The example creates a bdev pool from create parameters given by name (the Swift API
    lays them out from bdev's create descriptor) and shows an unknown one refused."""
    assert re.search(r"^Pool swift_dev \(bdev, id \d+\) created from: path: str\[256\], size: u64, flags: u32$",
                     out, re.M), out
    assert re.search(r'^Refused: .*"sise" \(known: path: str\[256\], size: u64, flags: u32\)', out, re.M), out


def test_swift_example_runs_embedded_with_no_environment_and_one_runtime(example):
    # No LD_LIBRARY_PATH, CHI_MODULE_PATH or CHIMAERA_*: the run path finds the library, the
    # library finds its modules beside itself.
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    rc, out = run([example, "--embedded"], env=env, timeout=120)
    assert rc == 0, out
    assert "OPS: 256" in out and LATENCY_RE.search(out), out
    assert "Async latency: 256 ops" in out, out
    m = re.search(r"^Runtime: embedded, libchimaera.so mapped from (\d+) file\(s\): (.*)$", out, re.M)
    assert m, out
    assert m.group(1) == "1", out
    assert os.path.realpath(m.group(2)) == os.path.realpath(STAGE / "lib" / "libchimaera.so.1"), out
    check_create_params(out)


def test_swift_example_binary_holds_no_runtime(example):
    exports = defined_symbols(STAGE / "lib" / "libchimaera.so.1", dynamic=True)
    exports = {s.split("@")[0] for s in exports if s.startswith("chi_")}
    assert "chi_client_init" in exports and "chi_task_new" in exports
    mine = defined_symbols(example)
    assert not (mine & exports), f"the example defines library symbols: {sorted(mine & exports)[:10]}"
    # No Swift code of the runtime module (Chimaera) or of its transport (SwiftNIO).
    runtime = [s for s in mine if s.startswith(("$s8Chimaera", "$s7NIOCore", "$s8NIOPosix"))]
    assert not runtime, runtime[:10]
    needed = subprocess.run(["readelf", "-d", str(example)], capture_output=True, text=True,
                            timeout=60, check=True).stdout
    assert "[libchimaera.so.1]" in needed, needed


def test_swift_example_builds_against_a_copied_prefix_and_uses_its_library(tmp_path):
    """A prefix moved elsewhere (as `make install` copies the stage) serves the example: the
    Swift API package in share/chimaera/ChimaeraSwift links that prefix's library."""
    if shutil.which("swift") is None:
        pytest.skip("no Swift toolchain")
    require_staged()
    prefix = tmp_path / "prefix"
    shutil.copytree(STAGE, prefix, symlinks=True)
    scratch = tmp_path / "scratch"
    env = dict(os.environ, CHIMAERA_PREFIX=str(prefix))
    rc, out = run(["swift", "build", "--package-path", REPO / "examples" / "swift",
                   "--scratch-path", scratch, "--product", "SwiftClientExample"],
                  env=env, timeout=900)
    assert rc == 0, out
    clean = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    rc, out = run([scratch / "debug" / "SwiftClientExample", "--embedded"], env=clean, timeout=120)
    assert rc == 0, out
    m = re.search(r"^Runtime: embedded, libchimaera.so mapped from 1 file\(s\): (.*)$", out, re.M)
    assert m, out
    assert os.path.realpath(m.group(1)) == os.path.realpath(prefix / "lib" / "libchimaera.so.1"), out


def test_bench_swift_reports_sync_async_and_the_c_client(tmp_path):
    require_staged()
    env = dict(os.environ, CHI_MODULE_PATH=str(STAGE / "lib" / "chimaera"))
    rc, out = run([STAGE / "bin" / "chimaera", "bench", "swift", "--json", "--iters", "4000"],
                  env=env, timeout=600)
    assert rc == 0, out
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["case"] == "swift"
    for key in ("swift_sync_md_ns_p50", "swift_async_md_ns_p50", "swift_async_pool_md_ns_p50",
                "swift_parked_md_ns_p50",
                "c_sync_md_ns_p50", "async_sync_ratio_p50", "swift_c_sync_ratio_p50"):
        assert figures[key] > 0, (key, figures)
    assert figures["target_async_sync_ratio"] == 5
    assert figures["iters"] == 4000
