"""The hostile-client suite (issue 12): each program of Tests/capi/hostile, in each of its
modes, runs against its own fresh daemon and is classified as

  answered  it passed: every misuse got an error code (or a harmless answer), and the final
            checks held (a fresh client's Md answers 1, heap_used is back to its baseline,
            the daemon pid lives);
  crashed   the daemon is gone afterwards, or the program died of a signal;
  hung      the program or one of its bounded waits timed out;
  leaked    heap_used, fibers or mappings did not come back;
  wrong     any other failure (a wrong error code, a configuration the daemon refused ...).

Every case must be answered (or skipped). A table of the verdicts is printed at the end.
"""

import os
import re
import resource
import signal
import subprocess
import time

import pytest

from conftest import CC, REPO, STAGE, pid_alive, require_staged, wait_gone
from test_capi import CFLAGS, compile_cmd, link_flags

HOSTILE = REPO / "Tests" / "capi" / "hostile"


def cfg(shm="256M", **runtime):
    return {"runtime": {"shm_size": shm, **runtime}}


# (case, program, arguments, daemon configuration, timeout in seconds)
CASES = [("control", "h_control", [], cfg(), 40),
         ("alloc_600M_of_1G", "h_alloc_huge", [], cfg("1G"), 60)]
CASES += [(f"alloc_{m}", "h_alloc_refill", [m], cfg("64M"), 60)
          for m in ("big_small", "small_big", "tasks_big")]
CASES += [(f"double_{m}", "h_double", [m], cfg(), 60)
          for m in ("buffer_twice", "task_twice", "task_as_buffer", "other_client",
                    "faf_twice", "faf_late")]
CASES += [(f"scribble_{m}", "h_scribble", [m], cfg(), 70) for m in ("md", "bcast", "admin")]
CASES += [(f"bulk_{m}", "h_bulk", [m], cfg(), 60)
          for m in ("off0", "off64", "off4096", "past_end", "bad_segment", "task_block",
                    "straddle", "oversize", "other_client")]
CASES += [("bulk_bdev_read_past_buffer", "h_bulk_bdev", [], cfg(), 60)]
CASES += [(f"periodic_{m}", "h_periodic", [m], cfg(), 70)
          for m in ("p1e19", "pmax", "p0", "p1ns", "admin", "io", "cancel")]
CASES += [(f"garbage_{m}", "h_garbage", [m], cfg(), 60)
          for m in ("pool", "method", "subdomain", "range", "dq_flags", "size", "flags")]
CASES += [(f"ring_{m}", "h_ring", [m], cfg(), 60)
          for m in ("offsets", "raw_task", "half_push", "hello")]
CASES += [("limit_max_clients", "h_limits", ["max_clients"], cfg(max_clients=4), 60),
          ("limit_client_memory", "h_limits", ["quota"], cfg(max_client_memory="16M"), 60),
          ("limit_md_depth_1e9", "h_limits", ["depth"], cfg(), 100),
          ("limit_600k_md_depth_6", "h_limits", ["flood"], cfg("1G"), 170)]

VERDICTS = ["answered", "crashed", "hung", "leaked", "wrong", "skipped"]
RESULTS = {}  # case -> (verdict, seconds, the line that says why)


@pytest.fixture(scope="module")
def hostile_bin(tmp_path_factory, request):
    """build(program) -> its path; each is built once. Core dumps are off for the module (a
    crashing daemon must not write gigabytes), and the verdict table is printed at the end."""
    require_staged()
    out_dir = tmp_path_factory.mktemp("hostile")
    built = {}
    core = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, core[1]))

    def build(name):
        if name not in built:
            out = out_dir / name
            # h_ring speaks the runtime's internal protocol by hand: its header is internal.
            internal = [f"-I{REPO}/Sources/CChimaera/include"] if name == "h_ring" else []
            compile_cmd([CC, *CFLAGS, f"-I{STAGE}/include", *internal, HOSTILE / f"{name}.c",
                         "-o", out, *link_flags()], name)
            built[name] = out
        return built[name]

    yield build
    resource.setrlimit(resource.RLIMIT_CORE, core)
    text = table()
    report = os.environ.get("CHI_HOSTILE_REPORT")
    if report:
        with open(report, "w") as f:
            f.write(text)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # the table shows even when output is captured
        print(text)


def classify(rc, out, timed_out, daemon_alive):
    """The verdict of one run, and the line that best says why."""
    said = re.search(r"^hostile: (crashed|hung|leaked|wrong): .*$", out, re.M)
    line = said or re.search(r"^.*(FAIL|SKIP).*$", out, re.M)
    why = line.group(0) if line else (out.strip().splitlines() or ["(no output)"])[-1]
    if timed_out:
        return "hung", "the program timed out; " + why
    if rc is not None and rc < 0:
        return "crashed", f"the program died of {signal.Signals(-rc).name}; {why}"
    if not daemon_alive:
        return "crashed", "the daemon is gone; " + why
    if said:
        return said.group(1), why
    if "watchdog expired" in out:
        return "hung", why
    if rc == 77:
        return "skipped", why
    if rc == 0 and re.search(r"^hostile: ok: ", out, re.M):
        return "answered", "ok"
    code = re.search(r"\[rc (-?\d+):", out)
    if code and int(code.group(1)) in (-110, -4101):  # -ETIMEDOUT, -CHI_ENORUNTIME
        return "hung", why
    return "wrong", why


def run_case(binary, args, env, timeout):
    """Runs one program; returns (exit status or None on timeout, output)."""
    with open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen([str(binary), *args], env=env, stdin=devnull,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = proc.communicate(timeout=timeout)
            return proc.returncode, out.decode(errors="replace")
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            return None, out.decode(errors="replace")


@pytest.mark.parametrize("case,program,args,config,timeout", CASES, ids=[c[0] for c in CASES])
def test_hostile(case, program, args, config, timeout, hostile_bin, daemons):
    binary = hostile_bin(program)
    d = daemons.new(config=config)
    t0 = time.monotonic()
    rc, out = d.try_start()
    if rc != 0:
        verdict, why = "wrong", f"the daemon refused the configuration {config}: {out.strip()}"
        out = ""
    else:
        rc, out = run_case(binary, args, d.env, timeout)
        alive = pid_alive(d.pid)
        verdict, why = classify(rc, out, rc is None, alive)
        if alive and verdict in ("crashed", "hung"):
            os.kill(d.pid, signal.SIGKILL)  # a wedged daemon would make `stop` wait too
            wait_gone(d.pid, 5)
    d.cleanup()
    RESULTS[case] = (verdict, time.monotonic() - t0, why)
    print(out)
    if verdict == "skipped":
        pytest.skip(why)
    assert verdict == "answered", f"{case}: {verdict}: {why}\n{out[-3000:]}\nlog:\n{d.log()}"


def table():
    counts = {v: sum(1 for r in RESULTS.values() if r[0] == v) for v in VERDICTS}
    lines = ["", "hostile-client suite (issue 12)", f"{'case':<30} {'verdict':<9} {'s':>6}  why"]
    for case, (verdict, secs, why) in RESULTS.items():
        lines.append(f"{case:<30} {verdict:<9} {secs:6.1f}  {why[:160]}")
    lines.append(f"cases tried {len(RESULTS)} / answered {counts['answered']} / crashed "
                 f"{counts['crashed']} / hung {counts['hung']} / leaked {counts['leaked']} / "
                 f"wrong {counts['wrong']} / skipped {counts['skipped']}")
    return "\n".join(lines) + "\n"
