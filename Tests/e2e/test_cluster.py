"""Several runtimes on this machine as one cluster (distinct ports and segments), driven by C
clients (Tests/capi/test_cluster.c): every container of a global pool from a client on each
node, broadcast, bulk Io, a depth-8 chain, 100,000 async remote tasks; admin calls across
nodes; a node killed mid-load and restarted; the cluster key and malformed frames; two
runtimes in two network namespaces; `chimaera cluster` and `stop --all`."""

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (REPO, STAGE, Daemon, pid_alive, require_staged, run, shm_path,
                      to_yaml, unique_segment, wait_gone)
from test_capi import compile_cmd, link_flags, CFLAGS

KEY = "test-cluster-key-0123456789"
TIMEOUT_MS = 1500


def free_ports(n):
    """n TCP ports free right now on 127.0.0.1 (bound and released together)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def cluster_bin(tmp_path_factory):
    require_staged()
    out = tmp_path_factory.mktemp("cluster") / "test_cluster"
    compile_cmd(["cc", *CFLAGS, f"-I{STAGE}/include", REPO / "Tests" / "capi" / "test_cluster.c",
                 "-o", out, *link_flags()], "test_cluster")
    return out


def cluster_config(hosts, key=KEY, **extra):
    cfg = {"runtime": {"shm_size": "256M", "pin_workers": False},
           "cluster": {"hosts": hosts, "key": f'"{key}"', "timeout_ms": TIMEOUT_MS,
                       "heartbeat_ms": 200}}
    cfg["cluster"].update(extra)
    return cfg


class Cluster:
    """N daemons on 127.0.0.1, node i on ports[i-1] and its own segment."""

    def __init__(self, daemons, n, **extra):
        self.ports = free_ports(n)
        self.hosts = [f"127.0.0.1:{p}" for p in self.ports]
        self.nodes = []
        for i in range(1, n + 1):
            cfg = cluster_config(self.hosts, node_id=i, **extra)
            self.nodes.append(daemons.new(config=cfg, segment=unique_segment(f"t{os.getpid()}c{i}_")))

    def start(self):
        for d in self.nodes:
            d.start()
        return self

    def node(self, i):
        return self.nodes[i - 1]


def client(binary, node, *args, timeout=180):
    env = dict(node.env, CHI_TEST_NODE=str(node.nodeid))
    return run([binary, *args], env=env, timeout=timeout)


@pytest.fixture
def cluster3(daemons):
    c = Cluster(daemons, 3).start()
    for i, d in enumerate(c.nodes, 1):
        d.nodeid = i
    return c


def test_three_nodes_from_a_client_on_each(cluster3, cluster_bin):
    for i in (1, 2, 3):
        rc, out = client(cluster_bin, cluster3.node(i), "all", "3")
        assert rc == 0, f"client on node {i}:\n{out}\nlog:\n{cluster3.node(i).log()}"
        assert "broadcast counted 6 containers" in out, out
        assert "data checked" in out and "depth 8 chain across nodes: ok" in out, out
        m = re.search(r"100000 async remote Md: (\d+) tasks/s", out)
        assert m and int(m.group(1)) > 0, out
    # Every node sees the others up, and traffic went both ways.
    rc, out = cluster3.node(2).status("--json")
    assert rc == 0, out
    assert out.count('"state": "up"') + out.count('"state":"up"') == 2, out
    # The text lists the same peers as the JSON (issue 18: it listed the wrong ones).
    doc = json.loads(out)
    peers = sorted((p["node"], p["address"], p["state"]) for p in doc["remote"]["peers"]
                   if p["state"] != "self")
    rc, text = cluster3.node(2).status()
    assert rc == 0, text
    listed = sorted((int(n), a, s) for n, a, s in
                    re.findall(r"^  node (\d+) (\S+) (\S+)", text, re.M))
    assert listed == peers and len(peers) == 2, f"text peers {listed} != json {peers}:\n{text}"


def test_admin_calls_reach_every_node(cluster3, cluster_bin):
    # A pool made on node 3 (not the one that assigns ids) exists everywhere with one id.
    rc, out = client(cluster_bin, cluster3.node(3), "admin", "3")
    assert rc == 0, out
    assert "destroyed everywhere" in out, out


def load_summary(out):
    rows = {}
    for m in re.finditer(r"node (\d+) ok (\d+) fail (\d+) other (\d+) max_fail_ms ([0-9.]+)", out):
        rows[int(m.group(1))] = dict(ok=int(m.group(2)), fail=int(m.group(3)),
                                     other=int(m.group(4)), max_fail_ms=float(m.group(5)))
    return rows


def wait_serving(binary, node, nodes, seconds=20):
    deadline = time.monotonic() + seconds
    out = ""
    while time.monotonic() < deadline:
        rc, out = client(binary, node, "each", str(nodes), timeout=60)
        if rc == 0:
            return
        time.sleep(0.3)
    pytest.fail(f"the cluster did not serve every container again within {seconds} s:\n{out}")


def test_sigkill_mid_load_then_restart(cluster3, cluster_bin):
    n1, n3 = cluster3.node(1), cluster3.node(3)
    env = dict(n1.env, CHI_TEST_NODE="1")
    with open(n1.dir / "load.out", "w+") as out:
        load = subprocess.Popen([str(cluster_bin), "load", "3", "5"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            time.sleep(1.5)
            os.kill(n3.pid, signal.SIGKILL)
            assert wait_gone(n3.pid, 5)
            t0 = time.monotonic()
            # Nothing hangs: the load ends on time although a third of its targets died.
            load.wait(timeout=5 + TIMEOUT_MS / 1000 + 30)
            out.seek(0)
            text = out.read()
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
    assert load.returncode == 0, text
    rows = load_summary(text)
    assert set(rows) == {1, 2, 3}, text
    for i in (1, 2):
        assert rows[i]["ok"] > 0 and rows[i]["fail"] == 0 and rows[i]["other"] == 0, text
    assert rows[3]["ok"] > 0 and rows[3]["fail"] > 0 and rows[3]["other"] == 0, text
    # Each failure came within the timeout (plus scheduling slack), never a hang.
    assert rows[3]["max_fail_ms"] <= TIMEOUT_MS + 1000, text
    shm_path(n3.segment).unlink(missing_ok=True)
    # Restarted, it pulls the pool catalog from its peers and serves again.
    n3.start()
    wait_serving(cluster_bin, n1, 3)
    n3.nodeid = 3
    rc, out = client(cluster_bin, n3, "each", "3", timeout=60)
    assert rc == 0, out


def test_a_node_that_stops_answering_times_out(cluster3, cluster_bin):
    n1, n2 = cluster3.node(1), cluster3.node(2)
    rc, out = client(cluster_bin, n1, "each", "3", timeout=60)
    assert rc == 0, out
    os.kill(n2.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        rc, out = client(cluster_bin, n1, "each", "3", timeout=60)
        took = time.monotonic() - t0
    finally:
        os.kill(n2.pid, signal.SIGCONT)
    assert rc != 0, out
    # Containers 2 and 3 live on node 2: they fail naming the node, the others succeed.
    assert re.search(r"container 2: rc -\d+ .*node 2", out), out
    assert "container 0:" not in out and "container 4:" not in out, out
    assert took < 2 * TIMEOUT_MS / 1000 + 5, f"took {took:.1f} s:\n{out}"
    wait_serving(cluster_bin, n1, 3)


def handshake_challenge(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    hdr = s.recv(5, socket.MSG_WAITALL)
    length, ftype = struct.unpack(">IB", hdr)
    body = s.recv(length, socket.MSG_WAITALL)
    assert ftype == 1 and len(body) == 44, (ftype, len(body))
    return s, body


def closed_by_peer(s, seconds=5):
    s.settimeout(seconds)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    finally:
        s.close()


def test_wrong_key_and_garbage_are_rejected(daemons, cluster_bin):
    # The HMAC handshake itself, in the clear (test_cluster_tls covers it inside TLS).
    c = Cluster(daemons, 2, tls="off").start()
    for i, d in enumerate(c.nodes, 1):
        d.nodeid = i
    port = c.ports[0]
    # 1. A handshake with a MAC made from another key.
    s, body = handshake_challenge(port)
    import hmac, hashlib
    nonce = body[12:44]
    mine = os.urandom(32)
    mac = hmac.new(b"not-the-cluster-key!", b"c" + nonce + struct.pack(">II", 2, 1),
                   hashlib.sha256).digest()
    payload = struct.pack(">I", 2) + mine + mac
    s.sendall(struct.pack(">IB", len(payload), 2) + payload)
    assert closed_by_peer(s), "a wrong-key handshake was not dropped"
    # 2. Random bytes instead of a handshake.
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(os.urandom(4096))
    assert closed_by_peer(s), "random bytes were not dropped"
    # 3. A request frame before any handshake.
    s, _ = handshake_challenge(port)
    s.sendall(struct.pack(">IB", 8, 4) + b"\0" * 8)
    assert closed_by_peer(s), "a request before the handshake was not dropped"
    # 4. A real runtime configured with another key cannot join.
    # (It cannot listen on node 2's port, so its host list puts node 2 on a fresh port.)
    ip = free_ports(1)[0]
    intruder = daemons.new(config=cluster_config([c.hosts[0], f"127.0.0.1:{ip}"],
                                                 key="another-cluster-key-999", node_id=2, tls="off"),
                           segment=unique_segment(f"t{os.getpid()}x_"))
    intruder.start()
    intruder.nodeid = 2
    rc, out = client(cluster_bin, intruder, "each", "2", timeout=60)
    assert rc != 0, out
    # The real cluster keeps serving, and counted the rejections.
    rc, out = client(cluster_bin, c.node(1), "each", "2", timeout=60)
    assert rc == 0, out
    rc, out = c.node(1).status("--json")
    m = re.search(r'"rejected_connections":\s*(\d+)', out)
    assert m and int(m.group(1)) >= 3, out
    log = c.node(1).log()
    assert "wrong cluster key" in log and "before the handshake" in log, log


def test_config_errors_name_the_key(daemons):
    ports = free_ports(2)
    hosts = [f"127.0.0.1:{p}" for p in ports]
    d = daemons.new(config={"cluster": {"hosts": hosts}})
    rc, out = d.try_start()
    assert rc != 0 and "cluster.key" in out, out
    # Two entries on this machine and no node_id: the runtime cannot tell which it is.
    d = daemons.new(config=cluster_config(hosts))
    rc, out = d.try_start()
    assert rc != 0 and "node_id" in out, out


def test_stop_all_stops_every_node(cluster3):
    rc, out = run([cluster3.node(2).bin, "stop", "--all", "--segment", cluster3.node(2).segment],
                  env=cluster3.node(2).env, timeout=60)
    assert rc == 0, out
    for d in cluster3.nodes:
        assert wait_gone(d.pid, 10), f"node {d.nodeid} (pid {d.pid}) still runs:\n{out}"


def test_stop_runtime_broadcast_reaches_every_node(cluster3, cluster_bin):
    rc, out = client(cluster_bin, cluster3.node(1), "stop", "3", timeout=60)
    assert rc == 0, out
    for d in cluster3.nodes:
        assert wait_gone(d.pid, 10), f"node {d.nodeid} (pid {d.pid}) still runs:\n{out}\n{d.log()}"


def test_cluster_command_starts_and_stops_local_nodes(tmp_path):
    require_staged()
    ports = free_ports(3)
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# three local nodes\n" + "".join(f"127.0.0.1:{p}\n" for p in ports))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(to_yaml({"runtime": {"shm_size": "128M", "pin_workers": False},
                            "cluster": {"key": f'"{KEY}"'}}) + "\n")
    base = unique_segment(f"t{os.getpid()}cl")
    bin_ = STAGE / "bin" / "chimaera"
    env = dict(os.environ, CHI_MODULE_PATH=str(STAGE / "lib" / "chimaera"))
    segs = [f"{base}_n{i}" for i in (1, 2, 3)]
    try:
        rc, out = run([bin_, "cluster", "start", "--hostfile", hostfile, "--config", cfg,
                       "--segment", base, "--log-dir", tmp_path], env=env, timeout=120)
        assert rc == 0, out
        assert all(shm_path(s).exists() for s in segs), out
        deadline = time.monotonic() + 10
        while True:
            rc, out = run([bin_, "cluster", "status", "--hostfile", hostfile, "--config", cfg,
                           "--segment", base, "--json"], env=env, timeout=60)
            if rc == 0 and len(re.findall(r'"state":\s*"up"', out)) == 6:
                break
            assert time.monotonic() < deadline, out
            time.sleep(0.2)
        rc, out = run([bin_, "cluster", "stop", "--hostfile", hostfile, "--config", cfg,
                       "--segment", base], env=env, timeout=120)
        assert rc == 0, out
        assert not any(shm_path(s).exists() for s in segs), out
    finally:
        for s in segs:
            pidf = tmp_path / f"chimaera_{s}.pid"
            try:
                pid = int(pidf.read_text())
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass
            shm_path(s).unlink(missing_ok=True)


def netns_available():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"chiprobe{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ok


def test_two_runtimes_in_two_network_namespaces(daemons, cluster_bin, tmp_path):
    if not netns_available():
        pytest.skip("ip netns is not available here (needs root and iproute2)")
    tag = f"{os.getpid() % 100000}"
    ns = [f"chia{tag}", f"chib{tag}"]
    veth = [f"cva{tag}", f"cvb{tag}"]
    addrs = ["10.213.7.1", "10.213.7.2"]
    sh = lambda *a: subprocess.run(list(a), check=True, capture_output=True, timeout=30)
    try:
        for n in ns:
            sh("ip", "netns", "add", n)
        sh("ip", "link", "add", veth[0], "type", "veth", "peer", "name", veth[1])
        for i in (0, 1):
            sh("ip", "link", "set", veth[i], "netns", ns[i])
            sh("ip", "-n", ns[i], "addr", "add", f"{addrs[i]}/24", "dev", veth[i])
            sh("ip", "-n", ns[i], "link", "set", veth[i], "up")
            sh("ip", "-n", ns[i], "link", "set", "lo", "up")
        hosts = [f"{a}:9513" for a in addrs]
        nodes = []
        for i in (0, 1):
            # No node_id: each runtime finds itself by its namespace's address.
            d = daemons.new(config=cluster_config(hosts), segment=unique_segment(f"t{os.getpid()}ns{i}_"))
            d.nodeid = i + 1
            cmd = ["ip", "netns", "exec", ns[i], *map(str, d.start_cmd())]
            rc, out = run(cmd, env=d.env, timeout=60)
            assert rc == 0, f"{out}\n{d.log()}"
            d._read_pid()
            nodes.append(d)
        for d in nodes:
            rc, out = client(cluster_bin, d, "all", "2")
            assert rc == 0, f"{out}\n{d.log()}"
            assert "broadcast counted 4 containers" in out, out
        rc, out = nodes[0].status("--json")
        assert '"node_id": 1' in out or '"node_id":1' in out, out
    finally:
        for d in daemons.all:
            d.cleanup()
        for n in ns:
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
