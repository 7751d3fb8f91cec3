"""The metrics endpoint (runtime.metrics.listen) and `chimaera top` against real daemons:
counters and histograms that match the tasks sent, the endpoint's bounds, and the live view
driven in tmux."""

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO, STAGE, TEST_CONFIG, run

sys.path.insert(0, str(REPO / "bindings" / "python"))
os.environ["CHIMAERA_LIB"] = str(STAGE / "lib" / "libchimaera.so.1")
import chimaera  # noqa: E402

WAIT = 20  # seconds: the bound on every wait that should succeed


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics_daemon(daemons):
    port = free_port()
    config = {"runtime": dict(TEST_CONFIG["runtime"], metrics={"listen": f"127.0.0.1:{port}"})}
    return daemons.start(config=config), port


def http(port, request, timeout=WAIT):
    """Sends raw request bytes; returns the whole response (until the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks).decode(errors="replace")


def scrape(port):
    resp = http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = resp.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200"), resp[:500]
    assert "text/plain; version=0.0.4" in head
    return body


def samples(body, name):
    """{frozenset(labels): value} of every sample of metric `name`."""
    out = {}
    for line in body.splitlines():
        m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[labels] = float(m.group(3))
    return out


def of(series, **want):
    return {k: v for k, v in series.items() if set(want.items()) <= k}


def test_counters_and_histogram_match_the_tasks_sent(daemons):
    d, port = metrics_daemon(daemons)
    n = 300
    with chimaera.Client(segment=d.segment) as c:
        pool = c.create_pool("small_message", "metrics_pool")
        for _ in range(n):
            assert pool.md(timeout=WAIT) == 1
    # A completion is signalled before the worker's counters move on; give it a moment.
    deadline = time.monotonic() + WAIT
    while True:
        body = scrape(port)
        done = of(samples(body, "chimaera_tasks_completed_total"), pool="metrics_pool", method="Md")
        if list(done.values()) == [n] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert list(done.values()) == [n], body[:3000]
    errs = of(samples(body, "chimaera_task_errors_total"), pool="metrics_pool", method="Md")
    assert list(errs.values()) == [0]
    buckets = of(samples(body, "chimaera_task_run_seconds_bucket"), pool="metrics_pool", method="Md")
    by_le = {dict(k)["le"]: v for k, v in buckets.items()}
    assert by_le["+Inf"] == n
    finite = sorted((float(le), v) for le, v in by_le.items() if le != "+Inf")
    assert len(finite) == 24
    counts = [v for _, v in finite] + [by_le["+Inf"]]
    assert counts == sorted(counts), "buckets must be cumulative"
    assert list(of(samples(body, "chimaera_task_run_seconds_count"), pool="metrics_pool",
                   method="Md").values()) == [n]
    assert of(samples(body, "chimaera_task_run_seconds_sum"), pool="metrics_pool", method="Md")
    # The other families are there too.
    workers = samples(body, "chimaera_worker_tasks_total")
    assert workers and sum(workers.values()) >= n
    for name in ("chimaera_worker_busy_seconds_total", "chimaera_worker_sleeps_total",
                 "chimaera_lane_queue_depth", "chimaera_shm_heap_used_bytes", "chimaera_uptime_seconds"):
        assert samples(body, name), name
    assert of(samples(body, "chimaera_lane_queue_depth"), pool="metrics_pool")
    # Another path and another method are answered, not served.
    assert http(port, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith("HTTP/1.1 404")
    assert http(port, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ).startswith("HTTP/1.1 405")


def test_endpoint_refuses_too_many_connections_and_oversized_requests(daemons):
    d, port = metrics_daemon(daemons)
    # Four idle connections hold every slot; the fifth is answered 503 and closed.
    held = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(4)]
    try:
        time.sleep(0.2)
        assert http(port, b"").startswith("HTTP/1.1 503")
    finally:
        for s in held:
            s.close()
    # A request larger than 8 KiB is refused with 413 and its connection closed. The held
    # connections' slots come back once the server has seen them close (its event loop may
    # accept the next one first): until then that one is answered 503.
    big = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n"
    deadline = time.monotonic() + WAIT
    resp = http(port, big)
    while resp.startswith("HTTP/1.1 503") and time.monotonic() < deadline:
        time.sleep(0.05)
        resp = http(port, big)
    assert resp.startswith("HTTP/1.1 413"), resp
    # An idle connection is closed by the server (5 s idle timeout).
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        t0 = time.monotonic()
        assert s.recv(1) == b""
        assert time.monotonic() - t0 < 10
    # The daemon still serves scrapes and tasks.
    deadline = time.monotonic() + WAIT
    while True:
        try:
            assert "chimaera_uptime_seconds" in scrape(port)
            break
        except (AssertionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with chimaera.Client(segment=d.segment) as c:
        assert c.create_pool("small_message", "after").md(timeout=WAIT) == 1


def test_a_bad_listen_address_is_a_config_error(daemons):
    d = daemons.new(config={"runtime": dict(TEST_CONFIG["runtime"], metrics={"listen": "nowhere"})})
    rc, out = d.try_start()
    assert rc != 0 and "runtime.metrics.listen" in out, out


def test_top_once_prints_the_pool(daemons):
    d = daemons.start()
    with chimaera.Client(segment=d.segment) as c:
        pool = c.create_pool("small_message", "top_once")
        assert pool.md(timeout=WAIT) == 1
        rc, out = run([d.bin, "top", "--segment", d.segment, "--once", "--interval", "0.2"],
                      env=d.env, timeout=WAIT)
    assert rc == 0, out
    assert "top_once" in out and "TASKS/S" in out and "BUSY%" in out, out


def tmux(*args, timeout=WAIT):
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (make deps)")
def test_top_in_tmux_shows_live_tasks_and_quits_on_q(daemons):
    d = daemons.start()
    session = f"chitop_{d.segment}"
    env_args = []
    for k in ("CHIMAERA_SEGMENT", "CHI_MODULE_PATH"):
        env_args += ["-e", f"{k}={d.env[k]}"]
    stop = threading.Event()
    with chimaera.Client(segment=d.segment) as c:
        pool = c.create_pool("small_message", "top_live")

        def load():
            while not stop.is_set():
                pool.md(timeout=WAIT)

        t = threading.Thread(target=load, daemon=True)
        t.start()
        try:
            r = tmux("new-session", "-d", "-x", "160", "-y", "50", "-s", session, *env_args,
                     f"{d.bin} top --segment {d.segment} --interval 0.5")
            assert r.returncode == 0, r.stderr
            pane_pid = int(tmux("display-message", "-p", "-t", session, "#{pane_pid}").stdout.strip())
            deadline = time.monotonic() + WAIT
            screen, live = "", False
            while time.monotonic() < deadline:
                screen = tmux("capture-pane", "-p", "-t", session).stdout
                row = next((l for l in screen.splitlines() if l.startswith("top_live")), "")
                fields = row.split()
                if len(fields) > 2 and float(fields[2]) > 0:
                    live = True
                    break
                time.sleep(0.2)
            assert live, f"no nonzero tasks/s for top_live:\n{screen}"
            tmux("send-keys", "-t", session, "q")
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline and os.path.exists(f"/proc/{pane_pid}"):
                time.sleep(0.1)
            assert not os.path.exists(f"/proc/{pane_pid}"), "top did not quit on q"
        finally:
            stop.set()
            t.join(WAIT)
            tmux("kill-session", "-t", session)
