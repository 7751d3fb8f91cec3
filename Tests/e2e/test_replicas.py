"""Replicated pools (issue 16 part 3), on 3 nodes: `replicas: 2` places a backup of each
container on the next node; changing methods (CHI_MF_WRITE) from clients on every node run on
the primary and then on the backup before they complete; reads run on the primary. Checked
through `chimaera status --json`: the placement entries name the backups, the primary counts
the changing tasks it applied (`seq`), each backup what it applied, and bdev's state size
(allocated bytes) is the same on both copies. A pool wanting more copies than nodes is refused
with -EINVAL, from Python and from a compose file.

Clients run as subprocesses (one per node, each attached to its node's segment)."""

import errno
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import REPO, STAGE, require_staged, run
from test_cluster import Cluster

WAIT = 60  # seconds: the bound on every client run and every wait that should succeed


@pytest.fixture
def cluster3(daemons):
    require_staged()
    c = Cluster(daemons, 3).start()
    for i, d in enumerate(c.nodes, 1):
        d.nodeid = i
    return c


def py(node, script, timeout=WAIT):
    """Runs `script` in a Python attached to `node`'s runtime; returns its stdout, failing
    the test (with the node's log) on a non-zero exit."""
    env = dict(node.env, PYTHONPATH=str(REPO / "bindings" / "python"),
               CHIMAERA_LIB=str(STAGE / "lib" / "libchimaera.so.1"))
    prelude = ("import json, struct, sys\nimport chimaera\n"
               "from chimaera import ChimaeraError\n"
               f"c = chimaera.Client(segment={node.segment!r})\n"
               "def dq(i):\n"
               "    return chimaera.dq_direct_id(chimaera.SUBDOMAIN_GLOBAL_CONTAINERS, i)\n")
    p = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(script)], env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, (f"client on node {node.nodeid} exited {p.returncode}:\n"
                               f"{p.stdout}\n{p.stderr}\nlog:\n{node.log()}")
    return p.stdout


def pool_status(node, name):
    rc, out = node.status("--json")
    assert rc == 0, out
    doc = json.loads(out)
    pools = [p for p in doc["pools"] if p["name"] == name]
    assert len(pools) == 1, f"pool {name} on node {node.nodeid}: {[p['name'] for p in doc['pools']]}"
    return pools[0]


def settled(cluster, name, check, seconds=10):
    """Waits (bounded) until check(statuses by node) holds; returns the statuses."""
    deadline = time.monotonic() + seconds
    while True:
        st = {n.nodeid: pool_status(n, name) for n in cluster.nodes}
        if check(st) or time.monotonic() > deadline:
            return st
        time.sleep(0.2)


def placement_checks(st, replicas=2):
    """Every node reports the same placement: container i's primary on node i+1 (one
    container a node), its backups on the next replicas-1 nodes."""
    for node, p in st.items():
        assert p["replicas"] == replicas, p
        for e in p["placement"]:
            prim = e["node"]
            want = [(prim - 1 + k) % 3 + 1 for k in range(1, replicas)]
            assert e["backups"] == want, f"node {node}: {e}"


def replication_counts(st):
    """(container, primary seq, backup applied) per container, read from the primary's and
    the backup's own status."""
    out = []
    for e in st[1]["placement"]:
        c, prim, (backup,) = e["container"], e["node"], e["backups"]
        pe = st[prim]["placement"][c]
        be = st[backup]["placement"][c]
        out.append((c, pe.get("seq"), be.get("backup", {}).get("applied")))
    return out


def test_small_message_writes_from_every_node_reach_the_backup(cluster3):
    # Created from node 2 (not the node that assigns ids).
    py(cluster3.node(2), "c.create_pool('small_message', 'rsm', replicas=2)\n")
    st = settled(cluster3, "rsm", lambda st: True, 0)
    placement_checks(st)
    # Md changes state (it counts served tasks: CHI_MF_WRITE); Served is a read.
    counts = {1: 5, 2: 7, 3: 11}  # Md calls per container, from each node
    for n in (1, 2, 3):
        out = py(cluster3.node(n), f"""
            p = c.create_pool('small_message', 'rsm', replicas=2)
            counts = {counts!r}
            for cid, k in counts.items():
                for _ in range(k):
                    assert p.md(dq=dq(cid - 1), timeout=30) == 1
            print(json.dumps([p.call('Served', dq=dq(i), timeout=30).served for i in range(3)]))
            """)
        served = json.loads(out.strip().splitlines()[-1])
        assert served == [counts[i + 1] * n for i in range(3)], out
    want = [(cid - 1, counts[cid] * 3, counts[cid] * 3) for cid in (1, 2, 3)]
    st = settled(cluster3, "rsm", lambda st: replication_counts(st) == want)
    assert replication_counts(st) == want, json.dumps(st, indent=1)


def test_bdev_allocations_and_writes_are_the_same_on_the_backup(cluster3):
    py(cluster3.node(1), "c.create_pool('bdev', 'rbd', replicas=2, path='ram://', size=1 << 22)\n")
    # A fresh device's state size: what it reports with nothing allocated.
    base = pool_status(cluster3.node(1), "rbd")["placement"][0]["state_bytes"]
    # From every node, into every container: allocations of several sizes, a write into each
    # block, a read back from the primary, and one free.
    for n in (1, 2, 3):
        out = py(cluster3.node(n), f"""
            p = c.pool('rbd', 'bdev')
            done = 0
            for cid in range(3):
                for k, size in enumerate((4096, 12288, 65536)):
                    r = p.call('Allocate', size=size, dq=dq(cid), timeout=30)
                    assert r.nblocks >= 1, r
                    for b in r.blocks:
                        with c.buffer(b.size) as w, c.buffer(b.size) as rd:
                            w.view[:] = bytes([({n} * 7 + cid * 3 + k) & 255]) * b.size
                            assert p.call('Write', data=w, block=b, dq=dq(cid), timeout=30).ret == b.size
                            assert p.call('Read', data=rd, block=b, dq=dq(cid), timeout=30).ret == b.size
                            assert bytes(rd.view) == bytes(w.view)
                        done += 1
                    if k == 1:
                        for b in r.blocks:
                            p.call('Free', block=b, dq=dq(cid), timeout=30)
            print(done)
            """)
        assert int(out.strip().splitlines()[-1]) >= 9, out

    def same(st):
        for e in st[1]["placement"]:
            c, prim, (backup,) = e["container"], e["node"], e["backups"]
            pe, be = st[prim]["placement"][c], st[backup]["placement"][c]
            if "backup" not in be or be["backup"].get("applied") != pe.get("seq"):
                return False
            if be["backup"].get("state_bytes") != pe.get("state_bytes"):
                return False
        return True

    st = settled(cluster3, "rbd", same)
    placement_checks(st)
    assert same(st), json.dumps(st, indent=1)
    for e in st[1]["placement"]:
        c, prim = e["container"], e["node"]
        pe = st[prim]["placement"][c]
        # 3 nodes x (3 Allocates + the blocks written + 1 Free): at least 3 x 9 changes.
        assert pe["seq"] >= 27, pe
        # 3 x (4 KiB + 64 KiB) still allocated (the 12 KiB ones were freed), on both copies.
        assert pe["state_bytes"] - base == 3 * (4096 + 65536), (pe, base)


def test_more_replicas_than_nodes_is_refused(cluster3, tmp_path):
    out = py(cluster3.node(3), """
        try:
            c.create_pool('small_message', 'r4', replicas=4)
        except ChimaeraError as e:
            print(e.code, e)
        else:
            print('created')
        """)
    code, _, msg = out.strip().partition(" ")
    assert int(code) == -errno.EINVAL and "4 replicas" in msg and "3" in msg, out
    f = tmp_path / "r4.yaml"
    f.write_text("pools:\n  - name: r4c\n    module: small_message\n    replicas: 4\n")
    node = cluster3.node(1)
    rc, text = run([node.bin, "compose", f, "--segment", node.segment], env=node.env)
    assert rc == 1 and "4 replicas" in text, text
    # No half-made pool anywhere; and 3 copies (one a node) is fine from compose.
    for n in cluster3.nodes:
        rc, s = n.status("--json")
        assert rc == 0 and not [p for p in json.loads(s)["pools"] if p["name"] in ("r4", "r4c")], s
    f.write_text("pools:\n  - name: r3c\n    module: small_message\n    replicas: 3\n")
    rc, text = run([node.bin, "compose", f, "--segment", node.segment], env=node.env)
    assert rc == 0, text
    st = settled(cluster3, "r3c", lambda st: True, 0)
    placement_checks(st, replicas=3)
