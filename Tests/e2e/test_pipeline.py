"""`chimaera pipeline run FILE`: the seed's pipeline shape run end to end. The runtime it
starts serves the applications and is gone afterwards, with its segment; a failing application's
exit status is the pipeline's; SIGTERM stops the application and the runtime; bad files are
named. The compressor example pipeline runs compress_test against the example module."""

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (LATENCY_RE, REPO, STAGE, cmdline_pids, pid_alive, require_staged, run,
                      shm_path, sock_path, to_yaml, unique_segment, wait_gone)

BIN = STAGE / "bin" / "chimaera"
SERVING = re.compile(r'runtime "([^"]+)" serving \(pid (\d+)')


@pytest.fixture
def pipeline(tmp_path):
    """Runs pipelines on unique segments; afterwards kills any runtime they left and removes
    its segment, so a failing test leaves nothing behind (the checks come before this)."""
    started = []

    def go(text, *args, timeout=60, env=None, name="p.yaml"):
        require_staged()
        f = tmp_path / name
        f.write_text(text)
        seg = unique_segment("t")
        started.append(seg)
        e = dict(os.environ, CHI_MODULE_PATH=str(STAGE / "lib/chimaera"))
        e.pop("CHIMAERA_SEGMENT", None)
        e.update(env or {})
        rc, out = run([BIN, "pipeline", "run", f, "--segment", seg, *args], env=e, timeout=timeout)
        return rc, out, seg

    go.started = started
    yield go
    for seg in started:
        for s in (seg, f"{seg}_n1", f"{seg}_n2"):
            for pid in cmdline_pids(BIN, s):
                os.kill(pid, signal.SIGKILL)
            for p in (shm_path(s), sock_path(s)):
                p.unlink(missing_ok=True)


def runtime_pid(out):
    m = SERVING.search(out)
    assert m, f"no 'serving (pid N)' line:\n{out}"
    return int(m.group(2))


def assert_stopped(pid, seg):
    try:
        assert wait_gone(pid, 5), f"runtime pid {pid} still runs after the pipeline ended"
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert not shm_path(seg).exists(), f"{shm_path(seg)} was left behind"
    assert not sock_path(seg).exists(), f"{sock_path(seg)} was left behind"


def runtime_pkg(**extra):
    keys = {"sleep": 0.2, "port": 20000 + os.getpid() % 20000, "shm_size": "64M",
            "modules": "['small_message']", **extra}
    return "  - pkg_type: chimaera_run\n    pkg_name: chimaera_run\n" + "".join(
        f"    {k}: {v}\n" for k, v in keys.items())


def test_pipeline_runs_apps_against_its_runtime_and_stops_it(pipeline, tmp_path):
    comp = tmp_path / "pools.yaml"
    comp.write_text("pools:\n  - name: ppl_sm\n    module: small_message\n")
    rc, out, seg = pipeline(f"""\
name: e2e_pipeline
env:
  MARK: pipeline-env
  MARK2: ${{MARK}}-expanded
pkgs:
{runtime_pkg()}  - pkg_type: hello
    cmd: echo "hello $MARK2 on $CHIMAERA_SEGMENT"
  - pkg_type: composer
    pkg_name: make_pools
    cmd: ["{BIN}", "compose", "{comp}"]
  - pkg_type: status
    cmd: "{BIN} status --json"
""")
    assert rc == 0, out
    pid = runtime_pid(out)
    assert f"hello pipeline-env-expanded on {seg}" in out, out
    # compose and status reached the runtime through CHIMAERA_SEGMENT alone.
    assert "pool ppl_sm: created" in out, out
    assert re.search(r'"name":\s*"ppl_sm"', out), out
    assert "done, 3 application(s) ran" in out, out
    assert_stopped(pid, seg)


def test_pipeline_failing_app_gives_its_exit_code_and_stops_the_runtime(pipeline):
    rc, out, seg = pipeline(f"""\
name: failing
pkgs:
{runtime_pkg()}  - pkg_type: ok
    cmd: echo first-ran
  - pkg_type: broken
    pkg_name: broken_app
    cmd: [sh, -c, "echo about-to-fail; exit 7"]
  - pkg_type: later
    cmd: echo should-not-run
""")
    assert rc == 7, out
    pid = runtime_pid(out)
    assert "first-ran" in out and "about-to-fail" in out, out
    assert "broken_app exited with status 7" in out, out
    assert "should-not-run" not in out, out
    assert "stopped" in out, out
    assert_stopped(pid, seg)


def test_pipeline_command_not_found_is_127(pipeline):
    rc, out, seg = pipeline(f"name: nf\npkgs:\n{runtime_pkg()}  - pkg_type: x\n    cmd: [no_such_program_xyz]\n")
    assert rc == 127, out
    assert "no_such_program_xyz" in out, out
    assert_stopped(runtime_pid(out), seg)


def test_pipeline_module_not_found_stops_the_runtime(pipeline):
    rc, out, seg = pipeline(f"name: nm\npkgs:\n{runtime_pkg(modules='[no_such_mod_q]')}"
                            "  - pkg_type: x\n    cmd: echo never\n")
    assert rc == 1, out
    assert 'module "no_such_mod_q"' in out, out
    assert "pipeline nm: x:" not in out, out
    assert not shm_path(seg).exists(), out


def test_pipeline_sigterm_stops_app_and_runtime(tmp_path, pipeline):
    require_staged()
    f = tmp_path / "long.yaml"
    f.write_text(f"name: long\npkgs:\n{runtime_pkg()}  - pkg_type: sleeper\n"
                 "    cmd: echo app-started; exec sleep 60\n")
    seg = unique_segment("t")
    pipeline.started.append(seg)
    log = tmp_path / "out"
    env = dict(os.environ, CHI_MODULE_PATH=str(STAGE / "lib/chimaera"))
    with open(log, "wb") as o:
        p = subprocess.Popen([str(BIN), "pipeline", "run", str(f), "--segment", seg],
                             stdout=o, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 20
        while "app-started" not in log.read_text() and time.monotonic() < deadline:
            assert p.poll() is None, log.read_text()
            time.sleep(0.05)
        out = log.read_text()
        assert "app-started" in out, out
        sleeper = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()
                   and _ppid(d) == p.pid]
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
    out = log.read_text()
    assert rc == 128 + signal.SIGTERM, out
    assert "interrupted by signal 15 while sleeper ran" in out, out
    for pid in sleeper:
        assert wait_gone(pid, 5), f"the application (pid {pid}) outlived the pipeline"
    assert_stopped(runtime_pid(out), seg)


def test_pipeline_sigint_while_waiting_after_start_stops_runtime(tmp_path, pipeline):
    """Ctrl-C during chimaera_run's `sleep`: no application runs, the runtime is stopped, and
    --runtime-log keeps the runtime's output."""
    require_staged()
    f = tmp_path / "slow.yaml"
    f.write_text(f"name: slow\npkgs:\n{runtime_pkg(sleep=60)}  - pkg_type: app\n    cmd: echo app-ran\n")
    seg = unique_segment("t")
    pipeline.started.append(seg)
    log, rlog = tmp_path / "out", tmp_path / "runtime.log"
    env = dict(os.environ, CHI_MODULE_PATH=str(STAGE / "lib/chimaera"))
    with open(log, "wb") as o:
        p = subprocess.Popen([str(BIN), "pipeline", "run", str(f), "--segment", seg,
                              "--runtime-log", str(rlog)],
                             stdout=o, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 20
        while not SERVING.search(log.read_text()) and time.monotonic() < deadline:
            assert p.poll() is None, log.read_text()
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
    out = log.read_text()
    assert rc == 128 + signal.SIGINT, out
    assert "interrupted by signal 2" in out and "app-ran" not in out, out
    assert rlog.exists(), "--runtime-log was not written"
    assert_stopped(runtime_pid(out), seg)


def test_pipeline_over_a_hostfile_starts_and_stops_every_node(pipeline, tmp_path):
    """--hostfile: two local nodes (chimaera cluster start); the application talks to this
    node's runtime, which sees its peer; both nodes and segments are gone afterwards."""
    import socket
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    hosts = tmp_path / "hosts"
    hosts.write_text("".join(f"127.0.0.1:{p}\n" for p in ports))
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(to_yaml({"runtime": {"shm_size": "64M", "pin_workers": False},
                            "cluster": {"key": '"pipeline-test-key-0123456789"'}}) + "\n")
    rc, out, seg = pipeline(f"""\
name: clustered
pkgs:
  - pkg_type: chimaera_run
    config: {cfg}
    modules: [small_message]
  - pkg_type: status
    cmd: "{BIN} status"
""", "--hostfile", str(hosts), timeout=120)
    assert rc == 0, out
    assert f'runtime "{seg}_n1" serving' in out, out
    assert "cluster: node 1 of 2" in out, out
    assert f'cluster "{seg}" stopped' in out, out
    for s in (f"{seg}_n1", f"{seg}_n2"):
        assert not cmdline_pids(BIN, s), f"a runtime of {s} still runs"
        assert not shm_path(s).exists(), f"{shm_path(s)} was left behind"


def _ppid(d):
    try:
        return int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


@pytest.mark.parametrize("text,line,what", [
    ("name: b\npkgs:\n  - pkg_type: chimaera_run\n    prot: 6000\n", 4,
     'package "chimaera_run": unknown key `prot`'),
    ("name: b\npkgs:\n  - pkg_type: app\n    pkg_name: myapp\n", 3,
     'package "myapp": key `cmd` is required'),
    ("name: b\npkgs:\n  - pkg_type: chimaera_run\n    sleep: soon\n", 4,
     'package "chimaera_run": sleep: expected a number of seconds'),
    ("name: b\npkgs:\n  - pkg_type: chimaera_run\n  - pkg_type: chimaera_run\n    pkg_name: two\n", 4,
     "a second chimaera_run"),
    ("name: b\nenvv: {}\npkgs: []\n", 2, "unknown key `envv`"),
])
def test_pipeline_bad_file_is_named(pipeline, text, line, what):
    rc, out, seg = pipeline(text, name="bad.yaml")
    assert rc == 2, out
    assert f"bad.yaml:{line}: " in out and what in out, out
    assert "starting runtime" not in out, out


def test_pipeline_help():
    require_staged()
    for args in (["pipeline", "--help"], ["pipeline", "run", "--help"]):
        rc, out = run([BIN, *args])
        assert rc == 0, out
        assert "run" in out and ("chimaera_run" in out), out


def test_client_example_pipeline(pipeline):
    """examples/deploy/client_pipeline.yaml: client_example and `chimaera status` (from PATH)
    against the pipeline's own runtime."""
    text = (REPO / "examples/deploy/client_pipeline.yaml").read_text()
    rc, out, seg = pipeline(text, env={"PATH": f"{STAGE}/bin:{os.environ['PATH']}"})
    assert rc == 0, out
    assert LATENCY_RE.search(out), out
    assert "ipc_test module=small_message" in out, out
    assert_stopped(runtime_pid(out), seg)


def test_compressor_example_pipeline(tmp_path, pipeline):
    """examples/deploy/compressor_pipeline.yaml runs compress_test against the example module
    (built from examples/compressor with CMake into a prefix)."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed (`make deps` installs it)")
    require_staged()
    inst = tmp_path / "inst"
    rc, out = run(["cmake", "-S", REPO / "examples/compressor", "-B", tmp_path / "build",
                   f"-DCMAKE_PREFIX_PATH={STAGE}", f"-DCMAKE_INSTALL_PREFIX={inst}"], timeout=120)
    assert rc == 0, out
    rc, out = run(["cmake", "--build", tmp_path / "build", "-j2"], timeout=300)
    assert rc == 0, out
    rc, out = run(["cmake", "--install", tmp_path / "build"], timeout=60)
    assert rc == 0, out
    data = tmp_path / "data.bin"
    data.write_bytes(b"".join(b"line %d of the pipeline's test file\n" % i for i in range(40000)))
    text = (REPO / "examples/deploy/compressor_pipeline.yaml").read_text()
    rc, out, seg = pipeline(text, env={"COMPRESSOR_PREFIX": str(inst),
                                       "COMPRESS_TEST_FILE": str(data)}, timeout=120)
    assert rc == 0, out
    assert f"{data.stat().st_size} bytes round-tripped" in out, out
    print(out)
    assert "modules example_compressor" in out, out
    assert_stopped(runtime_pid(out), seg)
