"""A real etcd cluster on loopback for tests (cluster.metadata: etcd://...).

    with EtcdCluster(tmp_path) as etcd:        # 3 members, fresh ports and data dirs
        config["cluster"]["metadata"] = etcd.metadata_url
        etcd.kill(0)                           # SIGKILL one member by its pid

Every member is started by this process and stopped by its pid in stop() (the context
manager and the `etcd_cluster` fixture call it even when the test fails); every wait has a
timeout. Tests that need etcd skip with a clear reason when no etcd binary is installed
(`make deps` installs Debian's etcd-server).
"""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

SKIP_REASON = "etcd is not installed (make deps installs Debian's etcd-server)"


def etcd_binary():
    """$CHI_ETCD, else etcd on the PATH; None when there is none."""
    return os.environ.get("CHI_ETCD") or shutil.which("etcd")


def free_ports(n):
    """n distinct loopback ports the kernel reported free (held open until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def gateway(endpoint, path, body, timeout=3):
    """POSTs JSON to etcd's gateway at endpoint ("host:port"); the decoded reply."""
    req = urllib.request.Request(f"http://{endpoint}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read(1 << 22))


def b64(s):
    return base64.b64encode(s.encode()).decode()


class EtcdCluster:
    def __init__(self, workdir=None, members=3, ready_timeout=30):
        binary = etcd_binary()
        if binary is None:
            pytest.skip(SKIP_REASON)
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="etcd-", dir=workdir))
        ports = free_ports(2 * members)
        self.client_ports = ports[:members]
        self.peer_ports = ports[members:]
        self.procs = [None] * members
        self.ready_timeout = ready_timeout

    @property
    def endpoints(self):
        """Client endpoints, "127.0.0.1:PORT" each, member 0 first."""
        return [f"127.0.0.1:{p}" for p in self.client_ports]

    @property
    def metadata_url(self):
        """The cluster.metadata value naming every member."""
        return "etcd://" + ",".join(self.endpoints)

    def log(self, i):
        p = self.dir / f"m{i}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def start(self):
        initial = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, p in enumerate(self.peer_ports))
        token = f"chi-{os.getpid()}-{self.client_ports[0]}"
        try:
            for i, (c, p) in enumerate(zip(self.client_ports, self.peer_ports)):
                client, peer = f"http://127.0.0.1:{c}", f"http://127.0.0.1:{p}"
                cmd = [self.binary, "--name", f"m{i}", "--data-dir", str(self.dir / f"m{i}.etcd"),
                       "--listen-client-urls", client, "--advertise-client-urls", client,
                       "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                       "--initial-cluster", initial, "--initial-cluster-token", token,
                       "--initial-cluster-state", "new",
                       # Short heartbeats and elections: failover within a second on loopback.
                       "--heartbeat-interval", "50", "--election-timeout", "500"]
                with open(self.dir / f"m{i}.log", "wb") as log:
                    self.procs[i] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                     stdin=subprocess.DEVNULL)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self):
        """Waits until every running member answers a linearizable read."""
        deadline = time.monotonic() + self.ready_timeout
        for i, e in enumerate(self.endpoints):
            if self.procs[i] is None:
                continue
            while True:
                if self.procs[i].poll() is not None:
                    raise RuntimeError(f"etcd member {i} exited:\n{self.log(i)[-2000:]}")
                try:
                    gateway(e, "/v3/kv/range", {"key": b64("/ready")}, timeout=1)
                    break
                except (OSError, urllib.error.URLError, ValueError):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"etcd member {i} not ready after {self.ready_timeout} s:\n"
                                           f"{self.log(i)[-2000:]}")
                    time.sleep(0.1)

    def pid(self, i):
        p = self.procs[i]
        return None if p is None else p.pid

    def kill(self, i, sig=signal.SIGKILL):
        """Sends sig to member i by its pid; for SIGKILL, reaps it."""
        p = self.procs[i]
        if p is None:
            return
        if p.poll() is None:
            os.kill(p.pid, sig)
        if sig == signal.SIGKILL:
            p.wait(timeout=10)
            self.procs[i] = None

    def stop(self):
        """Stops every member still running (SIGCONT first, in case it was stopped) and
        removes the data directories."""
        for i, p in enumerate(self.procs):
            if p is not None and p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                os.kill(p.pid, signal.SIGKILL)
            if p is not None:
                p.wait(timeout=10)
            self.procs[i] = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@pytest.fixture
def etcd_cluster(tmp_path):
    """A started 3-member cluster, stopped after the test whatever its outcome."""
    with EtcdCluster(tmp_path) as c:
        yield c
