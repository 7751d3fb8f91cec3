"""Create parameters by name and typed results, from the modules' own descriptors (ABI 1.7):
a bdev pool made with create_pool("bdev", ..., path=..., size=...) and driven with the Block
records its Allocate returns, a module made with the kit (C and Swift) whose kCreate params
are given by name and read back by a method, bad names and values refused before anything
reaches the runtime, and a task of method 0 still refused by the runtime (the create
descriptor is never dispatched). No module-specific code in the binding."""

import errno
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import CC, REPO, STAGE, require_staged, run
from test_compose import PARAMS_MODULE_C
from test_devkit import cmake, fill, need_cmake, tool

sys.path.insert(0, str(REPO / "bindings" / "python"))
os.environ["CHIMAERA_LIB"] = str(STAGE / "lib" / "libchimaera.so.1")
import chimaera  # noqa: E402
from chimaera import ChimaeraError  # noqa: E402

WAIT = 30  # seconds: the bound on every wait that should succeed
CONFIG = {"runtime": {"shm_size": "256M"}}
TEMPORARY = 0x2  # CHI_BDEV_CREATE_TEMPORARY: the device files go with the pool


@pytest.fixture
def client(daemons):
    require_staged()
    d = daemons.start(config=CONFIG)
    with chimaera.Client(segment=d.segment) as c:
        yield c


@pytest.fixture
def bdev_dir():
    d = Path(tempfile.mkdtemp(prefix="chi_pycreate_", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_bdev_describes_its_create_params_and_block_records():
    require_staged()
    mod = chimaera.describe("bdev")
    cp = mod.create_params
    assert cp is not None and cp.task_size == 256 + 16
    assert [(f.name, f.offset, f.size) for f in cp.fields] == [
        ("path", 0, 256), ("size", 256, 8), ("flags", 264, 4)]
    # The create descriptor is not a method: nothing calls it by name or by id 0.
    assert "Create" not in mod.methods and 0 not in mod.by_id
    blocks = mod.methods["Allocate"].by_name["blocks"]
    assert blocks.record is not None and blocks.type_name == "Block[64]"
    assert [(f.name, f.offset, f.size) for f in blocks.record.fields] == [
        ("offset", 0, 8), ("size", 8, 8), ("container", 16, 4)]
    # The bytes create_pool sends are the ones chi_bdev_params builds in C.
    want = b"ram://x".ljust(256, b"\0") + struct.pack("<QII", 1 << 20, TEMPORARY, 0)
    assert mod.encode_create({"path": "ram://x", "size": 1 << 20, "flags": TEMPORARY}) == want


@pytest.mark.parametrize("backend", ["ram", "fs"])
def test_bdev_pool_by_name_round_trips_blocks_as_objects(client, backend, bdev_dir):
    path = "ram://" if backend == "ram" else f"fs://{bdev_dir}/dev.bin"
    pool = client.create_pool("bdev", f"kw_{backend}", containers_per_node=2, path=path,
                              size=1 << 20, flags=TEMPORARY)
    dq0 = chimaera.dq_direct_id(chimaera.SUBDOMAIN_GLOBAL_CONTAINERS, 0)
    stats = pool.call("PollStats", dq=dq0, timeout=WAIT)
    assert stats.capacity == 1 << 20  # the size given by name reached Create
    if backend == "fs":
        assert (bdev_dir / "dev.bin.0").exists() and (bdev_dir / "dev.bin.1").exists()

    r = pool.call("Allocate", size=3 * 4096, dq=dq0, timeout=WAIT)
    assert r.rc == r.nblocks == len(r.blocks) == 2  # 8 KiB + 4 KiB, largest first
    big, small = r.blocks
    assert (type(big).__name__, big.size, small.size) == ("Record", 8192, 4096)
    assert big.container == small.container == 0 and big.offset != small.offset
    assert repr(big).startswith("Block(offset=")
    # bytes() still gives the raw field, as before the records were described.
    raw = bytes(r.blocks)
    assert len(raw) == 64 * 24 and struct.unpack_from("<QQI", raw) == (
        big.offset, big.size, big.container)

    with client.buffer(8192) as w, client.buffer(8192) as rd:
        w.view[:] = bytes(range(256)) * 32
        # A record given for `block` fills block_offset, block_size and block_container.
        assert pool.call("Write", data=w, block=big, dq=dq0, timeout=WAIT).ret == 8192
        assert pool.call("Read", data=rd, block=big, dq=dq0, timeout=WAIT).ret == 8192
        assert bytes(rd.view) == bytes(w.view)
        with pytest.raises(TypeError, match="given twice"):
            pool.call("Read", data=rd, block=big, block_size=1)
        with pytest.raises(TypeError, match="needs the fields where_offset"):
            pool.call("Allocate", where=big)  # Allocate has no where_* fields
    for b in r.blocks:
        pool.call("Free", block=b, dq=dq0, timeout=WAIT)
    assert pool.call("PollStats", dq=dq0, timeout=WAIT).free_bytes == 1 << 20
    pool.destroy()
    if backend == "fs":
        assert not list(bdev_dir.iterdir()), "TEMPORARY given by name: the files go"


def test_bad_create_params_are_refused_naming_the_known_ones(client):
    known = "path: str[256], size: u64, flags: u32"
    cases = [
        (dict(url="ram://", size=4096), TypeError, "bdev has no create parameter 'url'"),
        (dict(path="ram://", size="1G"), TypeError, "size takes an integer (u64), not str"),
        (dict(path=7, size=4096), TypeError, "path takes a str, not int"),
        (dict(path="ram://", size=-1), OverflowError, "size=-1 does not fit U64"),
        (dict(path="x" * 256, size=4096), ValueError, "path: 256 bytes need 255 at most"),
        (dict(path="ram://", size=4096, flags=1 << 32), OverflowError, "flags="),
    ]
    for kw, exc, text in cases:
        with pytest.raises(exc) as e:
            client.create_pool("bdev", "bad", **kw)
        assert text in str(e.value) and known in str(e.value), (kw, str(e.value))
    with pytest.raises(TypeError, match="not both"):
        client.create_pool("bdev", "bad", params=b"\0" * 8, path="ram://")
    # small_message lists no create descriptor: names cannot be laid out, bytes still go.
    with pytest.raises(TypeError, match="small_message describes no create parameters"):
        client.create_pool("small_message", "bad", depth=1)
    # None of those reached the runtime: no pool "bad" was made.
    with pytest.raises(ChimaeraError) as e:
        client.pool("bad")
    assert e.value.code == -chimaera.ENOPOOL
    # Raw params and a mapping (for names create_pool takes itself) still work.
    raw = b"ram://".ljust(256, b"\0") + struct.pack("<QII", 1 << 16, 0, 0)
    p1 = client.create_pool("bdev", "raw", params=raw)
    assert p1.call("PollStats", timeout=WAIT).capacity == 1 << 16
    p2 = client.create_pool("bdev", "mapped", params={"path": "ram://", "size": 1 << 17})
    assert p2.call("PollStats", timeout=WAIT).capacity == 1 << 17


def test_a_task_of_method_zero_is_still_refused(client):
    """bdev lists a descriptor with id 0 (its create params): the runtime must not dispatch
    it, at any task size."""
    pool = client.create_pool("bdev", "m0", path="ram://", size=1 << 16)
    lib = client._lib
    for size in (128, 272):
        addr = client._task_new(pool.id, 0, size, None)
        try:
            lib.chi_task_submit(client._h, addr)
            lib.chi_task_wait(client._h, addr, WAIT * 10**9)
            rc = chimaera.ChiTask.from_address(addr).rc
        except ChimaeraError as e:  # refused before it ran, or its rc raised
            rc = e.code
        finally:
            client._drop_task(addr)
        assert rc == -chimaera.ENOMETHOD, (size, rc)
    assert pool.call("PollStats", timeout=WAIT).capacity == 1 << 16  # still serving


# ---- a kit-made module in C and in Swift ----------------------------------------------------

KIT_YAML = """kCreate:
  id: 0
  params:
    level: in i32
    tag: in str[16]
    key: in bytes[8]
    on: in bool
    scale: in f64
kEcho:
  id: 10
  doc: Returns the pool's create parameters.
  params:
    level: out i32
    tag: out str[16]
    key: out bytes[8]
    on: out bool
    scale: out f64
"""

C_CODE = {
    "Create": """struct cmod_state {
    cmod_create_params_t p;
};

static int Create(chi_container_t *c, const cmod_create_params_t *params, cmod_state_t **state) {
    cmod_state_t *s = calloc(1, sizeof(*s));
    if (s == NULL) return -ENOMEM;
    s->p = *params;
    int rc = chi_container_add_lanes(c, 0, 1, CHI_PRIO_LOW_LATENCY);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *state = s;
    return 0;
}""",
    "Echo": """static int Echo(cmod_state_t *state, cmod_echo_task_t *task, chi_rctx_t *rctx) {
    (void)rctx;
    task->level = state->p.level;
    memcpy(task->tag, state->p.tag, sizeof task->tag);
    memcpy(task->key, state->p.key, sizeof task->key);
    task->on = state->p.on;
    task->scale = state->p.scale;
    return 0;
}""",
}

SWIFT_CODE = {
    "Create": """final class State {
    let p: smod_create_params_t
    init(_ p: smod_create_params_t) { self.p = p }
}

func create(_ c: OpaquePointer, _ params: smod_create_params_t) throws(ChiFailure) -> State {
    let rc = chi_container_add_lanes(c, 0, 1, UInt32(CHI_PRIO_LOW_LATENCY))
    if rc < 0 { throw ChiFailure(rc) }
    return State(params)
}""",
    "Echo": """func echo(_ state: State, _ task: UnsafeMutablePointer<smod_echo_task_t>,
          _ rctx: OpaquePointer) -> Int32 {
    task.pointee.level = state.p.level
    task.pointee.tag = state.p.tag
    task.pointee.key = state.p.key
    task.pointee.on = state.p.on
    task.pointee.scale = state.p.scale
    return 0
}""",
}


@pytest.fixture(scope="module")
def kit_modules(tmp_path_factory):
    """kinds_cmod (C) and kinds_smod (Swift) built from KIT_YAML; returns their directory."""
    need_cmake()
    require_staged()
    tmp = tmp_path_factory.mktemp("kitcreate")
    tool("chi_make_repo", "repo", "kinds", cwd=tmp)
    tool("chi_make_mod", "repo/cmod", cwd=tmp)
    tool("chi_make_mod", "repo/smod", "--lang", "swift", cwd=tmp)
    repo = tmp / "repo"
    for mod in ("cmod", "smod"):
        (repo / f"{mod}/include/{mod}/{mod}_methods.yaml").write_text(KIT_YAML)
    tool("chi_refresh_repo", "repo", cwd=tmp)
    runtime_c = repo / "cmod/src/cmod_runtime.c"
    for region, code in C_CODE.items():
        fill(runtime_c, region, code)
    runtime_c.write_text(runtime_c.read_text().replace(
        "#include <stdlib.h>", "#include <stdlib.h>\n#include <string.h>", 1))
    for region, code in SWIFT_CODE.items():
        fill(repo / "smod/Sources/smod/smod_runtime.swift", region, code)
    cmake(repo, tmp / "build", f"-DCMAKE_PREFIX_PATH={STAGE}",
          "-DCMAKE_C_FLAGS=-Wall -Wextra -Werror -pedantic")
    out = tmp / "build/chimaera_modules"
    for mod in ("cmod", "smod"):
        assert (out / f"libkinds_{mod}.so").exists()
    return out


@pytest.mark.parametrize("mod", ["cmod", "smod"])
def test_kit_module_create_params_by_name(mod, kit_modules, daemons, monkeypatch):
    monkeypatch.setenv("CHI_MODULE_PATH", f"{kit_modules}:{STAGE / 'lib' / 'chimaera'}")
    name = f"kinds_{mod}"
    cp = chimaera.describe(name).create_params
    assert cp is not None, f"{name} lists no create descriptor"
    assert [(f.name, f.type_name) for f in cp.fields] == [
        ("level", "i32"), ("tag", "str[16]"), ("key", "bytes[8]"), ("on", "bool"),
        ("scale", "f64")]
    # C layout: i32 at 0, char[16] at 4, bytes at 20, bool at 28, double at 32; 40 bytes.
    assert [f.offset for f in cp.fields] == [0, 4, 20, 28, 32] and cp.task_size == 40
    d = daemons.start(config={"runtime": {"shm_size": "256M",
                                          "module_path": [str(kit_modules)]}})
    with chimaera.Client(segment=d.segment) as c:
        pool = c.create_pool(name, "k", containers_per_node=2, level=-7, tag="hello",
                             key=b"\x01\x02\x03\x04\x05\x06\x07\x08", on=True, scale=2.5)
        for cid in (0, 1):
            r = pool.call("Echo", dq=chimaera.dq_direct_id(1, cid), timeout=WAIT)
            assert (r.level, r.tag, r.key, r.on, r.scale) == (
                -7, "hello", bytes(range(1, 9)), True, 2.5)
        with pytest.raises(TypeError) as e:
            c.create_pool(name, "k2", lvl=1)
        assert f"{name} has no create parameter 'lvl'" in str(e.value)
        assert "level: i32, tag: str[16], key: bytes[8], on: bool, scale: f64" in str(e.value)
        with pytest.raises(TypeError, match="on takes a bool, not str"):
            c.create_pool(name, "k2", on="yes")
        # Parameters not given are zero.
        r = c.create_pool(name, "k3", tag="t").call("Echo", timeout=WAIT)
        assert (r.level, r.tag, r.key, r.on, r.scale) == (0, "t", bytes(8), False, 0.0)


# ---- chimaera compose lays params out from the same descriptor -------------------------------

DESCRIBED_MODULE_C = PARAMS_MODULE_C.replace("#include <errno.h>", "#include <errno.h>\n#include <stddef.h>").replace(
    'static const chi_method_desc_t methods[] = {{10, sizeof(chi_task_t), 0, 0, "Nop", NULL, NULL}};',
    """#define P(m, ft) {#m, (uint32_t)offsetof(params_t, m), (uint32_t)sizeof(((params_t *)0)->m), ft, CHI_DIR_IN, -1, 0}
static const chi_field_desc_t create_fields[] = {
    P(tag, CHI_FT_U8), P(bias, CHI_FT_I64), P(level, CHI_FT_U32), P(out, CHI_FT_STR),
    P(ratio, CHI_FT_F64), P(flag, CHI_FT_BOOL)};
static const chi_method_desc_t methods[] = {
    {0, sizeof(params_t), CHI_MF_CREATE_PARAMS, 6, "Create", create_fields, NULL},
    {10, sizeof(chi_task_t), 0, 0, "Nop", NULL, NULL}};""").replace(".nmethods = 1,", ".nmethods = 2,")


def test_compose_and_python_lay_params_out_from_the_module_descriptor(daemons, tmp_path,
                                                                      monkeypatch):
    """A module with a create descriptor and no methods file: `chimaera compose` and Python
    both build its params by name, and Create sees the same values."""
    require_staged()
    assert DESCRIBED_MODULE_C.count("CHI_MF_CREATE_PARAMS") == 1 and ".nmethods = 2," in DESCRIBED_MODULE_C
    mods = tmp_path / "mods"
    mods.mkdir()
    (tmp_path / "described.c").write_text(DESCRIBED_MODULE_C.replace('"param_probe"', '"described"'))
    rc, out = run([CC, "-std=c11", "-shared", "-fPIC", "-Wall", "-Werror", f"-I{STAGE}/include",
                   tmp_path / "described.c", "-o", mods / "libdescribed.so", f"-L{STAGE}/lib",
                   "-lchimaera"], timeout=60)
    assert rc == 0, out
    d = daemons.start(config={"runtime": {"shm_size": "256M", "module_path": [str(mods)]}})
    env = dict(d.env, CHI_MODULE_PATH=f"{mods}:{STAGE / 'lib' / 'chimaera'}")
    seen = tmp_path / "seen.txt"
    f = tmp_path / "deploy.yaml"
    f.write_text(f"pools:\n  - name: by_desc\n    module: described\n    params: "
                 f"{{tag: 200, bias: -42, level: 7, out: \"{seen}\", ratio: 0.25, flag: true}}\n")
    rc, out = run([STAGE / "bin" / "chimaera", "compose", f, "--segment", d.segment], env=env,
                  timeout=30)
    assert rc == 0, out
    want = "size=240 sizeof=240 tag=200 bias=-42 level=7 ratio=0.250 flag=1\n"
    assert seen.read_text() == want
    f.write_text("pools:\n  - name: by_desc2\n    module: described\n    params: {levle: 1}\n")
    rc, out = run([STAGE / "bin" / "chimaera", "compose", f, "--segment", d.segment], env=env,
                  timeout=30)
    assert rc == 2 and 'params.levle: the create descriptor of module "described" declares no ' \
        "such parameter (it declares: tag, bias, level, out, ratio, flag)" in out, out

    seen.unlink()
    monkeypatch.setenv("CHI_MODULE_PATH", env["CHI_MODULE_PATH"])
    with chimaera.Client(segment=d.segment) as c:
        c.create_pool("described", "by_py", tag=200, bias=-42, level=7, out=str(seen),
                      ratio=0.25, flag=True)
    assert seen.read_text() == want


BAD_CREATE_C = r"""
#include <stddef.h>
#include "chimaera/module.h"
typedef struct { chi_shm_ptr_t where; uint64_t n; } params_t;
static const chi_field_desc_t create_fields[] = {
    {"where", offsetof(params_t, where), sizeof(chi_shm_ptr_t), CHI_FT_SHM_PTR, CHI_DIR_IN, -1, 0}};
static const chi_method_desc_t methods[] = {
    {0, sizeof(params_t), CHI_MF_CREATE_PARAMS, 1, "Create", create_fields, NULL},
    {10, sizeof(chi_task_t), 0, 0, "Nop", NULL, NULL}};
static int create(chi_container_t *c, const void *p, uint32_t n, void **s) {
    (void)p; (void)n; *s = NULL; return chi_container_add_lanes(c, 0, 1, CHI_PRIO_LOW_LATENCY);
}
static int run(void *s, chi_task_t *t, chi_rctx_t *r) { (void)s; (void)t; (void)r; return 0; }
static const chi_module_vtable_t vt = {
    .size = sizeof vt, .abi_major = CHI_ABI_MAJOR, .abi_minor = CHI_ABI_MINOR,
    .name = "bad_create", .version = 1, .nmethods = 2, .methods = methods,
    .create = create, .run = run};
CHI_MODULE_EXPORT(&vt)
"""


def test_a_module_with_a_false_create_descriptor_is_refused(daemons, tmp_path, monkeypatch):
    """A pointer among the create params means nothing in another process: the runtime (and
    chi_module_describe, which loads through the same checks) refuse the module by name."""
    require_staged()
    mods = tmp_path / "mods"
    mods.mkdir()
    (tmp_path / "bad.c").write_text(BAD_CREATE_C)
    rc, out = run([CC, "-std=c11", "-shared", "-fPIC", "-Wall", "-Werror", f"-I{STAGE}/include",
                   tmp_path / "bad.c", "-o", mods / "libbad_create.so", f"-L{STAGE}/lib",
                   "-lchimaera"], timeout=60)
    assert rc == 0, out
    d = daemons.start(config={"runtime": {"shm_size": "256M", "module_path": [str(mods)]}})
    with chimaera.Client(segment=d.segment) as c:
        with pytest.raises(ChimaeraError) as e:
            c.register_module("bad_create")
        assert e.value.code == -chimaera.EBADTASK
        assert "create parameters: field 0 has type 15" in e.value.message, e.value.message
        assert c.create_pool("small_message", "alive").md(timeout=WAIT) == 1  # still serving
    monkeypatch.setenv("CHI_MODULE_PATH", str(mods))
    with pytest.raises(ChimaeraError) as e:
        chimaera.describe("bad_create")
    assert e.value.code == -chimaera.EBADTASK
