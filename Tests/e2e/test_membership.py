"""SWIM membership on three runtimes on this machine: every node converges on the same view
(all alive, one version); a node stopped (SIGSTOP) for less than the suspicion timeout is
suspected but never declared dead, because it refutes when it resumes; stopped for longer it
is declared dead by both others and rejoins alive (a higher incarnation) after SIGCONT; a
killed node is declared dead and tasks for its containers fail at once with -CHI_ENODE
naming it. `chimaera cluster status` shows each node's state and since when."""

import json
import os
import re
import signal
import time

import pytest

from conftest import STAGE, require_staged, run, shm_path, to_yaml, unique_segment, pid_alive
from test_cluster import KEY, Cluster, client, cluster_bin, free_ports  # noqa: F401 (fixture)

CHI_ENODE = 4096 + 10


def view(node):
    """The membership object of `node`'s statistics, or None if it does not answer."""
    rc, out = node.status("--json", timeout=10)
    if rc != 0:
        return None
    return json.loads(out)["remote"]["membership"]


def states(v):
    return {m["node"]: (m["state"], m["incarnation"]) for m in v["nodes"]}


def wait_for(what, pred, seconds):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.05)
    pytest.fail(f"{what}: not within {seconds} s (last: {last})")


def converged(nodes):
    """The common view if every node in `nodes` holds the same one and all are alive."""
    views = [view(n) for n in nodes]
    if any(v is None for v in views):
        return None
    first = views[0]
    for v in views:
        if v["version"] != first["version"] or states(v) != states(first):
            return None
        if any(m["state"] != "alive" for m in v["nodes"]):
            return None
    return first


def start3(daemons, **extra):
    extra.setdefault("timeout_ms", 8000)  # tasks' own deadline: out of the way of membership
    c = Cluster(daemons, 3, **extra).start()
    for i, d in enumerate(c.nodes, 1):
        d.nodeid = i
    return c


def test_three_nodes_converge_on_one_all_alive_view(daemons):
    c = start3(daemons)
    v = wait_for("all alive, one version", lambda: converged(c.nodes), 10)
    assert sorted(states(v)) == [1, 2, 3], v
    assert all(m["for_ms"] >= 0 and m["since_ms"] > 1_600_000_000_000 for m in v["nodes"]), v


def test_a_short_stop_is_suspected_but_never_declared_dead(daemons):
    c = start3(daemons, suspicion_timeout_ms=3000)
    wait_for("all alive", lambda: converged(c.nodes), 10)
    n3 = c.node(3)
    os.kill(n3.pid, signal.SIGSTOP)
    try:
        seen = set()
        t_end = time.monotonic() + 1.2
        while time.monotonic() < t_end:
            for n in c.nodes[:2]:
                v = view(n)
                if v:
                    seen.add(states(v)[3][0])
            time.sleep(0.05)
    finally:
        os.kill(n3.pid, signal.SIGCONT)
    v = wait_for("all alive again", lambda: converged(c.nodes), 10)
    logs = [n.log() for n in c.nodes]
    suspected = any(re.search(r"membership: node 3 \S+ is suspected", l) for l in logs[:2])
    assert suspected or "suspected" in seen, f"the stop was never noticed: {seen}\n{logs[0]}"
    for i, l in enumerate(logs, 1):
        assert not re.search(r"membership: node \d \S+ is dead", l), f"node {i} declared a node dead:\n{l}"
    assert "dead" not in seen, seen
    # It refuted: node 3 lives on at a higher incarnation.
    assert states(v)[3][1] >= 1, v


def test_a_long_stop_is_declared_dead_and_rejoins_alive(daemons):
    c = start3(daemons, suspicion_timeout_ms=800)
    wait_for("all alive", lambda: converged(c.nodes), 10)
    n3 = c.node(3)
    os.kill(n3.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        wait_for("node 3 dead on nodes 1 and 2",
                 lambda: all((view(n) or {"nodes": []}) and states(view(n)).get(3, ("",))[0] == "dead"
                             for n in c.nodes[:2]), 10)
        detect = time.monotonic() - t0
    finally:
        os.kill(n3.pid, signal.SIGCONT)
    v = wait_for("node 3 alive again everywhere", lambda: converged(c.nodes), 15)
    assert states(v)[3][1] >= 1, v
    print(f"declared dead {detect:.2f} s after SIGSTOP; view version {v['version']}")


def test_a_killed_node_is_dead_and_its_tasks_fail_fast(daemons, cluster_bin):
    c = start3(daemons, suspicion_timeout_ms=800)
    wait_for("all alive", lambda: converged(c.nodes), 10)
    n1, n3 = c.node(1), c.node(3)
    rc, out = client(cluster_bin, n1, "each", "3", timeout=60)
    assert rc == 0, out
    os.kill(n3.pid, signal.SIGKILL)
    wait_for("node 3 dead on nodes 1 and 2",
             lambda: all(states(view(n) or {"nodes": []}).get(3, ("",))[0] == "dead" for n in c.nodes[:2]), 10)
    t0 = time.monotonic()
    rc, out = client(cluster_bin, n1, "each", "3", timeout=60)
    took = time.monotonic() - t0
    assert rc != 0, out
    # Containers 4 and 5 live on node 3: they fail with CHI_ENODE naming it, the rest succeed.
    for cid in (4, 5):
        m = re.search(rf"container {cid}: rc (-\d+) .*node 3 .*declared dead", out)
        assert m and int(m.group(1)) == -CHI_ENODE, out
    assert not re.search(r"container [0-3]:", out), out
    assert took < 3, f"took {took:.1f} s (it should fail at once):\n{out}"
    shm_path(n3.segment).unlink(missing_ok=True)


def test_cluster_status_shows_states_since_and_version(tmp_path):
    require_staged()
    ports = free_ports(3)
    hostfile = tmp_path / "hosts"
    hostfile.write_text("".join(f"127.0.0.1:{p}\n" for p in ports))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(to_yaml({"runtime": {"shm_size": "128M", "pin_workers": False},
                            "cluster": {"key": f'"{KEY}"'}}) + "\n")
    base = unique_segment(f"t{os.getpid()}mb")
    bin_ = STAGE / "bin" / "chimaera"
    env = dict(os.environ, CHI_MODULE_PATH=str(STAGE / "lib" / "chimaera"))
    segs = [f"{base}_n{i}" for i in (1, 2, 3)]
    args = ["--hostfile", hostfile, "--config", cfg, "--segment", base]
    try:
        rc, out = run([bin_, "cluster", "start", *args, "--log-dir", tmp_path], env=env, timeout=120)
        assert rc == 0, out
        deadline = time.monotonic() + 10
        while True:
            rc, out = run([bin_, "cluster", "status", *args], env=env, timeout=60)
            rows = re.findall(r"^\s+node (\d) (alive|suspected|dead|left) since (\S+) \(([0-9.]+) s ago, incarnation (\d+)\)",
                              out, re.M)
            versions = set(re.findall(r"membership view version (\d+)", out))
            if rc == 0 and len(rows) == 9 and all(r[1] == "alive" for r in rows) and len(versions) == 1:
                print(out)
                break
            assert time.monotonic() < deadline, out
            time.sleep(0.2)
        rc, out = run([bin_, "cluster", "stop", *args], env=env, timeout=120)
        assert rc == 0, out
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
    import shutil
    import subprocess
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"chimprobe{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ok


def test_a_partitioned_node_is_dead_on_both_sides_and_converges_back(daemons):
    """Three runtimes in three network namespaces on one bridge; node 3's link goes down
    (a partition {1, 2} | {3}) and comes back up."""
    import subprocess
    from test_cluster import cluster_config
    if not netns_available():
        pytest.skip("ip netns is not available here (needs root and iproute2)")
    tag = f"{os.getpid() % 100000}"
    ns = [f"chmA{tag}", f"chmB{tag}", f"chmC{tag}"]
    br_ns = f"chmbr{tag}"
    veth = [f"cmv{i}{tag}" for i in range(3)]
    addrs = [f"10.214.9.{i + 1}" for i in range(3)]
    sh = lambda *a: subprocess.run(list(a), check=True, capture_output=True, timeout=30)
    try:
        sh("ip", "netns", "add", br_ns)
        sh("ip", "-n", br_ns, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", br_ns, "link", "set", "br0", "up")
        for i in range(3):
            sh("ip", "netns", "add", ns[i])
            sh("ip", "link", "add", veth[i], "type", "veth", "peer", "name", veth[i] + "b")
            sh("ip", "link", "set", veth[i], "netns", ns[i])
            sh("ip", "link", "set", veth[i] + "b", "netns", br_ns)
            sh("ip", "-n", br_ns, "link", "set", veth[i] + "b", "master", "br0")
            sh("ip", "-n", br_ns, "link", "set", veth[i] + "b", "up")
            sh("ip", "-n", ns[i], "addr", "add", f"{addrs[i]}/24", "dev", veth[i])
            sh("ip", "-n", ns[i], "link", "set", veth[i], "up")
            sh("ip", "-n", ns[i], "link", "set", "lo", "up")
        hosts = [f"{a}:9513" for a in addrs]
        nodes = []
        for i in range(3):
            cfg = cluster_config(hosts, node_id=i + 1, suspicion_timeout_ms=1000, timeout_ms=3000)
            d = daemons.new(config=cfg, segment=unique_segment(f"t{os.getpid()}pn{i}_"))
            d.nodeid = i + 1
            rc, out = run(["ip", "netns", "exec", ns[i], *map(str, d.start_cmd())], env=d.env, timeout=60)
            assert rc == 0, f"{out}\n{d.log()}"
            d._read_pid()
            nodes.append(d)
        wait_for("all alive", lambda: converged(nodes), 15)
        sh("ip", "-n", ns[2], "link", "set", veth[2], "down")
        wait_for("node 3 dead on 1 and 2, nodes 1 and 2 dead on 3",
                 lambda: all(states(view(n) or {"nodes": []}).get(3, ("",))[0] == "dead" for n in nodes[:2])
                 and {states(view(nodes[2]) or {"nodes": []}).get(k, ("",))[0] for k in (1, 2)} == {"dead"}, 15)
        sh("ip", "-n", ns[2], "link", "set", veth[2], "up")
        v = wait_for("one all-alive view after the partition heals", lambda: converged(nodes), 20)
        assert max(inc for _, inc in states(v).values()) >= 1, v
    finally:
        for d in daemons.all:
            d.cleanup()
        for n in ns + [br_ns]:
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
