"""The libFuzzer targets (`make fuzz`), each run for a short bounded time from its checked-in
corpus (Tests/fuzz/corpus/<target>/) by Tests/fuzz/run.sh.

A crash, a timeout on one input or an out-of-memory fails the target's test; the input stays in
build-fuzz/crashes/<target>-<kind>-<sha1> and its Base64 is in the failure message. Replay it
with `build-fuzz/bin/fuzz-<target> FILE`. CHI_FUZZ_SECONDS sets the time per target (default
20); CHI_SKIP_FUZZ=1 skips this file. The build takes about 3 minutes from nothing on 2 cores.
"""

import os
import re
from pathlib import Path

import pytest

from conftest import REPO, run

CORPUS = REPO / "Tests" / "fuzz" / "corpus"
TARGETS = sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) if CORPUS.is_dir() else []
SECONDS = int(os.environ.get("CHI_FUZZ_SECONDS", "20"))
BUILD_TIMEOUT = 1800


@pytest.fixture(scope="session")
def fuzz_stage():
    if os.environ.get("CHI_SKIP_FUZZ"):
        pytest.skip("CHI_SKIP_FUZZ is set")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    rc, out = run(["make", "-C", REPO, "fuzz"], env=env, timeout=BUILD_TIMEOUT)
    assert rc == 0, f"make fuzz exited {rc}:\n{out[-6000:]}"
    return REPO / "build-fuzz"


def test_every_target_has_a_corpus(fuzz_stage, tmp_path):
    """The binary's table and the corpus folders name the same targets: a target without a
    folder would never run, a folder without a target would fail every run."""
    probe = tmp_path / "fuzz-no-such-target"
    probe.symlink_to(fuzz_stage / "bin" / "chimaera-fuzz")
    rc, out = run([probe], timeout=60)
    m = re.search(r"targets: (.*)", out)
    assert rc == 2 and m, f"fuzz-no-such-target exited {rc} without the list of targets:\n{out}"
    assert sorted(m.group(1).split(", ")) == TARGETS, \
        f"targets in Sources/ChimaeraFuzz: {m.group(1)}; corpus folders: {TARGETS}"


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target(target, fuzz_stage):
    rc, out = run([REPO / "Tests" / "fuzz" / "run.sh", fuzz_stage, SECONDS, target],
                  timeout=SECONDS + 120)
    print(out)
    assert rc == 0, f"fuzz-{target} found a problem in {SECONDS} s:\n{out}\n" \
                    f"full log: {Path(fuzz_stage) / 'crashes' / (target + '.log')}"
