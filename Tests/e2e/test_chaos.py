"""The chaos test (issue 12): 500 random SIGKILLs of clients that submit async tasks from
several threads (Tests/capi/hostile/chaos_client.c), while an observer client runs sync Md
with a 2 s timeout that must never time out. Afterwards the daemon is alive, and its
shm.heap_used and VmRSS are back within a few MiB of where they were before the chaos.
Bounded: the kill loop stops at its deadline, every wait has a timeout, and every process
started here is killed by its pid."""

import json
import os
import random
import signal
import subprocess
import time

import pytest

from conftest import CC, REPO, STAGE, pid_alive, require_staged, wait_gone
from test_capi import CFLAGS, compile_cmd, link_flags

KILLS = 500
CONCURRENT = 4         # worker processes alive at once
THREADS = 3            # submitting threads per worker
LIFETIME_MS = (5, 300)  # a worker is killed after a uniformly random time in this range
LOOP_S = 120           # the kill loop's deadline
HEAP_SLACK = 4 << 20
RSS_SLACK = 8 << 20
SETTLE_S = 20          # how long the daemon may take to reclaim the dead


class Wedged(Exception):
    """`chimaera status` did not answer in time."""


def status(d):
    try:
        rc, out = d.status("--json", timeout=10)
    except subprocess.TimeoutExpired:
        raise Wedged(f"chimaera status did not answer within 10 s\nlog:\n{d.log()}")
    assert rc == 0, f"chimaera status failed ({rc}):\n{out}\nlog:\n{d.log()}"
    return json.loads(out[out.index("{"):])


def memory(d):
    """(heap_used, VmRSS, RssAnon, RssShmem) of the daemon, in bytes."""
    st = {}
    with open(f"/proc/{d.pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssShmem"):
                st[key] = int(value.split()[0]) * 1024
    return status(d)["shm"]["heap_used"], st["VmRSS"], st["RssAnon"], st["RssShmem"]


def mib(n):
    return f"{n / (1 << 20):.1f} MiB"


def kill(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


@pytest.fixture
def chaos_bin(tmp_path):
    require_staged()
    out = tmp_path / "chaos_client"
    compile_cmd([CC, *CFLAGS, f"-I{STAGE}/include", REPO / "Tests" / "capi" / "hostile" /
                 "chaos_client.c", "-o", out, *link_flags()], "chaos_client")
    return out


def test_500_kills_under_load_stall_nobody_and_leak_nothing(chaos_bin, daemons, tmp_path):
    d = daemons.start(config={"runtime": {"shm_size": "1G"}})
    ready = tmp_path / "ready"
    env = dict(d.env, CHAOS_READY_FILE=str(ready))
    rng = random.Random(12)
    procs = []

    def spawn(*args):
        p = subprocess.Popen([str(chaos_bin), *map(str, args)], env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        procs.append(p)
        return p

    obs_log = open(tmp_path / "observer.log", "w+")
    try:
        # Warm up with one worker that ends cleanly, so the pool exists and the daemon has
        # served this load once before the baseline.
        w = spawn("worker", THREADS)
        time.sleep(1.5)
        w.send_signal(signal.SIGTERM)
        assert w.wait(timeout=20) == 0, "the warm-up worker did not end cleanly"
        time.sleep(0.5)
        heap0, rss0, anon0, shmem0 = memory(d)
        print(f"baseline: heap_used {mib(heap0)}, VmRSS {mib(rss0)} (anon {mib(anon0)}, "
              f"shmem {mib(shmem0)})")

        observer = subprocess.Popen([str(chaos_bin), "observer", str(LOOP_S + 30)], env=d.env,
                                    stdin=subprocess.DEVNULL, stdout=obs_log,
                                    stderr=subprocess.STDOUT)
        procs.append(observer)
        kills, t0, alive = 0, time.monotonic(), []  # alive: (process, kill time)
        while kills < KILLS and time.monotonic() - t0 < LOOP_S and observer.poll() is None:
            while len(alive) < CONCURRENT:
                alive.append((spawn("worker", THREADS),
                              time.monotonic() + rng.uniform(*LIFETIME_MS) / 1000))
            alive.sort(key=lambda a: a[1])
            proc, when = alive.pop(0)
            time.sleep(max(0.0, when - time.monotonic()))
            kill(proc)
            procs.remove(proc)
            kills += 1
            if kills % 100 == 0 and observer.poll() is None:
                try:
                    heap, rss, _, _ = memory(d)
                except Wedged:
                    print(f"chimaera status did not answer after {kills} kills")
                    break
                print(f"{kills} kills in {time.monotonic() - t0:.1f} s: heap_used {mib(heap)}, "
                      f"VmRSS {mib(rss)}")
        for proc, _ in alive:
            kill(proc)
            procs.remove(proc)
        elapsed = time.monotonic() - t0
        got_going = ready.stat().st_size if ready.exists() else 0
        print(f"{kills} kills in {elapsed:.1f} s; {got_going - 1} workers got their threads "
              f"going before they died")

        observer.send_signal(signal.SIGTERM)
        try:
            obs_rc = observer.wait(timeout=15)
        except subprocess.TimeoutExpired:
            obs_rc = None
        obs_log.seek(0)
        obs_out = obs_log.read()
        assert pid_alive(d.pid), f"the daemon died during the chaos:\n{obs_out}\n{d.log()}"
        assert obs_rc == 0, f"the observer failed (exit {obs_rc}) after {kills} kills " \
                            f"in {elapsed:.1f} s:\n{obs_out}\nlog:\n{d.log()}"
        assert kills == KILLS, f"only {kills} kills within {LOOP_S} s"
        print(obs_out.strip())

        deadline = time.monotonic() + SETTLE_S
        while True:
            heap, rss, anon, shmem = memory(d)
            if heap <= heap0 + HEAP_SLACK and rss <= rss0 + RSS_SLACK:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"after {SETTLE_S} s: heap_used {mib(heap)} (baseline "
                            f"{mib(heap0)}), VmRSS {mib(rss)} (baseline {mib(rss0)}; anon "
                            f"{mib(anon)} was {mib(anon0)}, shmem {mib(shmem)} was "
                            f"{mib(shmem0)})")
            time.sleep(0.5)
        print(f"after: heap_used {mib(heap)} (baseline {mib(heap0)}), VmRSS {mib(rss)} "
              f"(baseline {mib(rss0)})")
    finally:
        for p in procs:
            try:
                kill(p)
            except subprocess.TimeoutExpired:
                pass
        obs_log.close()
        try:
            wedged = pid_alive(d.pid) and d.status(timeout=10)[0] != 0
        except subprocess.TimeoutExpired:
            wedged = True
        if wedged:  # `stop` would wait for nothing: kill it by its pid
            os.kill(d.pid, signal.SIGKILL)
            wait_gone(d.pid, 5)
