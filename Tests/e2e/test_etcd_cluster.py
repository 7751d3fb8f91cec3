"""The etcd test cluster helper (etcd_cluster.py): it forms a real 3-member cluster, survives
losing one member, and leaves no process or directory behind. EtcdStore itself is tested
against such a cluster in Tests/ChimaeraTests/EtcdStoreTests.swift."""

import base64
import os
import time
import urllib.error

import pytest

from etcd_cluster import EtcdCluster, b64, etcd_cluster, gateway  # noqa: F401 (fixture)


def get(endpoint, key):
    kvs = gateway(endpoint, "/v3/kv/range", {"key": b64(key)}).get("kvs", [])
    return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


def test_three_members_form_one_cluster(etcd_cluster):
    for e in etcd_cluster.endpoints:
        members = gateway(e, "/v3/cluster/member/list", {})["members"]
        assert sorted(m["name"] for m in members) == ["m0", "m1", "m2"]
    gateway(etcd_cluster.endpoints[0], "/v3/kv/put", {"key": b64("/k"), "value": b64("v1")})
    # A linearizable read on another member sees the write.
    assert get(etcd_cluster.endpoints[2], "/k") == "v1"


def test_losing_one_member_keeps_quorum(etcd_cluster):
    etcd_cluster.kill(0)
    with pytest.raises((OSError, urllib.error.URLError)):
        gateway(etcd_cluster.endpoints[0], "/v3/kv/range", {"key": b64("/k")}, timeout=1)
    deadline = time.monotonic() + 10
    while True:
        try:
            gateway(etcd_cluster.endpoints[1], "/v3/kv/put", {"key": b64("/k"), "value": b64("v2")})
            break
        except (OSError, urllib.error.URLError):
            assert time.monotonic() < deadline, "no write succeeded within 10 s of losing one member"
            time.sleep(0.1)
    assert get(etcd_cluster.endpoints[2], "/k") == "v2"


def test_stop_leaves_no_member_and_no_directory(tmp_path):
    c = EtcdCluster(tmp_path).start()
    pids = [c.pid(i) for i in range(3)]
    directory = c.dir
    assert all(pids) and directory.exists()
    c.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not directory.exists()
