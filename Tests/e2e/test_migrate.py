"""Container migration (chi_container_migrate, `chimaera migrate`) across three nodes: a
small_message container moves while clients on every node call it, with nothing lost or
doubled (its Served counter moves with it), the container id kept, every node routing to the
new place, and stale requests forwarded; refusals leave the container where it was."""

import json
import os
import sys
import threading
import time

import pytest

from conftest import REPO, STAGE, require_staged, run

sys.path.insert(0, str(REPO / "bindings" / "python"))
os.environ["CHIMAERA_LIB"] = str(STAGE / "lib" / "libchimaera.so.1")
import chimaera  # noqa: E402
from chimaera import ChimaeraError  # noqa: E402

GLOBAL = chimaera.SUBDOMAIN_GLOBAL_CONTAINERS


def md(pool, container):
    return pool.call("Md", depth=0, dq=chimaera.dq_direct_id(GLOBAL, container), timeout=30).ret


def served(pool, container):
    return pool.call("Served", dq=chimaera.dq_direct_id(GLOBAL, container), timeout=30).served


def placement(node, pool_name):
    rc, out = node.status("--json")
    assert rc == 0, out
    p = next(p for p in json.loads(out)["pools"] if p["name"] == pool_name)
    return {x["container"]: x["node"] for x in p["placement"]}


def test_a_container_moves_under_load_from_every_node(daemons):
    from test_cluster import Cluster
    require_staged()
    cl = Cluster(daemons, 3).start()
    clients = [chimaera.Client(segment=d.segment, mode="attach") for d in cl.nodes]
    stop = threading.Event()
    threads = []
    try:
        clients[0].create_pool("small_message", "mig")
        pools = [c.pool("mig") for c in clients]
        for p in pools:
            assert [md(p, i) for i in range(3)] == [1, 1, 1]
        assert served(pools[0], 0) == 3
        errors, counts = [], []

        def load(p):
            n = 0
            try:
                while not stop.is_set():
                    assert md(p, 0) == 1
                    n += 1
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(repr(e))
            counts.append(n)
        threads += [threading.Thread(target=load, args=(p,)) for p in pools]
        for t in threads:
            t.start()
        time.sleep(0.7)
        # Asked on node 3, held by node 1, moved to node 2; then on to node 3 (asked there).
        clients[2].migrate_container("mig", 0, 2)
        time.sleep(0.7)
        clients[2].migrate_container(pools[2], 0, 3)
        time.sleep(0.7)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        total = sum(counts) + 3
        for d in cl.nodes:
            assert placement(d, "mig") == {0: 3, 1: 2, 2: 3}, d.log()
        # Every Md ran exactly once: the counter travelled with the container.
        assert served(pools[0], 0) == total, (served(pools[0], 0), total)
        for p in pools:
            assert [md(p, i) for i in range(3)] == [1, 1, 1]
        assert "moved from node 1" in cl.node(1).log() and "arrived on node 2" in cl.node(2).log()
        # Refusals: an unknown node, a module that cannot migrate, a container that is not
        # there; the container stays and serves.
        with pytest.raises(ChimaeraError) as e:
            clients[0].migrate_container("mig", 0, 9)
        assert e.value.code == -22
        assert md(pools[1], 0) == 1 and placement(cl.node(1), "mig")[0] == 3
        rc, out = run([cl.node(1).bin, "migrate", "--pool", "mig", "--container", "0", "--to", "1",
                       "--segment", cl.node(1).segment], env=cl.node(1).env, timeout=60)
        assert rc == 0, out
        assert "container 0" in out and "node 1" in out, out
        for d in cl.nodes:
            assert placement(d, "mig")[0] == 1
        assert served(pools[2], 0) == total + 4
    finally:
        # The load threads end before their clients close.
        stop.set()
        for t in threads:
            t.join(timeout=60)
        for c in clients:
            c.close()


def test_docs_show_small_messages_migrate_out_as_it_is():
    src = (REPO / "Sources/Mods/small_message/small_message.c").read_text()
    fn = src[src.index("static int sm_migrate_out("):]
    fn = fn[:fn.index("\n}\n") + 2]
    doc = (REPO / "docs/modules.md").read_text()
    assert fn in doc, f"docs/modules.md lacks:\n{fn}"
    assert "chimaera migrate --pool NAME --container N --to NODE" in doc


def test_a_restarted_node_routes_to_where_its_container_moved(daemons):
    """Container 0 moves from node 1 to node 2; node 1 is killed and restarted: the pool comes
    back from a peer's catalog with the placement, so node 1 routes container 0 to node 2
    (whose state carried the count) instead of creating a fresh copy of its own."""
    import signal
    from conftest import shm_path, wait_gone
    from test_cluster import Cluster
    require_staged()
    cl = Cluster(daemons, 3).start()
    c2 = chimaera.Client(segment=cl.node(2).segment, mode="attach")
    try:
        c2.create_pool("small_message", "mig_restart")
        p2 = c2.pool("mig_restart")
        for _ in range(5):
            assert md(p2, 0) == 1
        c2.migrate_container("mig_restart", 0, 2)
        assert served(p2, 0) == 5
        n1 = cl.node(1)
        os.kill(n1.pid, signal.SIGKILL)
        assert wait_gone(n1.pid, 5)
        shm_path(n1.segment).unlink(missing_ok=True)
        n1.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with chimaera.Client(segment=n1.segment, mode="attach") as c1:
                    p1 = c1.pool("mig_restart")
                    assert md(p1, 0) == 1
                    assert served(p1, 0) == 6, "node 1 made a container 0 of its own"
                    break
            except ChimaeraError as e:
                if e.code != -chimaera.errors.ENOPOOL:
                    raise
                time.sleep(0.3)
        else:
            pytest.fail("the restarted node never got the pool back")
        assert placement(n1, "mig_restart")[0] == 2
        assert served(p2, 0) == 6
    finally:
        c2.close()


def test_bench_migrate_reports_pauses_and_nothing_lost():
    require_staged()
    rc, out = run([STAGE / "bin" / "chimaera", "bench", "migrate", "--json"], timeout=300)
    assert rc == 0, out
    f = json.loads(out.strip().splitlines()[-1])
    print(f)
    assert f["tasks_lost"] == 0 and f["moves"] == 20 and f["tasks"] > 0, f
    assert 0 < f["migrate_pause_us_p50"] <= f["migrate_pause_us_max"], f
