"""Fixtures for the process-level tests: the staged prefix, and daemons that are always stopped.

The staged prefix (bin/, lib/, include/ as `make all` lays them out) is $CHI_STAGE, else
build/ at the top of the repository. Every daemon gets a unique segment, and teardown always
runs `chimaera stop`, then SIGKILLs the pid if it is still alive after 5 s, then removes
/dev/shm/chimaera_<segment> if it was left behind.
"""

import itertools
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGE = Path(os.environ.get("CHI_STAGE") or REPO / "build").resolve()
CC = os.environ.get("CC", "cc")
CXX = os.environ.get("CXX", "c++")

_counter = itertools.count()
# Pids of every daemon started in this session, for the last-resort sweep.
_started_pids = set()

# The configuration the C API tests run against: a segment big enough for test_buffers.
TEST_CONFIG = {"runtime": {"shm_size": "256M"}}


def unique_segment(tag="t"):
    return f"{tag}{os.getpid()}_{next(_counter)}"


def shm_path(segment):
    return Path("/dev/shm") / f"chimaera_{segment}"


def sock_path(segment):
    """Where clients of the segment register (the runtime removes it when it stops)."""
    return Path("/dev/shm") / f"chimaera_{segment}.sock"


def pid_alive(pid):
    """True while pid runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_gone(pid, seconds):
    deadline = time.monotonic() + seconds
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def run(cmd, env=None, timeout=30, cwd=None):
    """Runs cmd with its output in a file, not a pipe: a daemon that forks off and keeps an
    inherited stdout would otherwise keep the pipe open and hang the read. Returns
    (exit status, output). Raises subprocess.TimeoutExpired after timeout seconds."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                              stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
        out.seek(0)
        return proc.returncode, out.read().decode(errors="replace")


def to_yaml(value, indent=0):
    """Renders nested dicts of scalars and lists as YAML (no PyYAML on a fresh machine)."""
    lines = []
    for key, val in value.items():
        pad = "  " * indent
        if isinstance(val, dict):
            lines.append(f"{pad}{key}:")
            lines.append(to_yaml(val, indent + 1))
        elif isinstance(val, (list, tuple)):
            lines.append(f"{pad}{key}: [{', '.join(_scalar(v) for v in val)}]")
        else:
            lines.append(f"{pad}{key}: {_scalar(val)}")
    return "\n".join(lines)


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def client_env(segment, stage=STAGE, **extra):
    """The environment of a client of the daemon serving segment."""
    env = dict(os.environ)
    for k in ("CHIMAERA_EMBEDDED", "CHIMAERA_CONF"):
        env.pop(k, None)
    env["CHIMAERA_SEGMENT"] = segment
    env["CHI_MODULE_PATH"] = str(Path(stage) / "lib" / "chimaera")
    env.update(extra)
    return env


def require_staged(stage=STAGE):
    for rel in ("bin/chimaera", "lib/libchimaera.so", "include/chimaera/chimaera.h"):
        if not (Path(stage) / rel).exists():
            pytest.fail(f"{Path(stage) / rel} is missing: run `make all` first")


def cmdline_pids(binary, segment):
    """Pids of processes running `<binary> start ... --segment <segment>`: an exact match on
    our own unique segment, for a daemon whose pid file was never written."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            args = [a.decode(errors="replace")
                    for a in (d / "cmdline").read_bytes().split(b"\0")]
        except OSError:
            continue
        if not args or Path(args[0]).name != Path(binary).name or "start" not in args:
            continue
        if any(a == "--segment" and b == segment for a, b in zip(args, args[1:])):
            pids.append(int(d.name))
    return pids


class Daemon:
    """One `chimaera start --detach` daemon. Construct through the `daemons` fixture."""

    def __init__(self, workdir, stage=STAGE, config=TEST_CONFIG, segment=None):
        self.stage = Path(stage)
        self.bin = self.stage / "bin" / "chimaera"
        self.segment = segment or unique_segment()
        self.dir = Path(workdir) / self.segment
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pid_file = self.dir / "pid"
        self.log_file = self.dir / "log"
        self.config = None
        if config is not None:
            self.config = self.dir / "config.yaml"
            self.config.write_text(config if isinstance(config, str) else to_yaml(config) + "\n")
        self.pid = None
        self.env = client_env(self.segment, self.stage)

    def start_cmd(self):
        cmd = [self.bin, "start", "--segment", self.segment, "--detach",
               "--pid-file", self.pid_file, "--log-file", self.log_file]
        if self.config is not None:
            cmd += ["--config", self.config]
        return cmd

    def try_start(self, timeout=30):
        """Runs start; returns (exit status, output) without judging them."""
        rc, out = run(self.start_cmd(), env=self.env, timeout=timeout)
        if rc == 0:
            self._read_pid()
        return rc, out

    def start(self):
        require_staged(self.stage)
        rc, out = self.try_start()
        if rc != 0:
            pytest.fail(f"chimaera start --segment {self.segment} exited {rc}:\n{out}\n"
                        f"log:\n{self.log()}")
        assert self.pid is not None, f"start exited 0 but wrote no pid to {self.pid_file}"
        assert pid_alive(self.pid), f"start exited 0 but pid {self.pid} is not running"
        return self

    def _read_pid(self):
        try:
            self.pid = int(self.pid_file.read_text().strip())
            _started_pids.add(self.pid)
        except (OSError, ValueError):
            self.pid = None

    def log(self):
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def status(self, *args, timeout=30):
        return run([self.bin, "status", "--segment", self.segment, *args], env=self.env,
                   timeout=timeout)

    def stop(self, timeout_ms=5000):
        return run([self.bin, "stop", "--segment", self.segment, "--timeout-ms", timeout_ms],
                   env=self.env, timeout=timeout_ms / 1000 + 10)

    def cleanup(self):
        """Always leaves no process and no segment behind; never raises."""
        if self.pid is None:
            self._read_pid()
        try:
            self.stop()
        except (subprocess.TimeoutExpired, OSError):
            pass
        pids = {self.pid} if self.pid else set()
        pids.update(cmdline_pids(self.bin, self.segment))
        for pid in pids:
            if not wait_gone(pid, 5):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                wait_gone(pid, 5)
        for p in (shm_path(self.segment), sock_path(self.segment)):
            try:
                p.unlink()
            except FileNotFoundError:
                pass


class Daemons:
    def __init__(self, workdir):
        self.workdir = workdir
        self.all = []

    def new(self, **kw):
        """A daemon that is set up but not started (teardown still cleans it up)."""
        d = Daemon(self.workdir, **kw)
        self.all.append(d)
        return d

    def start(self, **kw):
        return self.new(**kw).start()

    def cleanup(self):
        for d in reversed(self.all):
            d.cleanup()


@pytest.fixture
def daemons(tmp_path):
    """Factory: daemons.start(config=..., stage=...) -> a running Daemon, stopped at teardown."""
    ds = Daemons(tmp_path)
    yield ds
    ds.cleanup()


@pytest.fixture
def daemon(daemons):
    """A running daemon with the test configuration."""
    return daemons.start()


@pytest.fixture(scope="session", autouse=True)
def _sweep_at_end():
    """Last resort after the session: kill any daemon we started that still runs, and
    remove segments named like ours."""
    yield
    for pid in _started_pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    for p in Path("/dev/shm").glob(f"chimaera_t{os.getpid()}_*"):
        p.unlink(missing_ok=True)


def build_example(out_dir, stage=STAGE):
    """Compiles examples/c/client_example.c against stage; returns the binary's path."""
    out = Path(out_dir) / "client_example"
    rc, log = run([CC, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror",
                   f"-I{stage}/include", REPO / "examples" / "c" / "client_example.c",
                   "-o", out, f"-L{stage}/lib", "-lchimaera", f"-Wl,-rpath,{stage}/lib"],
                  timeout=120)
    assert rc == 0, f"building client_example failed:\n{log}"
    return out


LATENCY_RE = re.compile(
    r"^Latency: 256 ops, [0-9.]+ us total, [0-9.]+ us/op, [0-9.]+ MOps/s$", re.M)
