"""The `chimaera` command line: start, stop and status, config errors, coexisting daemons."""

import json
import re
import subprocess
import time

import pytest

from conftest import (STAGE, client_env, pid_alive, require_staged, run, shm_path,
                      unique_segment, wait_gone)

CHIMAERA = STAGE / "bin" / "chimaera"

BAD_CONFIGS = [
    # (id, config text, the key the message must name)
    ("unknown-runtime-key", "runtime:\n  bogus_knob: 3\n", "bogus_knob"),
    ("unknown-section", "daemonz:\n  queue_depth: 64\n", "daemonz"),
    ("queue-depth-not-a-number", "runtime:\n  queue_depth: banana\n", "queue_depth"),
    ("bad-shm-size-suffix", "runtime:\n  shm_size: 12Q\n", "shm_size"),
    ("negative-workers", "runtime:\n  low_latency_workers: -2\n", "low_latency_workers"),
    ("pin-workers-not-bool", "runtime:\n  pin_workers: maybe\n", "pin_workers"),
    ("module-path-not-a-list", "runtime:\n  module_path: {a: 1}\n", "module_path"),
    ("unknown-client-mode", "client:\n  mode: telepathy\n", "mode"),
    ("unknown-client-key", "client:\n  spin_us: 5\n  colour: red\n", "colour"),
]


def assert_nothing_running(d):
    assert not shm_path(d.segment).exists(), f"a failed start left {shm_path(d.segment)}"
    if d.pid_file.exists() and d.pid_file.read_text().strip().isdigit():
        pid = int(d.pid_file.read_text())
        assert not pid_alive(pid), f"a failed start left pid {pid} running"


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_names_the_key(case, daemons):
    _, text, key = case
    d = daemons.new(config=text)
    rc, out = d.try_start()
    assert rc != 0, f"start accepted a config with a bad {key}:\n{text}\n{out}"
    assert key in out + d.log(), f"the error does not name {key!r}:\n{out}"
    assert_nothing_running(d)


def test_bad_config_from_env_names_the_key(daemons, tmp_path):
    conf = tmp_path / "bad.yaml"
    conf.write_text("runtime:\n  worker_spin_us: lots\n")
    d = daemons.new(config=None)
    d.env["CHIMAERA_CONF"] = str(conf)
    rc, out = d.try_start()
    assert rc != 0, f"start accepted $CHIMAERA_CONF with a bad worker_spin_us:\n{out}"
    assert "worker_spin_us" in out + d.log(), f"the error does not name the key:\n{out}"
    assert_nothing_running(d)


def test_missing_config_file_fails(daemons, tmp_path):
    d = daemons.new(config=None)
    rc, out = run(d.start_cmd() + ["--config", tmp_path / "nope.yaml"], env=d.env)
    assert rc != 0 and "nope.yaml" in out, f"exit {rc}, output:\n{out}"
    assert_nothing_running(d)


def test_full_config_is_accepted(daemons):
    cfg = {"runtime": {"name": "ignored_when_segment_given", "shm_size": "64M",
                       "queue_depth": 256, "low_latency_workers": 1, "high_latency_workers": 1,
                       "pin_workers": False, "worker_spin_us": 50,
                       "module_path": [str(STAGE / "lib" / "chimaera")],
                       "modules": ["small_message"], "log_level": "info"},
           "client": {"mode": "attach", "spin_us": 20}}
    d = daemons.start(config=cfg)
    rc, out = d.status()
    assert rc == 0, out


def test_stop_removes_segment_and_process(daemons):
    d = daemons.start()
    assert shm_path(d.segment).exists(), f"a running daemon has no {shm_path(d.segment)}"
    t0 = time.monotonic()
    rc, out = d.stop()
    assert rc == 0, f"stop exited {rc}:\n{out}"
    assert wait_gone(d.pid, 2), f"pid {d.pid} still runs after stop returned"
    assert not shm_path(d.segment).exists(), f"{shm_path(d.segment)} left after stop"
    print(f"stop took {time.monotonic() - t0:.3f} s")
    rc, out = d.stop()
    assert rc == 1, f"stop with nothing running exited {rc} (want 1):\n{out}"


def test_stop_of_unknown_segment_exits_1():
    require_staged()
    rc, out = run([CHIMAERA, "stop", "--segment", unique_segment("never")])
    assert rc == 1, f"exit {rc}:\n{out}"


def test_status_shows_workers_pools_and_idle_cpu(daemon):
    rc, out = daemon.status()
    assert rc == 0, f"status exited {rc}:\n{out}"
    low = out.lower()
    assert "worker" in low and "pool" in low, f"status names no workers or pools:\n{out}"
    # "idle: 99.8%" or "cpu: 0.2% of one core": a percentage next to the word, not a core id.
    assert re.search(r"(idle|cpu)[^\n]{0,40}?\d+(\.\d+)?\s*%", low), \
        f"status shows no idle CPU figure:\n{out}"
    rc, out = daemon.status("--json")
    assert rc == 0, f"status --json exited {rc}:\n{out}"
    doc = json.loads(out)
    assert isinstance(doc, dict) and "workers" in out and "pools" in out, out


def test_status_of_unknown_segment_fails():
    require_staged()
    rc, out = run([CHIMAERA, "status", "--segment", unique_segment("never")])
    assert rc != 0, f"status with nothing running exited 0:\n{out}"


def test_two_daemons_coexist(daemons):
    a, b = daemons.start(), daemons.start()
    assert a.pid != b.pid
    for d in (a, b):
        rc, out = d.status()
        assert rc == 0, f"status of {d.segment}: {out}"
    rc, out = a.stop()
    assert rc == 0, out
    assert wait_gone(a.pid, 5) and not shm_path(a.segment).exists()
    assert pid_alive(b.pid) and shm_path(b.segment).exists(), "stopping one stopped both"
    rc, out = b.status()
    assert rc == 0, f"the other daemon stopped serving: {out}"


def test_second_start_on_served_segment_fails(daemons):
    first = daemons.start()
    second = daemons.new(segment=first.segment)
    rc, out = second.try_start(timeout=30)
    assert rc != 0, f"a second daemon started on {first.segment}:\n{out}"
    assert first.segment in out or "already" in out.lower(), \
        f"the message does not say the segment is served:\n{out}"
    assert pid_alive(first.pid), "the first daemon died"
    assert shm_path(first.segment).exists(), "the failed start removed the live segment"
    rc, out = first.status()
    assert rc == 0, f"the first daemon stopped serving: {out}"


def test_foreground_start_serves_until_stopped(daemons, tmp_path):
    require_staged()
    d = daemons.new()
    log = open(tmp_path / "fg.out", "wb")
    proc = subprocess.Popen([str(CHIMAERA), "start", "--segment", d.segment,
                             "--config", str(d.config)],
                            env=client_env(d.segment), stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT)
    d.pid = proc.pid
    try:
        deadline = time.monotonic() + 15
        while d.status()[0] != 0:
            assert proc.poll() is None, \
                f"foreground start exited {proc.returncode}:\n{(tmp_path / 'fg.out').read_text()}"
            assert time.monotonic() < deadline, "foreground daemon not serving after 15 s"
            time.sleep(0.1)
        # The daemon is our child: reap it while stop waits, or stop would see a zombie.
        stopper = subprocess.Popen([str(CHIMAERA), "stop", "--segment", d.segment],
                                   env=d.env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.wait(timeout=15) == 0, (tmp_path / "fg.out").read_text()
        out = stopper.communicate(timeout=15)[0].decode(errors="replace")
        assert stopper.returncode == 0, f"stop exited {stopper.returncode}:\n{out}"
        assert not shm_path(d.segment).exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def test_detach_writes_log_file(daemon):
    assert daemon.log_file.exists(), f"--log-file {daemon.log_file} was not created"


def test_unknown_command_fails():
    require_staged()
    rc, out = run([CHIMAERA, "frobnicate"])
    assert rc != 0 and out.strip(), f"exit {rc}, output {out!r}"



@pytest.mark.parametrize("opt", ["--pid-file", "--log-file"])
def test_detach_with_missing_directory_fails_before_starting(opt, daemons, tmp_path):
    """Issue 18: start --detach said "serving" and wrote neither file."""
    d = daemons.new()
    cmd = [CHIMAERA, "start", "--segment", d.segment, "--detach",
           opt, tmp_path / "missing" / "x"]
    rc, out = run(cmd, env=d.env)
    assert rc != 0, f"start with {opt} in a missing directory exited 0:\n{out}"
    assert opt in out and "missing" in out, f"the error does not name {opt} and its path:\n{out}"
    assert "serving" not in out, out
    assert_nothing_running(d)


def test_cluster_start_with_missing_log_dir_fails(tmp_path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("127.0.0.1\n")
    rc, out = run([CHIMAERA, "cluster", "start", "--hostfile", hostfile, "--segment",
                   unique_segment("cl"), "--log-dir", tmp_path / "missing"])
    assert rc != 0 and "--log-dir" in out, f"exit {rc}:\n{out}"


def test_failed_start_leaves_no_segment_and_next_start_works(daemons, tmp_path):
    """Issue 18: a start that failed (a module not found) left its segment behind, and the
    next start refused until `chimaera stop`."""
    d = daemons.new(config={"runtime": {"shm_size": "64M", "modules": ["no_such_module_x"]}})
    rc, out = d.try_start()
    assert rc != 0, f"start with a missing module exited 0:\n{out}"
    assert "no_such_module_x" in out + d.log(), out
    assert_nothing_running(d)
    good = daemons.new(segment=d.segment)
    good.start()
    assert pid_alive(good.pid)
