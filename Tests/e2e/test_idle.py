"""An idle runtime sleeps: under 2% of one core over 10 s, freshly started and again after a
burst of client work (workers that spin for new tasks must stop spinning when none come).
A resource check with a generous bound, not a timing benchmark."""

import os
import time
from pathlib import Path

from conftest import LATENCY_RE, build_example, run

WINDOW_S = 10.0
MAX_CORE_FRACTION = 0.02


def cpu_seconds(pid):
    """utime + stime of pid, from /proc/<pid>/stat (fields 14 and 15, after the comm)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def idle_fraction(pid):
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(WINDOW_S)
    c1, t1 = cpu_seconds(pid), time.monotonic()
    return (c1 - c0) / (t1 - t0)


def test_idle_daemon_uses_under_2_percent_of_a_core(daemons, tmp_path):
    d = daemons.start(config=None)  # the defaults: no config file at all
    time.sleep(1.0)  # start-up work is not idleness
    frac = idle_fraction(d.pid)
    print(f"idle after start: {frac * 100:.2f}% of a core, {threads(d.pid)} threads")
    assert frac < MAX_CORE_FRACTION, \
        f"idle daemon used {frac * 100:.2f}% of a core over {WINDOW_S:.0f} s " \
        f"({threads(d.pid)} threads)"

    example = build_example(tmp_path)
    rc, out = run([example], env=d.env, timeout=60)
    assert rc == 0 and LATENCY_RE.search(out), f"client example exited {rc}:\n{out}"
    time.sleep(1.0)
    frac = idle_fraction(d.pid)
    print(f"idle after a burst: {frac * 100:.2f}% of a core")
    assert frac < MAX_CORE_FRACTION, \
        f"after a burst of work the daemon kept using {frac * 100:.2f}% of a core"
