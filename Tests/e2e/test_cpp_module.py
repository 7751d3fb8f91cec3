"""The C++ module layer (bindings/cpp: chimaera/api/chimaera_module.h, issue 17): a seed-shaped
compressor written by hand (Tests/e2e/cpp_compressor: the seed's task structs, Client and
Server, with zlib bodies) is built with CMake against the staged prefix and installed; then

- its descriptors, which the layer records from the seed's SerializeIn/SerializeOut, are what
  those functions say (offsets, sizes, types, directions, bulk modes and pairings);
- the seed's "Invoking your mods" program, built by an external CMake project with
  find_package(Chimaera), find_package(Example) and example::compressor_client, compresses
  1 MiB and decompresses it byte for byte, against a real daemon;
- Python calls the methods by name with no binding code (create params included);
- a method spawns subtasks and waits for them on a one-worker runtime (the fiber waits);
- create params given by name (compress_id=9) reach Create; a wrong name is refused;
- on two nodes, Decompress runs on the other node's container (DT_EXPOSE in, DT_WRITE out),
  and a TF_LOCAL task routed there fails with -CHI_ENOCONTAINER, from the C++ client and
  from Python (whose tasks follow the method's CHI_MF_LOCAL)."""

import json
import os
import shutil
import struct
import sys
import time
import zlib
from pathlib import Path

import pytest

from conftest import CXX, REPO, STAGE, require_staged, run

sys.path.insert(0, str(REPO / "bindings" / "python"))
os.environ["CHIMAERA_LIB"] = str(STAGE / "lib" / "libchimaera.so.1")
import chimaera  # noqa: E402

SRC = Path(__file__).resolve().parent / "cpp_compressor"
MODULE = "example_compressor"
GLOBAL = chimaera.SUBDOMAIN_GLOBAL_CONTAINERS
WAIT = 60
MiB = 1 << 20


def cmake_build(src, build, *args, install=False, timeout=600):
    rc, out = run(["cmake", "-S", src, "-B", build, *args], timeout=120)
    assert rc == 0, f"cmake configure of {src} failed:\n{out}"
    rc, out2 = run(["cmake", "--build", build, "-j2"], timeout=timeout)
    assert rc == 0, f"cmake build of {src} failed:\n{out2}"
    if install:
        rc, out3 = run(["cmake", "--install", build], timeout=120)
        assert rc == 0, f"cmake install of {src} failed:\n{out3}"
    return out + out2


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The repo built and installed into a prefix, and the external program built against
    that prefix: (prefix, external binary)."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed (`make deps` installs it)")
    require_staged()
    if not (STAGE / "include" / "chimaera" / "api" / "chimaera_module.h").exists():
        pytest.fail(f"{STAGE}/include/chimaera/api/chimaera_module.h is not staged: `make all`")
    root = tmp_path_factory.mktemp("cppmod")
    prefix = root / "prefix"
    cmake_build(SRC, root / "build", f"-DCMAKE_PREFIX_PATH={STAGE}",
                f"-DCMAKE_INSTALL_PREFIX={prefix}", "-DCMAKE_CXX_FLAGS=-Wall -Werror "
                "-Wno-unused-variable", install=True)
    assert (prefix / "lib" / "chimaera" / f"lib{MODULE}.so").exists()
    cmake_build(SRC / "external", root / "external", f"-DCMAKE_PREFIX_PATH={STAGE};{prefix}")
    return prefix, root / "external" / "external"


def module_env(monkeypatch, prefix):
    """Python's chi_module_describe must find the module the daemons load."""
    monkeypatch.setenv("CHI_MODULE_PATH", f"{prefix}/lib/chimaera:{STAGE / 'lib' / 'chimaera'}")


def start(daemons, prefix, **runtime):
    cfg = {"shm_size": "64M", "module_path": [str(prefix / "lib" / "chimaera")]}
    cfg.update(runtime)
    return daemons.start(config={"runtime": cfg})


def test_descriptors_are_what_serialize_in_and_out_say(installed, monkeypatch):
    prefix, _ = installed
    module_env(monkeypatch, prefix)
    mod = chimaera.describe(MODULE)
    got = {}
    for name, m in mod.methods.items():
        got[name] = [(f.name, f.offset, f.size, f.type, f.dir, f.bulk_size_field, f.bulk_mode)
                     for f in m.fields]
    hdr = 128
    U64, U32, BULK = chimaera.FT_U64, chimaera.FT_U32, chimaera.FT_BULK
    IN, OUT, INOUT = chimaera.DIR_IN, chimaera.DIR_OUT, chimaera.DIR_INOUT
    W, E = chimaera.DT_WRITE, chimaera.DT_EXPOSE
    assert got["Compress"] == [("data", hdr, 16, BULK, IN, 1, W),
                               ("data_size", hdr + 16, 8, U64, IN, -1, 0)], got
    # Decompress: SerializeIn exposes data, SerializeOut writes it back: INOUT, both modes.
    assert got["Decompress"] == [("data", hdr, 16, BULK, INOUT, 1, W | E),
                                 ("data_size", hdr + 16, 8, U64, INOUT, -1, 0)], got
    assert got["Chain"] == [("depth", hdr, 4, U32, IN, -1, 0),
                            ("reached", hdr + 4, 4, U32, OUT, -1, 0),
                            ("pid", hdr + 8, 8, U64, OUT, -1, 0),
                            ("container", hdr + 16, 4, U32, OUT, -1, 0)], got
    assert got["Where"] == [("pid", hdr, 8, U64, OUT, -1, 0)], got
    assert {m.id for m in mod.methods.values()} == {10, 11, 12, 13}
    # Where's TaskFlags<TF_LOCAL> is the method's CHI_MF_LOCAL; the others may travel.
    assert {n: m.local for n, m in mod.methods.items()} == {
        "Compress": False, "Decompress": False, "Chain": False, "Where": True}
    assert mod.methods["Where"].flags & chimaera.MF_LOCAL
    assert mod.methods["Compress"].task_size == hdr + 24


def test_seed_program_round_trips_1mib(installed, daemons):
    prefix, external = installed
    d = start(daemons, prefix)
    rc, out = run([external], env=d.env, timeout=120)
    assert rc == 0, f"external exited {rc}:\n{out}\nlog:\n{d.log()}"
    assert "round trip ok: 1048576 bytes" in out, out


def real_bytes(n):
    """Mostly compressible, not a pattern: the files under /usr/share, in a fixed order."""
    from test_remote_decompress import real_bytes as rb
    return rb(n)


def test_python_calls_the_methods_by_name(installed, daemons, monkeypatch):
    prefix, _ = installed
    module_env(monkeypatch, prefix)
    d = start(daemons, prefix)
    blob = real_bytes(MiB)
    with chimaera.Client(segment=d.segment, mode="attach") as c:
        # The create params are CreateTaskParams' bytes: compress_id_ (an int) at offset 0.
        pool = c.create_pool(MODULE, "py9", params=struct.pack("<i", 9))
        with c.buffer(MiB) as buf:
            buf.view[:] = blob
            r = pool.call("Compress", data=buf, timeout=WAIT)
            assert 0 < r.rc < 0.9 * MiB, r.rc
            packed = bytes(buf.view[:r.rc])
            assert zlib.decompress(packed) == blob, "Compress did not leave zlib data of it"
            # Level 9, the create param, not zlib's default (6) or 1.
            z9, z1 = len(zlib.compress(blob, 9)), len(zlib.compress(blob, 1))
            assert abs(len(packed) - z9) < abs(len(packed) - z1), (len(packed), z9, z1)
            r = pool.call("Decompress", data=buf, timeout=WAIT)
            assert r.rc == 0 and r.data_size == MiB, r
            assert bytes(buf.view) == blob, "the round trip differs"
            # Corrupt data: the method's status comes back, the buffer is left alone.
            buf.view[:4] = b"\x00\x01\x02\x03"
            with pytest.raises(chimaera.ChimaeraError) as e:
                pool.call("Decompress", data=buf, timeout=WAIT)
            assert e.value.code == -74, e.value  # -EBADMSG
        assert pool.call("Chain", depth=3, timeout=WAIT).reached == 3
        assert pool.call("Where", timeout=WAIT).pid == d.pid
        # Create's params reach Create: an unknown compress_id fails the pool.
        with pytest.raises(chimaera.ChimaeraError) as e:
            c.create_pool(MODULE, "bad", params=struct.pack("<i", 42))
        assert e.value.code == -22, e.value  # -EINVAL, Create's chi::Error
        # CHI_CLIENT in Create is refused, not a second connection from inside the runtime.
        with pytest.raises(chimaera.ChimaeraError) as e:
            c.create_pool(MODULE, "probe", params=struct.pack("<i", -2))
        assert e.value.code == -95, e.value  # -ENOTSUP


def test_create_params_by_name_reach_create(installed, daemons, monkeypatch):
    """create_pool(..., compress_id=N) lays out CreateTaskParams from the descriptor the layer
    records from its serialize(ar): the level reaches Create, a wrong name is refused."""
    prefix, _ = installed
    module_env(monkeypatch, prefix)
    params = chimaera.describe(MODULE).create_params
    assert [(f.name, f.offset, f.type) for f in params.fields] == [
        ("compress_id", 0, chimaera.FT_I32)], params.fields
    d = start(daemons, prefix)
    blob = real_bytes(MiB)
    z = {lvl: len(zlib.compress(blob, lvl)) for lvl in (1, 9)}
    assert z[1] != z[9], z
    with chimaera.Client(segment=d.segment, mode="attach") as c:
        for lvl in (1, 9):
            pool = c.create_pool(MODULE, f"kw{lvl}", compress_id=lvl)
            with c.buffer(MiB) as buf:
                buf.view[:] = blob
                n = pool.call("Compress", data=buf, timeout=WAIT).rc
                assert zlib.decompress(bytes(buf.view[:n])) == blob
            other = 9 if lvl == 1 else 1
            # The size zlib gives at the level Create got, not at the other one.
            assert abs(n - z[lvl]) < abs(n - z[other]), (lvl, n, z)
        # A value Create refuses is refused by Create: the name reached it.
        with pytest.raises(chimaera.ChimaeraError) as e:
            c.create_pool(MODULE, "kw42", compress_id=42)
        assert e.value.code == -22, e.value  # -EINVAL, Create's chi::Error
        with pytest.raises(TypeError) as e:
            c.create_pool(MODULE, "kwbad", level=9)
        text = str(e.value)
        assert "example_compressor has no create parameter 'level'" in text, text
        assert "compress_id: i32" in text, text
        with pytest.raises(chimaera.ChimaeraError) as e:
            c.pool("kwbad")
        assert e.value.code == -chimaera.ENOPOOL, e.value


def test_monitor_hooks_and_periodic_runs(installed, daemons, monkeypatch):
    """MonitorChain's kSchedule sends a dynamic query to the last container; its kReplicaAgg
    sees every replica of a broadcast in rctx.replicas_; a periodic Chain reruns."""
    prefix, _ = installed
    module_env(monkeypatch, prefix)
    d = start(daemons, prefix)
    with chimaera.Client(segment=d.segment, mode="attach") as c:
        pool = c.create_pool(MODULE, "mon", containers_per_node=3)
        for k in range(3):
            r = pool.call("Chain", depth=0, dq=chimaera.dq_direct_id(GLOBAL, k), timeout=WAIT)
            assert r.container == k, (k, r)
        assert pool.call("Chain", depth=0, dq=chimaera.dq_dynamic(), timeout=WAIT).container == 2
        assert pool.call("Chain", depth=0, dq=chimaera.dq_global_bcast(), timeout=WAIT).reached == 3
        with pool.call_async("Chain", depth=1, period_ms=5) as f:
            deadline = time.monotonic() + WAIT
            while f.runs < 3:
                assert time.monotonic() < deadline, f"the periodic Chain ran {f.runs} times"
                time.sleep(0.01)
            f.cancel()
            with pytest.raises(chimaera.ChimaeraError) as e:
                f.result(timeout=WAIT)
            assert e.value.code == -125, e.value  # -ECANCELED


def test_subtasks_are_waited_for_without_blocking_the_one_worker(installed, daemons):
    prefix, external = installed
    d = start(daemons, prefix, low_latency_workers=1, high_latency_workers=0)
    rc, out = run([external, "chain", "40"], env=d.env, timeout=60)
    assert rc == 0 and "chain reached 40" in out, f"{out}\nlog:\n{d.log()}"


def placement(node, pool_name):
    rc, out = node.status("--json")
    assert rc == 0, out
    pool = next(p for p in json.loads(out)["pools"] if p["name"] == pool_name)
    return {x["container"]: x["node"] for x in pool["placement"]}, pool


def test_two_nodes_decompress_remote_and_tf_local_stays(installed, daemons, monkeypatch):
    from test_cluster import Cluster
    prefix, external = installed
    module_env(monkeypatch, prefix)
    cl = Cluster(daemons, 2)
    for d in cl.nodes:
        text = d.config.read_text()
        d.config.write_text(text.replace(
            "runtime:\n", f"runtime:\n  module_path: [{prefix / 'lib' / 'chimaera'}]\n", 1))
    cl.start()
    blob = real_bytes(MiB)
    packed = zlib.compress(blob)
    with chimaera.Client(segment=cl.node(1).segment, mode="attach") as c:
        # The external program's pool: one container per node.
        pool = c.create_pool(MODULE, "ipc_test", containers_per_node=1)
        held, _ = placement(cl.node(1), "ipc_test")
        assert sorted(held.values()) == [1, 2], held
        far = next(k for k, n in held.items() if n == 2)
        dq = chimaera.dq_direct_id(GLOBAL, far)
        with c.buffer(MiB) as buf:
            buf.view[:len(packed)] = packed
            buf.view[len(packed):] = b"\xa5" * (MiB - len(packed))
            r = pool.call("Decompress", data=buf, dq=dq, timeout=WAIT)
            assert r.rc == 0 and r.data_size == MiB, r
            assert bytes(buf.view) == blob, "the remote Decompress did not write back the data"
        assert pool.call("Chain", depth=2, dq=dq, timeout=WAIT).pid == cl.node(2).pid
        _, status = placement(cl.node(2), "ipc_test")
        stats = {m["method"]: m for m in status["methods"]}
        assert stats["Decompress"]["completed"] == 1, stats
        # Python builds Where from its descriptor: CHI_MF_LOCAL keeps it here too, whether
        # the binding sets CHI_TF_LOCAL on the task (it does) or not (the runtime checks the
        # method's flag itself).
        near = next(k for k, n in held.items() if n == 1)
        where = pool.describe().method("Where")
        for task_flag in (True, False):
            monkeypatch.setattr(where, "local", task_flag)
            with pytest.raises(chimaera.ChimaeraError) as e:
                pool.call("Where", dq=dq, timeout=WAIT)
            assert e.value.code == -chimaera.errors.ENOCONTAINER, (task_flag, e.value)
            assert pool.call("Where", dq=chimaera.dq_direct_id(GLOBAL, near),
                             timeout=WAIT).pid == cl.node(1).pid
        monkeypatch.undo()
        module_env(monkeypatch, prefix)
        # A method without the flag still goes there.
        assert pool.call("Chain", depth=0, dq=dq, timeout=WAIT).pid == cl.node(2).pid
    # The C++ client marks Where TF_LOCAL (its TaskFlags): the other node's container is
    # refused, this node's answers.
    rc, out = run([external, "where", str(far)], env=cl.node(1).env, timeout=60)
    assert rc == 0 and f"where error -{chimaera.errors.ENOCONTAINER}" in out, out
    rc, out = run([external, "where", str(near)], env=cl.node(1).env, timeout=60)
    assert rc == 0 and f"where {cl.node(1).pid}" in out, out


def test_a_serialised_value_that_is_no_field_refuses_the_module(tmp_path, capfd, monkeypatch):
    require_staged()
    lib = tmp_path / "libchi_bad.so"
    rc, out = run([CXX, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
                   "-fvisibility=hidden", f"-I{STAGE}/include", SRC.parent / "cpp_bad_module" /
                   "bad_module.cc", "-o", lib, f"-L{STAGE}/lib", "-lchimaera"], timeout=120)
    assert rc == 0, out
    monkeypatch.setenv("CHI_MODULE_PATH", str(tmp_path))
    with pytest.raises(chimaera.ChimaeraError) as e:
        chimaera.describe("chi_bad")
    assert "returned NULL" in str(e.value), e.value
    err = capfd.readouterr().err
    assert "method Ping: a serialised value is not a field of the task" in err, err
