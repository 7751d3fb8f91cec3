"""A kit-made zlib module with the seed's bulk shape, called by name from Python across two nodes
(issues 13 and 17). Compress and Decompress take their input as `in bulk(size) expose`
(DT_EXPOSE: the remote side reads it, so its bytes must be sent) and their output as
`out bulk(out_cap) write` (DT_WRITE on the way out: written back to the origin). The modules
(C, and Swift when swift is installed) are made from scratch with chi_make_repo, chi_make_mod
and chi_refresh_repo, built with CMake against the staged prefix, and driven only through
`pool.call("Decompress", ...)` on the descriptors. From a client on each of two nodes, the
container the other node holds (remote) or its own node's (local) decompresses zlib data made
by Python's zlib and compresses data Python then inflates, for 1 KiB, 1 MiB and 8 MiB of real
files: every byte of the output buffer (poisoned before the call), out_size and the unchanged
exposed input are checked. The node that holds the container must have run each call: its
`status --json` method counts, and the container's own counter with its daemon's pid, say so. The test
found two bugs, both fixed with it: the binding refused a Buffer for an `out bulk` field, and
a remote task's DT_WRITE output never came back to the origin (the reply carried DT_EXPOSE
bulk fields only)."""

import json
import os
import shutil
import sys
import zlib
from pathlib import Path

import pytest

from conftest import REPO, STAGE, require_staged

sys.path.insert(0, str(REPO / "bindings" / "python"))
os.environ["CHIMAERA_LIB"] = str(STAGE / "lib" / "libchimaera.so.1")
import chimaera  # noqa: E402

GLOBAL = chimaera.SUBDOMAIN_GLOBAL_CONTAINERS
WAIT = 60  # seconds: the bound on every call that should succeed
SIZES = (1 << 10, 1 << 20, 8 << 20)
POISON = 0xA5  # what an output buffer holds before a call: a method that writes nothing fails

# ---- the module: the same YAML for the C and the Swift one ------------------------------------

METHODS = """kCompress:
  id: 10
  style: plain
  doc: zlib-compresses size bytes at data into out; out_size is the compressed size.
  params:
    data: in bulk(size) expose
    size: in u64
    level: in i32
    out: out bulk(out_cap) write
    out_cap: in u64
    out_size: out u64
kDecompress:
  id: 11
  style: plain
  doc: Inflates size bytes of zlib data at data into out; out_size is the inflated size.
  params:
    data: in bulk(size) expose
    size: in u64
    out: out bulk(out_cap) write
    out_cap: in u64
    out_size: out u64
kServed:
  id: 12
  style: plain
  doc: How many Compress and Decompress calls this container ran, and its daemon's pid.
  params:
    compressed: out u64
    decompressed: out u64
    pid: out u64
"""

C_STATE = """struct zc_state {
    uint32_t id; /* the container's id in its pool */
    _Atomic uint64_t compressed, decompressed;
};"""

C_METHODS = {
    "Compress": """    if (out == NULL || (data == NULL && size != 0)) return -EINVAL;
    if ((uLong)size != size || (uLongf)out_cap != out_cap) return -EFBIG;
    uLongf n = (uLongf)out_cap;
    int z = compress2(out, &n, data != NULL ? data : (const void *)"", (uLong)size, level);
    if (z != Z_OK) return z == Z_BUF_ERROR ? -ENOSPC : -EINVAL;
    *out_size = n;
    zc_state_t *s = chi_rctx_state(rctx);
    atomic_fetch_add(&s->compressed, 1);
    return 0;""",
    "Decompress": """    if (data == NULL || out == NULL) return -EINVAL;
    if ((uLong)size != size || (uLongf)out_cap != out_cap) return -EFBIG;
    uLongf n = (uLongf)out_cap;
    int z = uncompress(out, &n, data, (uLong)size);
    if (z != Z_OK) return z == Z_BUF_ERROR ? -ENOSPC : z == Z_DATA_ERROR ? -EBADMSG : -EINVAL;
    *out_size = n;
    zc_state_t *s = chi_rctx_state(rctx);
    atomic_fetch_add(&s->decompressed, 1);
    return 0;""",
    "Served": """    zc_state_t *s = chi_rctx_state(rctx);
    *compressed = atomic_load(&s->compressed);
    *decompressed = atomic_load(&s->decompressed);
    *pid = (uint64_t)getpid();
    return 0;""",
}

SWIFT_STATE = """final class State {
    /// The container's id in its pool.
    let id: UInt32
    // Plain counters: the container has one lane, so its methods run one at a time.
    var compressed: UInt64 = 0
    var decompressed: UInt64 = 0

    init(id: UInt32) { self.id = id }
}

/// The container's state, for the plain methods (chi_rctx_state holds the retained State).
func state(_ rctx: OpaquePointer) -> State {
    Unmanaged<State>.fromOpaque(chi_rctx_state(rctx)!).takeUnretainedValue()
}"""

SWIFT_METHODS = {
    "compress": """    guard let out, data != nil || size == 0 else { return -EINVAL }
    var n = uLongf(out_cap)
    let src = data ?? UnsafeRawPointer(out)
    let z = compress2(out.assumingMemoryBound(to: Bytef.self), &n,
                      src.assumingMemoryBound(to: Bytef.self), uLong(size), level)
    guard z == Z_OK else { return z == Z_BUF_ERROR ? -ENOSPC : -EINVAL }
    out_size.pointee = UInt64(n)
    state(rctx).compressed += 1
    return 0""",
    "decompress": """    guard let data, let out else { return -EINVAL }
    var n = uLongf(out_cap)
    let z = uncompress(out.assumingMemoryBound(to: Bytef.self), &n,
                       data.assumingMemoryBound(to: Bytef.self), uLong(size))
    guard z == Z_OK else {
        return z == Z_BUF_ERROR ? -ENOSPC : z == Z_DATA_ERROR ? -EBADMSG : -EINVAL
    }
    out_size.pointee = UInt64(n)
    state(rctx).decompressed += 1
    return 0""",
    "served": """    let s = state(rctx)
    compressed.pointee = s.compressed
    decompressed.pointee = s.decompressed
    pid.pointee = UInt64(getpid())
    return 0""",
}


def fill_body(path, region, body):
    """Replaces the body of the function in the CHI_BEGIN(region) ... CHI_END(region) region of
    path: the lines after the first one that ends with `{`, up to the region's last `}`."""
    lines = path.read_text().split("\n")
    begin = next(i for i, l in enumerate(lines) if f"CHI_BEGIN({region})" in l)
    end = next(i for i, l in enumerate(lines) if f"CHI_END({region})" in l)
    start = next(i for i in range(begin, end) if lines[i].endswith("{"))
    close = max(i for i in range(start, end) if lines[i] == "}")
    path.write_text("\n".join(lines[:start + 1] + body.split("\n") + lines[close:]))


def replace_once(path, old, new):
    text = path.read_text()
    assert text.count(old) == 1, f"{path} does not hold exactly one:\n{old}\n---\n{text}"
    path.write_text(text.replace(old, new))


def make_modules(root, swift):
    """A repo `dz` with the C module zc and, if swift, the Swift module zs, both declaring
    METHODS, filled in and built with CMake against the staged prefix. Returns (the directory
    of the built .so files, the modules' names)."""
    from test_devkit import cmake, need_cmake, tool
    need_cmake()
    require_staged()
    tool("chi_make_repo", "repo", "dz", cwd=root)
    mods = ["zc"] + (["zs"] if swift else [])
    tool("chi_make_mod", "repo/zc", cwd=root)
    if swift:
        tool("chi_make_mod", "repo/zs", "--lang", "swift", cwd=root)
    repo = root / "repo"
    for m in mods:
        y = repo / m / "include" / m / f"{m}_methods.yaml"
        y.write_text(y.read_text() + METHODS)
    tool("chi_refresh_repo", "repo", cwd=root)

    c = repo / "zc/src/zc_runtime.c"
    replace_once(c, "#include <chimaera/module.h>\n",
                 "#include <stdatomic.h>\n#include <unistd.h>\n\n#include <chimaera/module.h>\n"
                 "#include <zlib.h>\n")
    replace_once(c, "struct zc_state {\n    uint32_t id; /* the container's id in its pool */\n};",
                 C_STATE)
    for region, body in C_METHODS.items():
        fill_body(c, region, body)
    # The module's CMakeLists.txt is the user's (the kit never edits it): zlib is added here.
    replace_once(repo / "zc/CMakeLists.txt", "add_chimaera_module(zc\n  SOURCES src/zc_runtime.c)",
                 "find_package(ZLIB REQUIRED)\nadd_chimaera_module(zc\n  SOURCES src/zc_runtime.c\n"
                 "  LINK_LIBRARIES ZLIB::ZLIB)")
    if swift:
        s = repo / "zs/Sources/zs/zs_runtime.swift"
        text = s.read_text()
        i, j = text.index("final class State {"), text.index("/// Builds one container's state")
        s.write_text(text[:i] + SWIFT_STATE + "\n\n" + text[j:])
        for region, body in SWIFT_METHODS.items():
            fill_body(s, region.capitalize(), body)
        # zlib for the Swift code: its C module imports and links it.
        cz = repo / "zs/Sources/CZs"
        replace_once(cz / "CZs.h", "#include <chimaera/module.h>\n",
                     "#include <chimaera/module.h>\n#include <zlib.h>\n")
        replace_once(cz / "module.modulemap", '    link "chimaera"\n',
                     '    link "chimaera"\n    link "z"\n')
    # What the test wrote is the user's: a second refresh leaves it alone.
    out = tool("chi_refresh_repo", "repo", cwd=root)
    assert "up to date" in out, out
    cmake(repo, root / "build", f"-DCMAKE_PREFIX_PATH={STAGE}",
          "-DCMAKE_C_FLAGS=-Wall -Wextra -Werror -pedantic", timeout=1200)
    out = root / "build" / "chimaera_modules"
    for m in mods:
        assert (out / f"libdz_{m}.so").exists(), sorted(p.name for p in out.iterdir())
    return out, [f"dz_{m}" for m in mods]


# ---- data and checks -------------------------------------------------------------------------


def real_bytes(n):
    """n bytes of the files under /usr/share, in a fixed order: real, mostly compressible data."""
    chunks, size = [], 0
    for root, dirs, files in os.walk("/usr/share"):
        dirs.sort()
        for f in sorted(files):
            p = Path(root) / f
            try:
                if p.is_symlink() or not p.is_file():
                    continue
                chunk = p.read_bytes()[: n - size]
            except OSError:
                continue
            chunks.append(chunk)
            size += len(chunk)
            if size >= n:
                return b"".join(chunks)
    assert size > 0, "no readable files under /usr/share"
    blob = b"".join(chunks)
    return (blob * (n // len(blob) + 1))[:n]


def same_bytes(got, want, what):
    """Asserts got == want, naming the first differing offset and how many bytes differ."""
    if got == want:
        return
    if len(got) != len(want):
        pytest.fail(f"{what}: {len(got)} bytes, not {len(want)}")
    bad = [i for i in range(len(want)) if got[i] != want[i]]
    i = bad[0]
    pytest.fail(f"{what}: {len(bad)} of {len(want)} bytes differ, the first at offset {i} "
                f"(got {got[i:i + 16].hex()}, want {want[i:i + 16].hex()})")


class NotWrittenBack(AssertionError):
    """Calls that succeeded (rc 0, the right out_size, the input intact) left their output
    buffers exactly as they were before: nothing the method wrote reached the origin."""


def written(out, what, unwritten):
    """Whether out (an output buffer's bytes after a call) holds anything but the POISON it
    held before. If not, notes `what` in unwritten: the test reports every such call at its
    end, after checking what else it can."""
    if out != bytes([POISON]) * len(out):
        return True
    unwritten.append(what)
    return False


def placement(node, pool_name):
    """{container: node} of pool_name, as node's `chimaera status --json` reports it."""
    return {x["container"]: x["node"] for x in pool_status(node, pool_name)["placement"]}


def pool_status(node, pool_name):
    rc, out = node.status("--json")
    assert rc == 0, out
    return next(p for p in json.loads(out)["pools"] if p["name"] == pool_name)


def decompress(client, pool, dq, blob, packed, what, unwritten):
    """Decompress of packed (zlib data of blob) on container dq into an out buffer of exactly
    len(blob) bytes, poisoned first: every byte of it must be blob's, out_size len(blob), and
    the exposed input must come back as it went."""
    n = len(blob)
    with client.buffer(len(packed)) as zin, client.buffer(n) as out:
        zin.view[:] = packed
        out.view[:] = bytes([POISON]) * n
        r = pool.call("Decompress", data=zin, size=len(packed), out=out, out_cap=n, dq=dq,
                      timeout=WAIT)
        assert r.rc == 0, f"{what}: Decompress rc {r.rc}"
        assert r.out_size == n, f"{what}: Decompress out_size {r.out_size}, not {n}"
        same_bytes(bytes(zin.view), packed, f"{what}: the exposed Decompress input")
        got = bytes(out.view)
        if written(got, f"{what}: Decompress", unwritten):
            same_bytes(got, blob, f"{what}: the Decompress output")


def compress(client, pool, dq, blob, what, unwritten):
    """Compress of blob on container dq: what comes back in out[:out_size] must inflate (by
    Python's zlib) to blob, and the exposed input must come back as it went."""
    n = len(blob)
    cap = n + (n >> 12) + (n >> 14) + (n >> 25) + 13  # zlib's compressBound
    with client.buffer(n) as src, client.buffer(cap) as out:
        src.view[:] = blob
        out.view[:] = bytes([POISON]) * cap
        r = pool.call("Compress", data=src, size=n, level=6, out=out, out_cap=cap, dq=dq,
                      timeout=WAIT)
        assert r.rc == 0, f"{what}: Compress rc {r.rc}"
        assert 0 < r.out_size < n, f"{what}: Compress out_size {r.out_size} for {n} bytes"
        same_bytes(bytes(src.view), blob, f"{what}: the exposed Compress input")
        got = bytes(out.view[:r.out_size])
        if written(got, f"{what}: Compress", unwritten):
            try:
                back = zlib.decompress(got)
            except zlib.error as e:
                pytest.fail(f"{what}: the Compress output ({r.out_size} bytes) is not zlib "
                            f"data: {e}")
            same_bytes(back, blob, f"{what}: the Compress output, inflated")


# ---- the tests -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zmods(tmp_path_factory):
    """The modules, built once for this file: (directory of the .so files, module names)."""
    return make_modules(tmp_path_factory.mktemp("dz"), swift=shutil.which("swift") is not None)


@pytest.fixture(scope="module")
def blobs():
    return {n: real_bytes(n) for n in SIZES}


def test_an_out_bulk_buffer_is_given_by_name(daemons, zmods, monkeypatch):
    mod_dir, _ = zmods
    monkeypatch.setenv("CHI_MODULE_PATH", f"{mod_dir}:{STAGE / 'lib' / 'chimaera'}")
    d = daemons.start(config={"runtime": {"shm_size": "64M", "module_path": [str(mod_dir)]}})
    blob = real_bytes(1 << 10)
    packed = zlib.compress(blob)
    with chimaera.Client(segment=d.segment, mode="attach") as c:
        pool = c.create_pool("dz_zc", "dz1")
        with c.buffer(len(packed)) as zin, c.buffer(len(blob)) as out:
            zin.view[:] = packed
            r = pool.call("Decompress", data=zin, size=len(packed), out=out, out_cap=len(blob),
                          timeout=WAIT)
            assert r.out_size == len(blob) and bytes(out.view) == blob


@pytest.mark.parametrize("where", ["local", "remote"])
@pytest.mark.parametrize("module", ["dz_zc", "dz_zs"])
def test_decompress_with_the_seeds_bulk_shape_by_name(daemons, zmods, blobs, module, where,
                                                       monkeypatch):
    """From a client on each of two nodes, Compress and Decompress by name on the container
    the other node holds (remote) or the one its own node holds (local), 1 KiB to 8 MiB."""
    from test_cluster import Cluster
    mod_dir, built = zmods
    if module not in built:
        pytest.skip("swift is not installed")
    # The binding reads the module's descriptors from the same build the daemons load.
    monkeypatch.setenv("CHI_MODULE_PATH", f"{mod_dir}:{STAGE / 'lib' / 'chimaera'}")
    cl = Cluster(daemons, 2)
    for d in cl.nodes:
        text = d.config.read_text()
        d.config.write_text(text.replace("runtime:\n", f"runtime:\n  module_path: [{mod_dir}]\n",
                                         1))
    cl.start()
    packed = {n: zlib.compress(b, 6) for n, b in blobs.items()}
    for n in SIZES:  # real data, and it does shrink: the bytes are not a trivial pattern
        assert len(packed[n]) < 0.9 * n and len(set(blobs[n])) > 16, (n, len(packed[n]))
    clients = [chimaera.Client(segment=d.segment, mode="attach") for d in cl.nodes]
    unwritten = []
    try:
        pools = [clients[0].create_pool(module, "dz", containers_per_node=1), clients[1].pool("dz")]
        held = placement(cl.node(1), "dz")
        assert sorted(held.values()) == [1, 2], held
        assert placement(cl.node(2), "dz") == held
        calls = {k: 0 for k in held}
        for i, (c, pool) in enumerate(zip(clients, pools), 1):
            k = next(k for k, node in held.items() if (node == i) == (where == "local"))
            dq = chimaera.dq_direct_id(GLOBAL, k)
            for n in SIZES:
                what = f"{module}: client on node {i}, container {k} on node {held[k]}, {n} bytes"
                decompress(c, pool, dq, blobs[n], packed[n], what, unwritten)
                compress(c, pool, dq, blobs[n], what, unwritten)
                calls[k] += 1
        # Each node ran the calls of the container it holds, and only those: its runtime
        # counted them, and so did the container's state, in that node's daemon.
        for k, node in held.items():
            stats = {m["method"]: m for m in pool_status(cl.node(node), "dz")["methods"]}
            for method in ("Compress", "Decompress"):
                assert (stats[method]["completed"], stats[method]["errors"]) == (calls[k], 0), \
                    (node, method, stats[method], calls)
            for pool in pools:
                r = pool.call("Served", dq=chimaera.dq_direct_id(GLOBAL, k), timeout=WAIT)
                assert r.pid == cl.node(node).pid, (k, node, r, [d.pid for d in cl.nodes])
                assert (r.compressed, r.decompressed) == (calls[k], calls[k]), (k, r, calls)
    finally:
        for c in clients:
            c.close()
    if unwritten:
        raise NotWrittenBack(f"{len(unwritten)} calls succeeded but left their output buffer "
                             "untouched:\n" + "\n".join(unwritten))
