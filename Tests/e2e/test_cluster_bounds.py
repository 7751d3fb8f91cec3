"""What a peer can make a runtime spend, before and after it authenticates (issue 13): each
bound is reached from a raw socket, and the runtime refuses, logs, counts and keeps serving.

Unauthenticated: frames above a few hundred bytes, more than cluster.max_pending_connections
half-open connections, and a handshake slower than cluster.handshake_timeout_ms. An
authenticated peer (this test plays node 2 with the cluster key): a bulk field above
cluster.max_bulk, or above cluster.connection_budget, is answered with an error code and
never allocated.
"""
import hashlib
import hmac
import os
import re
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import STAGE, unique_segment
from test_cluster import (KEY, Cluster, client, closed_by_peer, cluster_bin,  # noqa: F401
                          cluster_config, free_ports, handshake_challenge, wait_serving)

MAGIC, VERSION = 0x43484931, 1
T_CHALLENGE, T_AUTH, T_AUTHOK, T_REQUEST, T_REPLY, T_PING = 1, 2, 3, 4, 5, 6
EMSGSIZE, ENOBUFS = 90, 105


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def status_counter(node, name):
    rc, out = node.status("--json")
    m = re.search(rf'"{name}":\s*(\d+)', out)
    assert rc == 0 and m, out
    return int(m.group(1))


# These speak the frame protocol in the clear (`cluster.tls: off`), to reach the bounds
# behind TLS; test_cluster_tls reaches the same ones through TLS.

def test_unauthenticated_huge_frames_leave_rss_flat(daemons, cluster_bin):
    c = Cluster(daemons, 2, tls="off").start()
    for i, d in enumerate(c.nodes, 1):
        d.nodeid = i
    n1 = c.node(1)
    wait_serving(cluster_bin, n1, 2)
    before = rss_kib(n1.pid)
    socks = []
    junk = os.urandom(64 << 10)
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", c.ports[0]), timeout=5)
        # A request frame announcing 257 MiB, before any handshake, then part of its body.
        try:
            s.sendall(struct.pack(">IB", (257 << 20) - 1, T_REQUEST) + junk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        socks.append(s)
    closed = sum(closed_by_peer(s, 5) for s in socks)
    grown = rss_kib(n1.pid) - before
    assert grown < 32 << 10, f"RSS grew by {grown} KiB"
    assert closed == 200, f"only {closed} of 200 connections were closed"
    rc, out = client(cluster_bin, n1, "each", "2", timeout=60)
    assert rc == 0, out
    assert "exceeds the limit of 256 bytes" in n1.log(), n1.log()


def test_half_open_connections_past_the_cap_are_refused(daemons, cluster_bin):
    c = Cluster(daemons, 2, max_pending_connections=4, handshake_timeout_ms=1500, tls="off").start()
    for i, d in enumerate(c.nodes, 1):
        d.nodeid = i
    n1 = c.node(1)
    wait_serving(cluster_bin, n1, 2)
    held = [handshake_challenge(c.ports[0])[0] for _ in range(4)]
    # The fifth is closed before any challenge.
    extra = socket.create_connection(("127.0.0.1", c.ports[0]), timeout=5)
    extra.settimeout(5)
    try:
        first = extra.recv(64)
    except ConnectionResetError:
        first = b""
    extra.close()
    assert first == b"", f"the fifth half-open connection got {first!r}"
    assert status_counter(n1, "refused_pending") >= 1
    # The four are dropped once the handshake timeout passes; then a new one is served.
    t0 = time.monotonic()
    assert all(closed_by_peer(s, 6) for s in held), "half-open connections outlived the timeout"
    assert time.monotonic() - t0 < 5
    s, _ = handshake_challenge(c.ports[0])
    s.close()
    rc, out = client(cluster_bin, n1, "each", "2", timeout=60)
    assert rc == 0, out
    log = n1.log()
    assert "max_pending_connections" in log and "no handshake within 1500 ms" in log, log


# ---- an authenticated peer played by this test --------------------------------------------

def read_frame(s):
    hdr = s.recv(5, socket.MSG_WAITALL)
    if len(hdr) < 5:
        return None, None
    n, t = struct.unpack(">IB", hdr)
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            return None, None
        body += chunk
    return t, body


def frame(t, body):
    return struct.pack(">IB", len(body), t) + body


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """sizeof(chi_admin_poll_stats_task_t) and the admin constants, from the staged header."""
    d = tmp_path_factory.mktemp("layout")
    src = d / "l.c"
    src.write_text('#include <stdio.h>\n#include <chimaera/admin.h>\n#include <chimaera/client.h>\n'
                   'int main(void){printf("%zu %u %llu\\n", sizeof(chi_admin_poll_stats_task_t),'
                   ' (unsigned)CHI_ADMIN_POLL_STATS, (unsigned long long)CHI_ADMIN_POOL_ID);}\n')
    subprocess.run(["cc", f"-I{STAGE}/include", src, "-o", d / "l"], check=True)
    size, method, pool = subprocess.run([d / "l"], capture_output=True, text=True,
                                        check=True).stdout.split()
    return int(size), int(method), int(pool)


class FakePeer:
    """Node 2 of a two-node cluster: accepts node 1's connection (where node 1's replies come)
    and opens its own (where this test's requests go), both with the real handshake."""

    def __init__(self, port2):
        self.key = KEY.encode()
        self.lst = socket.socket()
        self.lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lst.bind(("127.0.0.1", port2))
        self.lst.listen(4)
        self.lst.settimeout(20)
        self.replies = {}
        self.cv = threading.Condition()
        self.inbound = None
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        try:
            s, _ = self.lst.accept()
        except OSError:
            return
        self.inbound = s
        nonce = os.urandom(32)
        s.sendall(frame(T_CHALLENGE, struct.pack(">III", MAGIC, VERSION, 2) + nonce))
        t, body = read_frame(s)
        if t != T_AUTH:
            return
        theirs = body[4:36]
        s.sendall(frame(T_AUTHOK, hmac.new(self.key, b"s" + theirs + struct.pack(">II", 2, 1),
                                           hashlib.sha256).digest()))
        while True:
            t, body = read_frame(s)
            if t is None:
                return
            if t == T_REPLY:
                req, rc, _runs, mlen = struct.unpack(">QiII", body[:20])
                with self.cv:
                    self.replies[req] = (rc, body[20:20 + mlen].decode(errors="replace"), body)
                    self.cv.notify_all()

    def connect(self, port1):
        s, body = handshake_challenge(port1)
        nonce = body[12:44]
        mac = hmac.new(self.key, b"c" + nonce + struct.pack(">II", 2, 1), hashlib.sha256).digest()
        s.sendall(frame(T_AUTH, struct.pack(">I", 2) + os.urandom(32) + mac))
        t, _ = read_frame(s)
        assert t == T_AUTHOK, t
        self.out = s

    def reply(self, req, seconds=10):
        with self.cv:
            self.cv.wait_for(lambda: req in self.replies, timeout=seconds)
            return self.replies.get(req)

    def close(self):
        for s in (getattr(self, "out", None), self.inbound, self.lst):
            if s is not None:
                s.close()


def poll_stats_request(layout, req, n, data=True):
    """A PollStats request whose DT_EXPOSE buffer is n bytes. Without `data`, a ~90-byte
    frame that only announces them (refused before its missing bytes matter)."""
    size, method, pool = layout
    hdr = struct.pack(">QQIIIIII", req, pool, method, 0, size, 0, 0, 0)
    return frame(T_REQUEST, hdr + struct.pack(">Q", n) + (bytes(n) if data else b"") + struct.pack("<Q", n))


def test_authenticated_peer_bulk_bounds(daemons, layout):
    p1, p2 = free_ports(2)
    hosts = [f"127.0.0.1:{p1}", f"127.0.0.1:{p2}"]
    peer = FakePeer(p2)
    try:
        cfg = cluster_config(hosts, node_id=1, timeout_ms=20000, max_bulk="4M",
                             connection_budget="2M", tls="off")
        cfg["runtime"]["shm_size"] = "512M"
        n1 = daemons.new(config=cfg, segment=unique_segment(f"t{os.getpid()}b_"))
        n1.start()
        peer.connect(p1)
        # Within the bounds: served, its buffer comes back.
        peer.out.sendall(poll_stats_request(layout, 1, 4096))
        r = peer.reply(1)
        assert r is not None and r[0] == 0, r
        before = rss_kib(n1.pid)
        # Three 200 MiB asks (the old code allocated and zeroed each): refused with EMSGSIZE.
        for req in (2, 3, 4):
            peer.out.sendall(poll_stats_request(layout, req, 200 << 20, data=False))
        for req in (2, 3, 4):
            r = peer.reply(req)
            assert r is not None and r[0] == -EMSGSIZE and "cluster.max_bulk" in r[1], r
        # Above the per-connection budget (2 MiB) but within max_bulk: ENOBUFS.
        peer.out.sendall(poll_stats_request(layout, 5, 3 << 20, data=False))
        r = peer.reply(5)
        assert r is not None and r[0] == -ENOBUFS and "connection_budget" in r[1], r
        grown = rss_kib(n1.pid) - before
        assert grown < 32 << 10, f"RSS grew by {grown} KiB"
        # The connection is still good.
        peer.out.sendall(poll_stats_request(layout, 6, 8192))
        r = peer.reply(6)
        assert r is not None and r[0] == 0, r
        assert status_counter(n1, "refused_bulk") == 4
    finally:
        peer.close()
