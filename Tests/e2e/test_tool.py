"""The `chimaera` tool as its own program: --help everywhere, --version, usage errors that name
the option, and a libchimaera.so that holds the runtime alone (no CLI, no generators)."""

import re
import subprocess

import pytest

from conftest import STAGE, require_staged, run

CHIMAERA = STAGE / "bin" / "chimaera"
LIB = STAGE / "lib" / "libchimaera.so.1"

SUBCOMMANDS = {
    # subcommand -> options its --help must list
    "start": ["--segment", "--config", "--detach", "--pid-file", "--log-file", "--hostfile", "--node-id"],
    "stop": ["--segment", "--timeout-ms", "--all"],
    "status": ["--segment", "--json", "--cpu-window-ms"],
    "worch": ["--segment"],
    "compose": ["--segment", "--config", "--json", "--timeout-ms"],
    "pipeline": ["run"],
    "top": ["--segment", "--once"],
    "module": ["upgrade"],
    "migrate": ["--segment", "--pool", "--container", "--to"],
    "bench": ["--json", "--segment", "--sync", "--async", "--threads", "--seconds", "--iters", "--contended"],
    "cluster": ["--hostfile", "--log-dir", "--json"],
    "make-repo": [],
    "make-mod": ["--lang"],
    "refresh-repo": [],
}


@pytest.fixture(autouse=True)
def _staged():
    require_staged()


@pytest.mark.parametrize("sub", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(sub):
    rc, out = run([CHIMAERA, sub, "--help"])
    assert rc == 0, f"chimaera {sub} --help exited {rc}:\n{out}"
    for opt in SUBCOMMANDS[sub]:
        assert opt in out, f"chimaera {sub} --help does not list {opt}:\n{out}"


def test_top_level_help_lists_every_subcommand():
    rc, out = run([CHIMAERA, "--help"])
    assert rc == 0, out
    for sub in SUBCOMMANDS:
        assert sub in out, f"--help does not list {sub}:\n{out}"


def test_bench_help_lists_the_external_cases():
    rc, out = run([CHIMAERA, "bench", "--help"])
    assert rc == 0, out
    for case in ("small-message", "idle", "remote", "bdev", "python", "orchestration", "scale",
                 "upgrade", "migrate"):
        assert case in out, f"bench --help does not name {case}:\n{out}"


def test_version_prints_version_and_abi():
    header = (STAGE / "include" / "chimaera" / "version.h").read_text()
    major = re.search(r"CHI_ABI_MAJOR (\d+)", header).group(1)
    minor = re.search(r"CHI_ABI_MINOR (\d+)", header).group(1)
    version = re.search(r'CHI_VERSION_STRING "([^"]+)"', header).group(1)
    rc, out = run([CHIMAERA, "--version"])
    assert rc == 0, out
    assert version in out and f"ABI {major}.{minor}" in out, out


@pytest.mark.parametrize("argv,name", [
    (["start", "--frobnicate"], "--frobnicate"),
    (["status", "--jsn"], "--jsn"),
    (["stop", "--segmnt", "x"], "--segmnt"),
    (["bench", "idle", "--secs", "1"], "--secs"),
])
def test_unknown_option_names_itself(argv, name):
    rc, out = run([CHIMAERA, *argv])
    assert rc == 2, f"chimaera {' '.join(argv)} exited {rc}:\n{out}"
    assert name in out, f"the error does not name {name}:\n{out}"


@pytest.mark.parametrize("argv,name", [
    (["start", "--segment"], "--segment"),
    (["stop", "--timeout-ms"], "--timeout-ms"),
    (["make-mod", "x/y", "--lang"], "--lang"),
])
def test_missing_value_names_the_option(argv, name):
    rc, out = run([CHIMAERA, *argv])
    assert rc == 2, f"chimaera {' '.join(argv)} exited {rc}:\n{out}"
    assert name in out and "value" in out.lower(), f"the error does not name {name}:\n{out}"


def test_bad_value_names_the_option():
    rc, out = run([CHIMAERA, "stop", "--timeout-ms", "soon"])
    assert rc == 2 and "--timeout-ms" in out, f"exit {rc}:\n{out}"


def _dynamic_symbols(path):
    out = subprocess.run(["nm", "-D", "--defined-only", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}


def _all_symbols(path):
    out = subprocess.run(["nm", "-C", str(path)], capture_output=True, text=True).stdout
    return out


def test_library_holds_the_runtime_alone():
    syms = _dynamic_symbols(LIB)
    assert "chi_runtime_serve" in syms and "chi_client_init" in syms, sorted(syms)
    assert "chi_tool_main" not in syms, "libchimaera.so still exports the tool's main"
    # The library is stripped of nothing: its local symbols name the Swift types it holds.
    text = _all_symbols(LIB)
    for marker in ("DevKit", "Templates", "MethodsFile", "ArgumentParser", "Bench", "StatsView"):
        assert marker not in text, f"libchimaera.so contains {marker} (the tool or the module kit)"


def test_tool_links_the_library_and_no_runtime_copy():
    needed = subprocess.run(["readelf", "-d", str(CHIMAERA)], capture_output=True, text=True,
                            check=True).stdout
    assert "libchimaera.so.1" in needed, f"the tool does not link libchimaera.so:\n{needed}"
    out = subprocess.run(["nm", str(CHIMAERA)], capture_output=True, text=True).stdout
    defined = [l.split()[-1] for l in out.splitlines() if len(l.split()) == 3 and l.split()[1] not in "Uw"]
    # Swift symbols of the runtime's module mangle as $s8Chimaera...; the C ABI as chi_*.
    core = [n for n in defined if n.startswith("$s8Chimaera")]
    assert not core, f"the tool carries its own copy of the runtime: {core[:3]}"
    for name in ("chi_runtime_serve", "chi_client_init", "chi_task_new"):
        assert name not in defined, f"the tool defines {name} itself"
