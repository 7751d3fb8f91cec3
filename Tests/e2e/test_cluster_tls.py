"""TLS 1.3 on every peer connection (issue 13): certificate mode with keys from
`chimaera cluster keygen`, the shared-key mode as an external PSK, and the peers each refuses
(another CA, an expired certificate, no certificate, plain bytes, another key), each logged
with its reason and counted, while the cluster keeps serving. Bad certificates are made here
with Python's `cryptography`, independently of keygen.
"""
import datetime
import os
import re
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import run, unique_segment
from test_cluster import (KEY, Cluster, client, closed_by_peer, cluster_bin,  # noqa: F401
                          cluster_config, free_ports, wait_serving)
from test_cluster_bounds import rss_kib, status_counter

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


def make_ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_leaf(ca, cn, days_from, days_to):
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=days_from))
            .not_valid_after(now + datetime.timedelta(days=days_to))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, None if isinstance(ca_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()))
    return cert, key


def write_pair(d, name, pair):
    cert, key = pair
    (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / f"{name}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return d / f"{name}.pem", d / f"{name}.key"


def s_client(port, *args, timeout=10):
    """openssl s_client against a node; returns its output (handshake details included)."""
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief", *map(str, args)],
                       input=b"", capture_output=True, timeout=timeout)
    return (p.stdout + p.stderr).decode(errors="replace")


@pytest.fixture
def cert_cluster(daemons, tmp_path):
    ports = free_ports(2)
    hosts = [f"127.0.0.1:{p}" for p in ports]
    hostfile = tmp_path / "hosts"
    hostfile.write_text("".join(h + "\n" for h in hosts))
    certs = tmp_path / "certs"
    rc, out = run([daemons.new(config=None).bin, "cluster", "keygen", certs, "--hosts", hostfile])
    assert rc == 0, out
    nodes = []
    for i in (1, 2):
        cfg = cluster_config(hosts, node_id=i)
        del cfg["cluster"]["key"]
        cfg["cluster"]["tls"] = {"ca": certs / "ca.pem", "cert": certs / f"node{i}.pem",
                                 "key": certs / f"node{i}.key"}
        d = daemons.new(config=cfg, segment=unique_segment(f"t{os.getpid()}s{i}_"))
        d.nodeid = i
        nodes.append(d)
    for d in nodes:
        d.start()
    return ports, certs, nodes


def test_certificate_mode_serves_and_refuses_strangers(cert_cluster, cluster_bin, tmp_path):
    ports, certs, (n1, n2) = cert_cluster
    wait_serving(cluster_bin, n1, 2)
    # A node's port speaks TLS 1.3 to a holder of a cluster certificate.
    out = s_client(ports[0], "-cert", certs / "node2.pem", "-key", certs / "node2.key",
                   "-CAfile", certs / "ca.pem")
    assert "Protocol version: TLSv1.3" in out, out
    before = status_counter(n1, "rejected_connections")
    by_why = {k: status_counter(n1, k) for k in ("rejected_certificate", "rejected_tls_handshake")}
    other = make_ca("another CA")
    ours = (x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes()),
            serialization.load_pem_private_key((certs / "ca.key").read_bytes(), None))
    bad = tmp_path / "bad"
    bad.mkdir()
    wrong_ca = write_pair(bad, "wrong_ca", make_leaf(other, "127.0.0.1", -1, 30))
    expired = write_pair(bad, "expired", make_leaf(ours, "127.0.0.1", -30, -1))
    for cert, key in (wrong_ca, expired):
        s_client(ports[0], "-cert", cert, "-key", key)
    s_client(ports[0])  # no certificate at all
    s = socket.create_connection(("127.0.0.1", ports[0]), timeout=5)
    s.sendall(os.urandom(512))  # plain bytes
    assert closed_by_peer(s), "plain bytes were not dropped"
    time.sleep(0.5)
    log = n1.log()
    for reason in ("certificate has expired", "unable to get local issuer certificate",
                   "peer did not return a certificate", "TLS: handshake failed"):
        assert reason in log, f"{reason!r} not logged:\n{log}"
    assert status_counter(n1, "rejected_connections") >= before + 4
    # Counted by why: three certificates (another CA, expired, none), then plain bytes.
    assert status_counter(n1, "rejected_certificate") >= by_why["rejected_certificate"] + 3
    assert status_counter(n1, "rejected_tls_handshake") >= by_why["rejected_tls_handshake"] + 1
    rc, out = client(cluster_bin, n1, "each", "2", timeout=60)
    assert rc == 0, out


def test_a_cluster_certificate_speaks_only_for_its_host(cert_cluster, daemons, cluster_bin, tmp_path):
    """A runtime with a certificate from the cluster CA, but for another host, claims node 2:
    refused after TLS, because node 2's host entry is not in the certificate."""
    ports, certs, (n1, n2) = cert_cluster
    wait_serving(cluster_bin, n1, 2)
    ours = (x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes()),
            serialization.load_pem_private_key((certs / "ca.key").read_bytes(), None))
    cert, key = write_pair(tmp_path, "elsewhere", make_leaf(ours, "10.9.9.9", -1, 30))
    ip = free_ports(1)[0]
    cfg = cluster_config([f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ip}"], node_id=2)
    del cfg["cluster"]["key"]
    cfg["cluster"]["tls"] = {"ca": certs / "ca.pem", "cert": cert, "key": key}
    intruder = daemons.new(config=cfg, segment=unique_segment(f"t{os.getpid()}h_"))
    intruder.start()
    intruder.nodeid = 2
    rc, out = client(cluster_bin, intruder, "each", "2", timeout=60)
    assert rc != 0, out
    deadline = time.monotonic() + 10
    while "does not name 127.0.0.1" not in n1.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "its certificate does not name 127.0.0.1, the host of node 2" in n1.log(), n1.log()
    rc, out = client(cluster_bin, n1, "each", "2", timeout=60)
    assert rc == 0, out


def test_psk_mode_refuses_another_key_and_plain_frames(daemons, cluster_bin):
    c = Cluster(daemons, 2).start()  # cluster.tls defaults to psk
    for i, d in enumerate(c.nodes, 1):
        d.nodeid = i
    n1 = c.node(1)
    wait_serving(cluster_bin, n1, 2)
    # The old plaintext handshake gets no challenge: TLS comes first.
    s = socket.create_connection(("127.0.0.1", c.ports[0]), timeout=5)
    s.sendall(struct.pack(">IB", 36, 2) + os.urandom(36))
    assert closed_by_peer(s), "a plaintext frame was not dropped"
    # A real runtime holding another key cannot join (PSK binder fails).
    ip = free_ports(1)[0]
    intruder = daemons.new(config=cluster_config([c.hosts[0], f"127.0.0.1:{ip}"],
                                                 key="another-cluster-key-999", node_id=2),
                           segment=unique_segment(f"t{os.getpid()}y_"))
    intruder.start()
    intruder.nodeid = 2
    rc, out = client(cluster_bin, intruder, "each", "2", timeout=60)
    assert rc != 0, out
    rc, out = client(cluster_bin, n1, "each", "2", timeout=60)
    assert rc == 0, out
    log = n1.log()
    assert "TLS: handshake failed" in log, log
    assert status_counter(n1, "rejected_connections") >= 2


def test_unauthenticated_floods_through_tls_leave_rss_flat(daemons, cluster_bin):
    c = Cluster(daemons, 2).start()
    for i, d in enumerate(c.nodes, 1):
        d.nodeid = i
    n1 = c.node(1)
    wait_serving(cluster_bin, n1, 2)
    before = rss_kib(n1.pid)
    # A TLS record header announcing a full record, then 200 connections streaming bytes.
    junk = b"\x16\x03\x01\x40\x00" + os.urandom(64 << 10)
    socks = []
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", c.ports[0]), timeout=5)
        try:
            s.sendall(junk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        socks.append(s)
    closed = sum(closed_by_peer(s, 5) for s in socks)
    grown = rss_kib(n1.pid) - before
    assert grown < 32 << 10, f"RSS grew by {grown} KiB"
    assert closed == 200, f"only {closed} of 200 connections were closed"
    rc, out = client(cluster_bin, n1, "each", "2", timeout=60)
    assert rc == 0, out


class TamperingProxy:
    """Forwards connections from node 2 to node 1; flips one bit of the stream from node 2
    once `flip_after` bytes have passed (0: never), and keeps the first connection's bytes
    from node 2 so a test can replay them."""

    def __init__(self, listen_port, target_port, flip_after=0):
        self.target = target_port
        self.flip_after = flip_after
        self.flipped = False
        self.recorded = b""
        self.first = True
        self.lst = socket.socket()
        self.lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lst.bind(("127.0.0.1", listen_port))
        self.lst.listen(8)
        self.stop = False
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stop:
            try:
                a, _ = self.lst.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                a.close()
                continue
            record = self.first
            self.first = False
            for src, dst, up in ((a, b, True), (b, a, False)):
                t = threading.Thread(target=self._pump, args=(src, dst, up, record), daemon=True)
                t.start()
                self.threads.append(t)

    def _pump(self, src, dst, up, record):
        passed = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if up and record and len(self.recorded) < (64 << 10):
                    self.recorded += data
                if up and self.flip_after and not self.flipped and passed + len(data) > self.flip_after:
                    i = self.flip_after - passed
                    data = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
                    self.flipped = True
                passed += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.lst.close()


def test_psk_mode_refuses_an_altered_frame_and_a_replayed_handshake(daemons, cluster_bin):
    """Node 1 is reached through a proxy (its host entry is the proxy's port; it listens on
    another): a bit flipped after the handshake is refused by TLS, and the bytes of a real
    handshake replayed on a new connection do not authenticate."""
    proxy_port, real_port, p2 = free_ports(3)
    hosts = [f"127.0.0.1:{proxy_port}", f"127.0.0.1:{p2}"]
    # Far enough into the stream to be past the handshakes (TLS, then the node ids).
    proxy = TamperingProxy(proxy_port, real_port, flip_after=4000)
    try:
        nodes = []
        for i in (1, 2):
            cfg = cluster_config(hosts, node_id=i)
            if i == 1:
                cfg["cluster"]["listen"] = f"127.0.0.1:{real_port}"
            d = daemons.new(config=cfg, segment=unique_segment(f"t{os.getpid()}p{i}_"))
            d.nodeid = i
            nodes.append(d)
        for d in nodes:
            d.start()
        n1, n2 = nodes
        # Traffic from node 2 to node 1 until the flipped bit arrives and TLS refuses it.
        deadline = time.monotonic() + 30
        while not proxy.flipped and time.monotonic() < deadline:
            client(cluster_bin, n2, "each", "2", timeout=60)
        assert proxy.flipped, "the proxy never saw 4000 bytes from node 2"
        deadline = time.monotonic() + 10
        while "record refused" not in n1.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "TLS: record refused" in n1.log(), n1.log()
        assert status_counter(n1, "rejected_tls_record") >= 1
        # Replay node 2's first connection byte for byte: no authentication.
        before = status_counter(n1, "rejected_connections")
        handshakes = status_counter(n1, "rejected_tls_handshake")
        s = socket.create_connection(("127.0.0.1", real_port), timeout=5)
        try:
            s.sendall(proxy.recorded)
        except OSError:
            pass
        t0 = time.monotonic()
        assert closed_by_peer(s, 5), "a replayed handshake was not dropped"
        # Refused by TLS, not by cluster.handshake_timeout_ms (2 s) running out.
        assert time.monotonic() - t0 < 1.5, "the replay was only dropped by the handshake timeout"
        assert status_counter(n1, "rejected_connections") >= before + 1
        assert status_counter(n1, "rejected_tls_handshake") >= handshakes + 1
        # The cluster keeps serving (node 2 reconnects through the proxy).
        wait_serving(cluster_bin, n2, 2)
    finally:
        proxy.close()
