"""The README's "Using it" block, run line by line as written (issue 18), with the install
prefix, the segment and the pid file made unique: install, PATH, start, the client example,
a program built with the README's pkg-config line (rpath, no LD_LIBRARY_PATH), `import
chimaera` with no CHIMAERA_LIB, status, stop."""

import os
import re
import shlex
import subprocess

import pytest

from conftest import REPO, STAGE, require_staged, shm_path, unique_segment, wait_gone


def using_it_lines():
    text = (REPO / "README.md").read_text()
    m = re.search(r"## Using it\n\n```sh\n(.*?)```", text, re.S)
    assert m, "README.md has no \"Using it\" sh block"
    return [l for l in m.group(1).splitlines() if l.strip()]


def test_readme_using_it_runs_as_written(tmp_path):
    require_staged()
    if STAGE != (REPO / "build").resolve():
        pytest.skip("the README's make line stages in build/; this run uses another stage")
    prefix, segment, pidf = tmp_path / "prefix", unique_segment("readme"), tmp_path / "chi.pid"
    env = {k: v for k, v in os.environ.items()
           if k not in ("CHIMAERA_LIB", "LD_LIBRARY_PATH", "CHI_MODULE_PATH", "CHIMAERA_SEGMENT",
                        "CHIMAERA_CONF", "PYTHONPATH", "CHIMAERA_EMBEDDED")}
    script = ["set -e"]
    for line in using_it_lines():
        line = line.replace("/opt/chimaera", str(prefix)).replace("/tmp/chi.pid", str(pidf))
        line = re.sub(r"\bdemo\b", segment, line)
        script.append("echo " + shlex.quote("+ " + line.split("  #")[0].strip()))
        script.append(line)
    try:
        # make must run in the repo; every other line where the user stands (the repo too).
        proc = subprocess.run(["bash", "-c", "\n".join(script)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
        out = proc.stdout.decode(errors="replace")
        assert proc.returncode == 0, f"a README line failed:\n{out[-6000:]}"
        assert re.search(r"<CDLL|libchimaera", out), f"import chimaera loaded nothing:\n{out}"
        assert "stopped" in out, out
    finally:
        pid = None
        try:
            pid = int(pidf.read_text().strip())
        except (OSError, ValueError):
            pass
        subprocess.run([prefix / "bin" / "chimaera", "stop", "--segment", segment],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        if pid and not wait_gone(pid, 5):
            os.kill(pid, 9)
        if shm_path(segment).exists():
            shm_path(segment).unlink()
        (REPO / "app").unlink(missing_ok=True)
