"""Issue 12's process-level behaviours beyond the hostile suite: a start that fails leaves no
segment or socket behind; a write past `ulimit -f` is an error, not SIGXFSZ; `chimaera
status` lists attached clients and drops one that was killed, with its memory."""

import json
import os
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO, STAGE, pid_alive, require_staged, run, shm_path, sock_path, wait_gone


def stats(d):
    rc, out = d.status("--json", timeout=20)
    assert rc == 0, f"status failed:\n{out}\nlog:\n{d.log()}"
    return json.loads(out[out.index("{"):])


def test_a_failed_start_leaves_nothing_and_the_next_start_works(daemons):
    require_staged()
    d = daemons.new(config={"runtime": {"shm_size": "64M", "modules": ["no_such_module_xyz"]}})
    rc, out = d.try_start()
    assert rc != 0, f"a start with an unknown module succeeded:\n{out}"
    assert "no_such_module_xyz" in out, f"the error does not name the module:\n{out}"
    assert not shm_path(d.segment).exists(), "the failed start left its segment behind"
    assert not sock_path(d.segment).exists(), "the failed start left its socket behind"
    again = daemons.new(segment=d.segment, config={"runtime": {"shm_size": "64M"}})
    again.start()
    assert stats(again)["pid"] == again.pid


def python_client(d):
    sys.path.insert(0, str(REPO / "bindings" / "python"))
    os.environ["CHIMAERA_LIB"] = str(STAGE / "lib" / "libchimaera.so.1")
    return pytest.importorskip("chimaera")


def test_a_device_file_past_ulimit_f_is_an_error_not_sigxfsz(daemons):
    require_staged()
    # The limit lets the 64 MiB segment be made (ulimit -f applies to /dev/shm too) but not
    # the 256 MiB device file.
    d = daemons.new(config={"runtime": {"shm_size": "64M"}})
    limit = 128 << 20

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([str(c) for c in d.start_cmd()], env=d.env, preexec_fn=small_files,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert proc.returncode == 0, proc.stdout.decode(errors="replace")
    d._read_pid()
    chimaera = python_client(d)
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        url = f"fs://{tmp}/big.bin".encode()
        params = url.ljust(256, b"\0") + struct.pack("<QII", 256 << 20, 0, 0)
        with chimaera.Client(segment=d.segment) as c:
            with pytest.raises(chimaera.ChimaeraError) as e:
                c.create_pool("bdev", "past_ulimit", params=params)
            assert e.value.errno in (27, 4102), f"not EFBIG: {e.value}"  # EFBIG, or CHI_EBADTASK
            assert pid_alive(d.pid), f"the daemon died:\n{d.log()}"
            pool = c.create_pool("small_message", "still_serving")
            assert pool.call("Md", depth=1, timeout=30).ret == 1


def test_status_lists_clients_and_forgets_a_killed_one_with_its_memory(daemons, tmp_path):
    require_staged()
    d = daemons.start(config={"runtime": {"shm_size": "256M"}})
    base = stats(d)["shm"]["heap_used"]
    holder = tmp_path / "holder.py"
    holder.write_text(
        "import os, sys, time\n"
        f"sys.path.insert(0, {str(REPO / 'bindings' / 'python')!r})\n"
        "import chimaera\n"
        "c = chimaera.Client(segment=os.environ['CHIMAERA_SEGMENT'])\n"
        "bufs = [c.buffer(1 << 20) for _ in range(8)]\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n")
    env = dict(d.env, CHIMAERA_LIB=str(STAGE / "lib" / "libchimaera.so.1"))
    p = subprocess.Popen([sys.executable, str(holder)], env=env, stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == b"ready"
        s = stats(d)
        mine = [c for c in s["clients"] if c["pid"] == p.pid]
        assert len(mine) == 1, f"the holder is not listed: {s['clients']}"
        assert mine[0]["memory_bytes"] >= 8 << 20 and mine[0]["state"] == "live"
        rc, text = d.status(timeout=20)
        assert rc == 0 and f"pid={p.pid} live" in text, text
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            s = stats(d)
            if not any(c["pid"] == p.pid for c in s["clients"]) and s["shm"]["heap_used"] <= base:
                break
            time.sleep(0.1)
        assert not any(c["pid"] == p.pid for c in s["clients"]), s["clients"]
        assert s["shm"]["heap_used"] <= base, f"heap_used {s['shm']['heap_used']} > {base}"
        assert s["clients_gone"] >= 1
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
