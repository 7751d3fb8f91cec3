"""The Python binding (bindings/python) against real daemons: sync and async calls, calls built
from a module's descriptors (including a module compiled here, with no binding code), zero-copy
buffers, errors, a missing or dying daemon, timeouts, threads, fork and spawn.

The binding is imported from the source tree with CHIMAERA_LIB pointing at the staged library;
test_python_package.py installs it into a virtualenv."""

import ctypes
import json
import errno
import multiprocessing
import os
import pickle
import struct
import sys
import threading
import time

import pytest

from conftest import CC, REPO, STAGE, require_staged, run, unique_segment

sys.path.insert(0, str(REPO / "bindings" / "python"))
os.environ["CHIMAERA_LIB"] = str(STAGE / "lib" / "libchimaera.so.1")
import chimaera  # noqa: E402
from chimaera import ChimaeraError, ChimaeraTimeoutError  # noqa: E402

WAIT = 30  # seconds: the bound on every wait that should succeed

# A module written only for this test: the binding calls it through its descriptors alone.
TEST_MODULE = r"""
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>
#include "chimaera/module.h"

typedef struct {
    chi_task_t hdr;
    uint8_t a8; int16_t b16; uint32_t counter; uint64_t big; int64_t neg; double x; float y;
    bool flag; char name[16]; uint8_t blob[8];
    double sum; char greeting[32]; uint8_t rev[8]; bool not_flag; int64_t neg2;
} mix_task_t;
typedef struct { chi_task_t hdr; uint32_t ms; uint32_t slept; } sleep_task_t;
typedef struct { chi_task_t hdr; int32_t code; } fail_task_t;

#define F(T, m, ft, d) {#m, (uint32_t)offsetof(T, m), (uint32_t)sizeof(((T *)0)->m), ft, d, -1, 0}
static const chi_field_desc_t mix_fields[] = {
    F(mix_task_t, a8, CHI_FT_U8, CHI_DIR_IN), F(mix_task_t, b16, CHI_FT_I16, CHI_DIR_IN),
    F(mix_task_t, counter, CHI_FT_U32, CHI_DIR_INOUT), F(mix_task_t, big, CHI_FT_U64, CHI_DIR_IN),
    F(mix_task_t, neg, CHI_FT_I64, CHI_DIR_IN), F(mix_task_t, x, CHI_FT_F64, CHI_DIR_IN),
    F(mix_task_t, y, CHI_FT_F32, CHI_DIR_IN), F(mix_task_t, flag, CHI_FT_BOOL, CHI_DIR_IN),
    F(mix_task_t, name, CHI_FT_STR, CHI_DIR_IN), F(mix_task_t, blob, CHI_FT_BYTES, CHI_DIR_IN),
    F(mix_task_t, sum, CHI_FT_F64, CHI_DIR_OUT), F(mix_task_t, greeting, CHI_FT_STR, CHI_DIR_OUT),
    F(mix_task_t, rev, CHI_FT_BYTES, CHI_DIR_OUT),
    F(mix_task_t, not_flag, CHI_FT_BOOL, CHI_DIR_OUT),
    F(mix_task_t, neg2, CHI_FT_I64, CHI_DIR_OUT),
};
static const chi_field_desc_t sleep_fields[] = {
    F(sleep_task_t, ms, CHI_FT_U32, CHI_DIR_IN), F(sleep_task_t, slept, CHI_FT_U32, CHI_DIR_OUT),
};
static const chi_field_desc_t fail_fields[] = { F(fail_task_t, code, CHI_FT_I32, CHI_DIR_IN) };
static const chi_method_desc_t methods[] = {
    {10, sizeof(mix_task_t), 0, 15, "Mix", mix_fields, NULL},
    {11, sizeof(sleep_task_t), CHI_MF_PERIODIC_OK, 2, "Sleep", sleep_fields, NULL},
    {12, sizeof(fail_task_t), 0, 1, "Fail", fail_fields, NULL},
};

static int create(chi_container_t *c, const void *p, uint32_t n, void **state) {
    (void)p; (void)n; *state = NULL;
    return chi_container_add_lanes(c, 0, 1, CHI_PRIO_LOW_LATENCY);
}
static int run(void *state, chi_task_t *t, chi_rctx_t *r) {
    (void)state; (void)r;
    if (t->method == 10) {
        mix_task_t *m = (mix_task_t *)t;
        m->counter += 1;
        m->sum = m->a8 + m->b16 + (double)m->big + (double)m->neg + m->x + m->y;
        snprintf(m->greeting, sizeof m->greeting, "hello %s", m->name);
        for (int i = 0; i < 8; i++) m->rev[i] = m->blob[7 - i];
        m->not_flag = !m->flag;
        m->neg2 = -m->neg;
        return 0;
    }
    if (t->method == 11) {
        sleep_task_t *s = (sleep_task_t *)t;
        usleep(s->ms * 1000u);
        s->slept = s->ms;
        return 0;
    }
    if (t->method == 12) return ((fail_task_t *)t)->code;
    return -CHI_ENOMETHOD;
}
static const chi_module_vtable_t vt = {
    .size = sizeof(chi_module_vtable_t), .abi_major = CHI_ABI_MAJOR, .abi_minor = CHI_ABI_MINOR,
    .name = "chi_pytest", .version = 1, .nmethods = 3, .methods = methods,
    .create = create, .run = run,
};
CHI_MODULE_EXPORT(&vt)
"""


@pytest.fixture
def client(daemon):
    with chimaera.Client(segment=daemon.segment) as c:
        yield c


@pytest.fixture
def pool(client):
    return client.create_pool("small_message", "py", containers_per_node=2)


@pytest.fixture(scope="module")
def test_module_dir(tmp_path_factory):
    """Builds libchi_pytest.so; returns its directory."""
    require_staged()
    d = tmp_path_factory.mktemp("pymod")
    (d / "mod.c").write_text(TEST_MODULE)
    rc, out = run([CC, "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                   "-fvisibility=hidden", f"-I{STAGE}/include", d / "mod.c",
                   "-o", d / "libchi_pytest.so", f"-L{STAGE}/lib", "-lchimaera"], timeout=120)
    assert rc == 0, out
    return d


@pytest.fixture
def tpool(daemons, test_module_dir, monkeypatch):
    """A pool of the test module, on a daemon that finds it through runtime.module_path; the
    binding finds its descriptors through CHI_MODULE_PATH."""
    monkeypatch.setenv("CHI_MODULE_PATH", f"{test_module_dir}:{STAGE / 'lib' / 'chimaera'}")
    d = daemons.start(config={"runtime": {"shm_size": "256M",
                                          "module_path": [str(test_module_dir)]}})
    with chimaera.Client(segment=d.segment) as c:
        yield c.create_pool("chi_pytest", "t")


def test_sync_md_calls_return_one_for_every_domain_query(client, pool):
    assert pool.md() == 1
    assert pool.md(depth=5, timeout=WAIT) == 1
    sub = chimaera.SUBDOMAIN_GLOBAL_CONTAINERS
    for dq in (chimaera.dq_direct_id(sub, 1), chimaera.dq_direct_hash(sub, 7),
               chimaera.dq_local_hash(3),
               chimaera.dq_local_id(chimaera.SUBDOMAIN_LOCAL_CONTAINERS, 0),
               chimaera.dq_dynamic(), chimaera.DomainQuery.direct_id(sub, 0)):
        assert pool.md(dq=dq, timeout=WAIT) == 1, dq
        assert pool.call("Md", dq=dq, timeout=WAIT).ret == 1, dq
    # A broadcast's replies are summed by the module: one per container.
    assert pool.md(dq=chimaera.dq_global_bcast(), timeout=WAIT) == 2
    with pytest.raises(TypeError):
        pool.md(dq=7)


def test_generic_call_is_built_from_the_module_descriptors(client, pool):
    mod = client.describe("small_message")
    assert set(mod.methods) == {"Md", "Io", "Served"}
    md = mod.methods["Md"]
    assert (md.id, md.task_size, md.periodic_ok) == (chimaera.SM_MD, 136, True)
    assert [(f.name, f.offset, f.size) for f in md.fields] == [("depth", 128, 4), ("ret", 132, 4)]
    r = pool.call("Md", depth=2, timeout=WAIT)
    assert (r.rc, r.ret, r.runs) == (0, 1, 1) and r.asdict() == {"ret": 1}
    assert pool.call(chimaera.SM_MD, {"depth": 1}, timeout=WAIT).ret == 1  # by id, fields mapping
    with pytest.raises(TypeError, match="no field 'deep'"):
        pool.call("Md", deep=1)
    with pytest.raises(TypeError, match="OUT only"):
        pool.call("Md", ret=3)
    with pytest.raises(OverflowError):
        pool.call("Md", depth=-1)
    with pytest.raises(ChimaeraError) as e:
        pool.call("Nope")
    assert e.value.code == -chimaera.ENOMETHOD and "Md" in e.value.message


def test_a_new_module_is_callable_with_no_binding_code(tpool):
    r = tpool.call("Mix", a8=200, b16=-300, counter=41, big=1 << 40, neg=-5, x=0.25, y=0.5,
                   flag=True, name="py", blob=b"\x01\x02\x03\x04\x05\x06\x07\x08", timeout=WAIT)
    assert r.counter == 42  # INOUT
    assert r.sum == 200 - 300 + (1 << 40) - 5 + 0.25 + 0.5
    assert (r.greeting, r.rev, r.not_flag, r.neg2) == ("hello py", bytes(range(8, 0, -1)), False, 5)
    assert tpool.call("Sleep", ms=1, timeout=WAIT).slept == 1
    with pytest.raises(ValueError):
        tpool.call("Mix", name="x" * 16)  # 16 bytes leave no room for the NUL
    with pytest.raises(ChimaeraError) as e:
        tpool.call("Fail", code=-errno.ENOSPC, timeout=WAIT)
    assert e.value.code == -errno.ENOSPC and e.value.call == "chi_pytest.Fail"


def test_async_calls_complete_as_futures(pool):
    futures = [pool.call_async("Md", depth=i % 3, dq=chimaera.dq_direct_hash(1, i))
               for i in range(200)]
    for f in futures:
        assert f.wait(timeout=WAIT)
        assert f.done()
        assert f.result(timeout=0).ret == 1
    with pool.call_async("Md") as f:
        assert f.result(timeout=WAIT).ret == 1
    assert f.result().ret == 1  # the result outlives the task
    assert pool.client._orphans == []
    f = pool.call_async("Md", depth=3)
    f.close()  # in flight or not: the client frees the task once it is done
    with pytest.raises(ChimaeraError, match="Future is closed"):
        f.wait(timeout=WAIT)
    deadline = time.monotonic() + WAIT
    while pool.client._orphans and time.monotonic() < deadline:
        assert pool.md(timeout=WAIT) == 1  # each call reaps completed orphans
    assert pool.client._orphans == []


def test_periodic_tasks_run_until_their_pool_is_destroyed(client):
    pool = client.create_pool("small_message", "py_periodic")
    f = pool.call_async("Md", period_ms=5)
    deadline = time.monotonic() + WAIT
    while f.runs < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert f.runs >= 3 and not f.done() and not f.wait(timeout=0.01)
    pool.destroy()
    assert f.wait(timeout=WAIT)
    with pytest.raises(ChimaeraError) as e:
        f.result(timeout=0)
    assert e.value.code == -chimaera.ESTOPPED
    with pytest.raises(ChimaeraError, match="periodic"):
        client.create_pool("small_message", "py_p2").call_async("Io", period_ms=5)


def test_buffers_are_the_shared_memory_itself(client, pool):
    n = 1 << 20
    with client.buffer(n) as b:
        first = ctypes.c_char.from_buffer(b.view)  # the view's first byte, where it really is
        assert ctypes.addressof(first) == b.address
        p = ctypes.c_void_p()
        client._lib.chi_shm_to_ptr(client._h, b.shm, n, ctypes.byref(p))
        assert p.value == b.address  # the runtime resolves b.shm to the same bytes
        del first
        holder = struct.iter_unpack("B", b.view)  # holds the view through the buffer protocol
        with pytest.raises(ChimaeraError) as e:
            b.close()
        assert e.value.code == -errno.EBUSY and not b.closed
        del holder
        b.view[:] = b"\x5a" * n
        assert pool.call("Io", data=b, io_flags=chimaera.SM_IO_WRITE, pattern=0x5A,
                         timeout=WAIT).ret == n  # size filled from the buffer
        b.view[n - 7] = 0  # one byte changed after the last call: the runtime sees it
        with pytest.raises(ChimaeraError) as e:
            pool.call("Io", data=b, io_flags=chimaera.SM_IO_WRITE, pattern=0x5A, timeout=WAIT)
        assert e.value.code == -errno.EIO
        r = pool.call("Io", data=b, io_flags=chimaera.SM_IO_READ, pattern=0xA5, timeout=WAIT)
        assert r.ret == n and b.view.tobytes() == b"\xa5" * n  # the runtime's writes, in place
        assert pool.call("Io", data=b, size=10, io_flags=chimaera.SM_IO_READ, pattern=1,
                         timeout=WAIT).ret == 10
        assert bytes(b.view[:12]) == b"\x01" * 10 + b"\xa5\xa5"
        with pytest.raises(ValueError):
            pool.call("Io", data=b, size=n + 1, io_flags=chimaera.SM_IO_READ)
    assert b.closed
    with pytest.raises(ValueError, match="closed"):
        pool.call("Io", data=b, io_flags=chimaera.SM_IO_READ)
    b2 = client.buffer(64)
    client.close()  # closes the client's buffers first
    assert b2.closed


def test_errors_raise_chimaera_error_with_code_and_message(client, pool):
    with pytest.raises(ChimaeraError) as e:
        client.pool("no_such_pool")
    err = e.value
    assert err.code == -chimaera.ENOPOOL and err.errno == chimaera.ENOPOOL
    assert "no_such_pool" in err.message and err.call == "chi_pool_info"
    assert err.name == chimaera.strerror(err.code) and err.name in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert (type(again), again.code, again.message) == (ChimaeraError, err.code, err.message)
    with pytest.raises(ChimaeraError) as e:
        client.register_module("no_such_module_x")
    assert e.value.code == -chimaera.ENOMODULE
    with pytest.raises(ChimaeraError) as e:
        chimaera.describe("no_such_module_x")
    assert e.value.code == -chimaera.ENOMODULE
    # A failed task: rc < 0 raises, sync and async; an async failure with no runtime message
    # does not pick up the stale text of the failure above.
    with client.buffer(16) as b:
        with pytest.raises(ChimaeraError) as e:
            pool.call("Io", data=b, io_flags=chimaera.SM_IO_WRITE, pattern=9, timeout=WAIT)
        assert e.value.code == -errno.EIO and e.value.call == "small_message.Io"
        f = pool.call_async("Io", data=b, io_flags=99)
        with pytest.raises(ChimaeraError) as e:
            f.result(timeout=WAIT)
        assert e.value.code == -errno.EINVAL and "no_such_module" not in str(e.value)


def test_a_closed_client_refuses_calls(daemon):
    c = chimaera.Client(segment=daemon.segment)
    p = c.create_pool("small_message", "py")
    c.close()
    c.close()
    with pytest.raises(ChimaeraError, match="closed") as e:
        p.md()
    assert e.value.code == -errno.EINVAL


def test_client_queries_the_runtime(daemon, client, pool, tmp_path):
    assert client.segment == daemon.segment
    conf = tmp_path / "client.yaml"
    conf.write_text(f"runtime:\n  name: {daemon.segment}\n")
    with chimaera.Client(config=conf, mode="attach") as by_config:
        assert by_config.segment == daemon.segment
    conf.write_text("runtime:\n  no_such_key: 1\n")
    with pytest.raises(ChimaeraError) as e:
        chimaera.Client(config=conf)
    assert e.value.code == -chimaera.ECONFIG and "no_such_key" in e.value.message
    with pytest.raises(ValueError):
        chimaera.Client(segment=daemon.segment, mode="remote")
    stats = client.stats()
    assert any(p["name"] == "py" and p["module"] == "small_message" for p in stats["pools"])
    client.flush()
    found = client.pool("py")
    assert (found.id, found.module) == (pool.id, "small_message")
    with client.create_pool("small_message", "py_tmp") as tmp:
        assert tmp.md(timeout=WAIT) == 1
    with pytest.raises(ChimaeraError) as e:
        client.pool("py_tmp")
    assert e.value.code == -chimaera.ENOPOOL


def test_no_daemon_raises_no_runtime_quickly():
    seg = unique_segment("pynone")
    start = time.monotonic()
    with pytest.raises(ChimaeraError) as e:
        chimaera.Client(segment=seg, mode="attach", connect_timeout_ms=100)
    assert time.monotonic() - start < 5
    assert e.value.code == -chimaera.ENORUNTIME and seg in e.value.message


def test_a_daemon_that_stops_fails_the_calls_of_its_clients(daemon, client, pool):
    assert pool.md(timeout=WAIT) == 1
    rc, out = daemon.stop()
    assert rc == 0, out
    with pytest.raises(ChimaeraError) as e:
        pool.md(timeout=WAIT)
    assert e.value.code in (-chimaera.ENORUNTIME, -chimaera.ESTOPPED)


def test_timeouts(tpool):
    start = time.monotonic()
    with pytest.raises(ChimaeraTimeoutError) as e:
        tpool.call("Sleep", ms=1500, timeout=0.05)
    assert isinstance(e.value, TimeoutError) and e.value.code == -errno.ETIMEDOUT
    assert time.monotonic() - start < 1.0  # returned at the timeout, not when the task ended
    assert len(tpool.client._orphans) == 1  # still in flight: freed once it completes
    f = tpool.call_async("Sleep", ms=100)
    assert not f.wait(timeout=0.01) and not f.done()
    with pytest.raises(ChimaeraTimeoutError):
        f.result(timeout=0.01)
    assert f.result(timeout=WAIT).slept == 100
    assert tpool.call("Sleep", ms=0, timeout=WAIT).slept == 0
    assert tpool.client._orphans == []  # the timed-out task was reaped
    with pytest.raises(ValueError):
        tpool.call("Sleep", timeout=-1)


def test_four_threads_share_one_client(pool):
    errors, counts = [], [0] * 4

    def worker(k):
        try:
            for i in range(1000):
                counts[k] += pool.md(dq=chimaera.dq_direct_hash(1, i * 4 + k), timeout=WAIT)
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == [] and counts == [1000] * 4


def _forked_child(client, segment, conn):
    out = {}
    try:
        client.pool("py")
    except ChimaeraError as e:
        out["inherited"] = (e.code, str(e))
    client.close()  # only forgets the parent's handle
    with chimaera.Client(segment=segment) as c:
        out["md"] = c.pool("py", module="small_message").md(timeout=WAIT)
    conn.send(out)


def test_fork_after_init_needs_a_new_client_in_the_child(daemon, client, pool):
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_forked_child, args=(client, daemon.segment, child))
    p.start()
    try:
        assert parent.poll(WAIT), "the forked child sent nothing"
        out = parent.recv()
    finally:
        p.join(WAIT)
        if p.is_alive():
            p.kill()
    code, text = out["inherited"]
    assert code == -errno.EINVAL and "new chimaera.Client in the child" in text
    assert out["md"] == 1 and p.exitcode == 0
    assert pool.md(timeout=WAIT) == 1  # the parent's client is untouched


def _spawned_worker(segment, n):
    with chimaera.Client(segment=segment) as c:
        p = c.pool("py", module="small_message")
        return sum(p.md(dq=chimaera.dq_direct_hash(1, i), timeout=WAIT) for i in range(n))


def test_multiprocessing_spawn_workers_make_their_own_clients(daemon, pool):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as mp:
        result = mp.starmap_async(_spawned_worker, [(daemon.segment, 300)] * 2)
        assert result.get(timeout=120) == [300, 300]


def test_abi_major_mismatch_is_refused_naming_both_versions():
    assert chimaera._lib.check_abi(chimaera.abi_pack(1, 9), "x") == (1, 9)
    with pytest.raises(ChimaeraError) as e:
        chimaera._lib.check_abi(chimaera.abi_pack(2, 3), "/opt/libchimaera.so.2")
    assert e.value.code == -chimaera.EABI
    assert "ABI 2.3" in e.value.message and "ABI 1.x" in e.value.message
    assert "/opt/libchimaera.so.2" in e.value.message
    assert chimaera.abi_version()[0] == chimaera.ABI_MAJOR


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_a_waiting_client_moves_off_a_pinned_workers_cpu_and_keeps_its_mask(daemon, client, pool):
    """A client that finds itself on a busy pinned worker's CPU moves to another CPU it may
    use, rather than sleeping there on every call; its affinity mask is left as it was. (The
    first call wakes the worker, which is asleep: that one sleeps at once.)"""
    rc, out = run([STAGE / "bin" / "chimaera", "status", "--segment", daemon.segment, "--json"])
    assert rc == 0, out
    pinned = {w["cpu"] for w in json.loads(out)["workers"] if w["cpu"] >= 0}
    allowed = os.sched_getaffinity(0)
    if not pinned or not (allowed - pinned):
        pytest.skip("no pinned worker, or no other CPU for the client")
    cpu = min(pinned & allowed)
    sched_getcpu = ctypes.CDLL(None, use_errno=True).sched_getcpu
    results = []

    def body():
        # Start on the worker's CPU, then allow every CPU again: the thread stays where it is
        # until something moves it (the kernel may, before the call: then try again). On a
        # loaded machine the kernel may also move it back after the client moved it, so up to
        # five attempts that started on the worker's CPU are made; one must end elsewhere.
        for _ in range(200):
            os.sched_setaffinity(0, {cpu})
            os.sched_setaffinity(0, allowed)
            r = {"before": sched_getcpu()}
            r["ret"] = [pool.md(timeout=WAIT) for _ in range(20)]
            r["after"] = sched_getcpu()
            r["mask"] = os.sched_getaffinity(0)
            if r["before"] != cpu:
                continue
            results.append(r)
            if r["after"] != cpu or len(results) == 5:
                break

    # Keep the worker awake ("busy") from another client on another CPU: on a loaded machine
    # an idle worker is often asleep at the call, and then the client rightly stays.
    stop = threading.Event()

    def keep_busy():
        os.sched_setaffinity(0, allowed - pinned)
        with chimaera.Client(segment=daemon.segment, mode="attach") as c2:
            p2 = c2.pool("py")
            while not stop.is_set():
                p2.md(timeout=WAIT)

    busy = threading.Thread(target=keep_busy)
    busy.start()
    t = threading.Thread(target=body)
    try:
        t.start()
        t.join(120)
    finally:
        stop.set()
        busy.join(60)
    assert not t.is_alive() and not busy.is_alive()
    if not results:
        pytest.skip("the kernel always moved the thread before the call")
    for r in results:
        assert r["ret"] == [1] * 20
        assert r["mask"] == allowed
    assert any(r["after"] != cpu for r in results), results
