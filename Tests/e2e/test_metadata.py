"""One metadata authority for the pool catalog, in both modes (embedded: the lowest-numbered
live node leads; `cluster.metadata: etcd://...`: a real 3-member etcd on loopback): pool
creation works with node 1 SIGKILLed and the pool serves from nodes 2 and 3; two nodes
creating one name at once get one id; a pool destroyed while node 3 is stopped (SIGSTOP,
declared dead) does not come back on any node when it resumes."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, STAGE, require_staged, shm_path, wait_gone
import base64

from etcd_cluster import EtcdCluster, b64, etcd_binary, gateway
from test_cluster import Cluster
from test_membership import converged, states, view, wait_for

WAIT = 30  # seconds: the bound on every client call that should succeed

# A client action run in its own process (a hang is a timeout, not a stuck test): prints one
# JSON line. argv: segment, action, pool name, [start time for a barrier].
CLIENT = r"""
import json, sys, time
import chimaera
from chimaera import ChimaeraError
seg, action, name = sys.argv[1:4]
c = chimaera.Client(segment=seg, connect_timeout_ms=5000)
if len(sys.argv) > 4:
    time.sleep(max(0.0, float(sys.argv[4]) - time.time()))
try:
    if action == "create":
        p = c.create_pool("small_message", name)
        print(json.dumps({"id": p.id}))
    elif action == "info":
        print(json.dumps({"id": c.pool_info(name)["id"]}))
    elif action == "destroy":
        c.pool(name).destroy()
        print(json.dumps({"destroyed": True}))
    elif action == "use":
        # Containers 1 and 2: one per node on nodes 2 and 3 (one container per node).
        p = c.pool(name)
        sub = chimaera.SUBDOMAIN_GLOBAL_CONTAINERS
        rets = [p.md(dq=chimaera.dq_direct_id(sub, i), timeout=20) for i in (1, 2)]
        print(json.dumps({"id": p.id, "md": rets}))
except ChimaeraError as e:
    print(json.dumps({"errno": e.errno, "error": str(e)}))
c.close()
"""


def client_cmd(node, action, name, at=None):
    env = dict(node.env, PYTHONPATH=str(REPO / "bindings" / "python"),
               CHIMAERA_LIB=str(STAGE / "lib" / "libchimaera.so.1"))
    args = [sys.executable, "-c", CLIENT, node.segment, action, name]
    if at is not None:
        args.append(repr(at))
    return args, env


def act(node, action, name, timeout=60):
    args, env = client_cmd(node, action, name)
    p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    assert p.returncode == 0 and lines, f"{action} {name} on node {node.nodeid}: rc {p.returncode}\n{p.stdout}\n{p.stderr}"
    return json.loads(lines[-1])


ENOPOOL = 4096 + 2


@pytest.fixture(params=["embedded", "etcd"])
def mode(request, tmp_path):
    require_staged()
    if request.param == "embedded":
        yield None
        return
    if etcd_binary() is None:
        pytest.skip("no etcd binary (Debian's etcd-server)")
    with EtcdCluster(tmp_path) as e:
        yield e


def start3(daemons, etcd):
    extra = dict(suspicion_timeout_ms=800, timeout_ms=4000)
    if etcd is not None:
        extra["metadata"] = f'"{etcd.metadata_url}"'
    c = Cluster(daemons, 3, **extra).start()
    for i, d in enumerate(c.nodes, 1):
        d.nodeid = i
    wait_for("all alive, one view", lambda: converged(c.nodes), 15)
    return c


def store_record(etcd, name):
    """The catalog record of `name` as etcd holds it (None: no key), read past the runtime."""
    r = gateway(etcd.endpoints[0], "/v3/kv/range", {"key": b64(f"/chimaera/pool/name/{name}")})
    kvs = r.get("kvs") or []
    return json.loads(base64.b64decode(kvs[0]["value"])) if kvs else None


def dead_on(nodes, who):
    return all(states(view(n) or {"nodes": []}).get(who, ("",))[0] == "dead" for n in nodes)


def test_create_with_node_1_killed_serves_from_nodes_2_and_3(daemons, mode):
    c = start3(daemons, mode)
    n1, n2, n3 = c.node(1), c.node(2), c.node(3)
    before = act(n2, "create", "before_kill")
    assert "id" in before, before
    os.kill(n1.pid, signal.SIGKILL)
    t0 = time.monotonic()
    made = act(n2, "create", "after_kill")
    took = time.monotonic() - t0
    assert "id" in made, f"{made}\nnode 2 log:\n{n2.log()}"
    assert made["id"] != before["id"]
    print(f"created with node 1 killed in {took:.2f} s, id {made['id']}")
    if mode is not None:  # the id came from the store
        rec = store_record(mode, "after_kill")
        assert rec and int(rec["id"]) == made["id"] and rec["destroyed"] is False, rec
    for n in (n2, n3):
        got = act(n, "use", "after_kill")
        assert got == {"id": made["id"], "md": [1, 1]}, f"node {n.nodeid}: {got}\n{n.log()}"
    shm_path(n1.segment).unlink(missing_ok=True)


def test_two_nodes_creating_one_name_at_once_get_one_id(daemons, mode):
    c = start3(daemons, mode)
    for round_ in range(4):
        name = f"twin{round_}"
        # Round 0 and 2 race the leader (node 1) against a follower; 1 and 3 two followers.
        pair = (c.node(1), c.node(3)) if round_ % 2 == 0 else (c.node(2), c.node(3))
        at = time.time() + 1.5
        procs = []
        for n in pair:
            args, env = client_cmd(n, "create", name, at=at)
            procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        ids = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            lines = [l for l in out.splitlines() if l.startswith("{")]
            assert p.returncode == 0 and lines, f"{out}\n{err}"
            r = json.loads(lines[-1])
            assert "id" in r, r
            ids.append(r["id"])
        assert ids[0] == ids[1], f"{name}: concurrent creators got ids {ids}"
        if mode is not None:
            assert int(store_record(mode, name)["id"]) == ids[0]
        for n in c.nodes:
            assert act(n, "info", name) == {"id": ids[0]}, f"node {n.nodeid} disagrees on {name}"


def test_a_pool_destroyed_while_node_3_is_stopped_stays_destroyed(daemons, mode):
    c = start3(daemons, mode)
    n1, n2, n3 = c.node(1), c.node(2), c.node(3)
    made = act(n1, "create", "doomed")
    assert "id" in made, made
    assert act(n3, "info", "doomed") == made
    os.kill(n3.pid, signal.SIGSTOP)
    try:
        wait_for("node 3 dead on nodes 1 and 2", lambda: dead_on([n1, n2], 3), 15)
        gone = act(n2, "destroy", "doomed")
        assert gone == {"destroyed": True}, gone
    finally:
        os.kill(n3.pid, signal.SIGCONT)
    if mode is not None:  # the tombstone is in the store
        rec = store_record(mode, "doomed")
        assert rec and int(rec["id"]) == made["id"] and rec["destroyed"] is True, rec
    wait_for("all alive again", lambda: converged(c.nodes), 20)
    # Node 3 held the pool live the whole time: it must learn the tombstone, and its stale
    # catalog must not give the pool back to nodes 1 and 2.
    wait_for("node 3 drops the destroyed pool",
             lambda: act(n3, "info", "doomed").get("errno") == ENOPOOL, 15)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        for n in c.nodes:
            got = act(n, "info", "doomed")
            assert got.get("errno") == ENOPOOL, f"node {n.nodeid} has the destroyed pool back: {got}"
        time.sleep(0.3)
    # The name can be used again, with a new id (the old one stays retired).
    again = act(n3, "create", "doomed")
    assert "id" in again and again["id"] != made["id"], again
    for n in c.nodes:
        assert act(n, "info", "doomed") == again


def test_a_restarted_node_reads_the_catalog_and_follows_changes(daemons, mode):
    c = start3(daemons, mode)
    n1, n2, n3 = c.node(1), c.node(2), c.node(3)
    old = act(n1, "create", "old")
    assert "id" in old, old
    os.kill(n3.pid, signal.SIGKILL)
    assert wait_gone(n3.pid, 5)
    fresh = act(n2, "create", "fresh")
    assert "id" in fresh, fresh
    assert act(n1, "destroy", "old") == {"destroyed": True}
    shm_path(n3.segment).unlink(missing_ok=True)
    n3.start()
    # At start-up it has what was made while it was away, and not what was destroyed.
    assert act(n3, "info", "fresh") == fresh, n3.log()
    assert act(n3, "info", "old").get("errno") == ENOPOOL
    # Later changes reach it too, and a new id never reuses a destroyed one.
    later = act(n1, "create", "later")
    assert "id" in later and later["id"] not in (old["id"], fresh["id"]), later
    wait_for("node 3 has the later pool", lambda: act(n3, "info", "later") == later, 10)
    assert act(n3, "use", "later") == {"id": later["id"], "md": [1, 1]}
