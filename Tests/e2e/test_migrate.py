"""Container migration (chi_container_migrate, `chimaera migrate`) across three nodes: a
small_message container moves while clients on every node call it, with nothing lost or
doubled (its Served counter moves with it), the container id kept, every node routing to the
new place, and stale requests forwarded; refusals leave the container where it was."""

import json
import re
import struct
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
    # The 256 MiB bdev state moved (and was read back: the bench fails otherwise), beside
    # the transport's and the wire's streams of the same run.
    assert f["migrate_state_mb"] == 256, f
    for k in ("migrate_state_mbps", "remote_bulk_write_mbps", "baseline_tcp_stream_mbps"):
        assert f[k] > 0, (k, f)
    assert f["migrate_state_pause_ms"] > 0, f


def bdev_params(url, size):
    return url.encode().ljust(256, b"\0") + struct.pack("<QII", size, 0, 0)


BLOCK = 64 << 10


def block_bytes(owner, j, seq):
    return struct.pack("<III", owner, j, seq) * (BLOCK // 12) + b"\0" * (BLOCK % 12)


@pytest.mark.parametrize("kind", ["ram", "fs"])
def test_a_bdev_container_moves_with_its_blocks_under_load(daemons, tmp_path, kind):
    """Container 0 of a bdev pool holds 12 blocks; a thread on each node rewrites its own 4
    and reads them back while the container moves node 1 -> 2 -> 3. Every read matches the
    last write (nothing lost, none applied twice: the device's write counter, which moves with
    the state, equals the writes made); the allocator's state moved too (the free bytes match,
    and a new block does not overlap the old ones); a node restarted afterwards reads the
    same bytes through the new placement."""
    import signal
    from conftest import shm_path, wait_gone
    from test_cluster import Cluster
    require_staged()
    cl = Cluster(daemons, 3).start()
    clients = [chimaera.Client(segment=d.segment, mode="attach") for d in cl.nodes]
    url = f"fs://{tmp_path}/dev.bin" if kind == "fs" else "ram://"
    size = 8 << 20
    name = f"bd_{kind}"
    dq0 = chimaera.dq_direct_id(GLOBAL, 0)
    stop = threading.Event()
    threads, errors, writes = [], [], [0] * 3
    last = {}  # block index -> the bytes last written there
    try:
        clients[0].create_pool("bdev", name, params=bdev_params(url, size))
        pools = [c.pool(name) for c in clients]
        blocks = []
        for _ in range(12):
            r = pools[0].call("Allocate", size=BLOCK, dq=dq0, timeout=30)
            off, bsize, container, _ = struct.unpack_from("<QQII", bytes(r.blocks))
            assert (bsize, container) == (BLOCK, 0)
            blocks.append(dict(block_offset=off, block_size=bsize, block_container=0))

        def load(i):
            c, p = clients[i], pools[i]
            seq = 0
            try:
                with c.buffer(BLOCK) as w, c.buffer(BLOCK) as rd:
                    while True:
                        for j in range(4 * i, 4 * i + 4):
                            seq += 1
                            data = block_bytes(i, j, seq)
                            w.view[:] = data
                            assert p.call("Write", data=w, dq=dq0, timeout=30, **blocks[j]).ret == BLOCK
                            writes[i] += 1
                            last[j] = data
                            assert p.call("Read", data=rd, dq=dq0, timeout=30, **blocks[j]).ret == BLOCK
                            assert bytes(rd.view) == data, f"block {j} read back other bytes"
                        if stop.is_set():
                            return
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(f"node {i + 1}: {e!r}")

        def watch():
            # Status asks each container's module for its state's size while the moves free
            # the old states: it must keep answering, from every node.
            k = 0
            while not stop.is_set():
                d = cl.nodes[k % 3]
                rc, out = d.status("--json")
                if rc != 0 or not any(p["name"] == name for p in json.loads(out)["pools"]):
                    errors.append(f"status of node {k % 3 + 1}: rc {rc}: {out[-300:]}")
                    return
                k += 1
            statuses.append(k)

        statuses = []
        threads += [threading.Thread(target=load, args=(i,)) for i in range(3)]
        threads.append(threading.Thread(target=watch))
        for t in threads:
            t.start()
        time.sleep(0.7)
        clients[2].migrate_container(name, 0, 2)
        time.sleep(0.7)
        clients[1].migrate_container(name, 0, 3)
        time.sleep(0.7)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        assert all(n > 8 for n in writes), writes
        assert statuses and statuses[0] >= 3, statuses
        for d in cl.nodes:
            assert placement(d, name) == {0: 3, 1: 2, 2: 3}, d.log()
        moved = [line for d in cl.nodes for line in d.log_file.read_text().splitlines()
                 if f"pool {name}: container 0 moved" in line]
        assert len(moved) == 2, moved
        for line in moved:  # the blocks travelled in the stream, not through a shared file
            assert int(line.split(": ")[-1].split(" bytes")[0]) >= 12 * BLOCK, line
        with clients[0].buffer(BLOCK) as rd:
            for j, blk in enumerate(blocks):
                assert pools[0].call("Read", data=rd, dq=dq0, timeout=30, **blk).ret == BLOCK
                assert bytes(rd.view) == last[j], f"block {j} differs after the moves"
        # Status shows the state's size where the container is (12 blocks and bookkeeping).
        rc, out = cl.node(3).status("--json")
        p = next(p for p in json.loads(out)["pools"] if p["name"] == name)
        held = {x["container"]: x.get("state_bytes") for x in p["placement"]}
        assert 12 * BLOCK <= held[0] < 12 * BLOCK + 65536 and held[1] is None, held
        rc, text = cl.node(3).status()
        assert rc == 0 and re.search(r"container 0 on node 3 state=76\d\.\d KiB", text), text
        stats = pools[1].call("PollStats", dq=dq0, timeout=30)
        assert stats.writes == sum(writes), (stats.writes, writes)
        assert stats.free_bytes == size - 12 * BLOCK, stats.free_bytes
        r = pools[1].call("Allocate", size=BLOCK, dq=dq0, timeout=30)
        off = struct.unpack_from("<Q", bytes(r.blocks))[0]
        assert all(off != b["block_offset"] for b in blocks), "a used block was handed out again"

        n1 = cl.node(1)
        clients[0].close()
        os.kill(n1.pid, signal.SIGKILL)
        assert wait_gone(n1.pid, 5)
        shm_path(n1.segment).unlink(missing_ok=True)
        n1.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                with chimaera.Client(segment=n1.segment, mode="attach") as c1:
                    p1 = c1.pool(name)
                    with c1.buffer(BLOCK) as rd:
                        assert p1.call("Read", data=rd, dq=dq0, timeout=30, **blocks[5]).ret == BLOCK
                        assert bytes(rd.view) == last[5]
                break
            except ChimaeraError as e:
                if e.code != -chimaera.errors.ENOPOOL or time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        for c in clients:
            c.close()
