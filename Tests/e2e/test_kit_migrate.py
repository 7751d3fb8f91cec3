"""Modules made by the kit with a declared state (`state:` in the methods YAML) and the kMigrate
and kUpgrade hooks, in C and in Swift, with no hand-written serialisation: a container moved
between two nodes under load from clients on both keeps its counter exactly; version 1 upgraded
to version 2 (a field added, one removed, one retyped) by the generated Upgrade carries the
fields both versions share and zeroes the others; hostile records are refused with -EPROTO, by
the generated C reader (a harness feeds it records) and on a real migration from a node whose
build writes bad ones, to a C and to a Swift destination; refresh is stable and removing
kMigrate removes its generated parts but keeps edited code, with a warning."""

import os
import re
import sys
import threading
import time

import pytest

from conftest import CC, REPO, STAGE, require_staged, run, unique_segment

sys.path.insert(0, str(REPO / "bindings" / "python"))
os.environ["CHIMAERA_LIB"] = str(STAGE / "lib" / "libchimaera.so.1")
import chimaera  # noqa: E402
from chimaera import ChimaeraError  # noqa: E402

GLOBAL = chimaera.SUBDOMAIN_GLOBAL_CONTAINERS
EPROTO = 71

# ---- what the tests add to the modules ---------------------------------------------------------

STATE_V1 = """state:
  served: u64
  tag: str[16]
  gone: u32
  retyped: u16
"""
# Version 2: `gone` removed, `retyped` now u32 (so it starts at zero), `seen` added.
STATE_V2 = """state:
  served: u64
  tag: str[16]
  retyped: u32
  seen: u64
"""
BUMP = """kBump:
  id: 10
  params:
    served: out u64
    seen: out u64
    version: out u32
    retyped: out u32
    tag: out str[16]
"""

C_CREATE = {
    1: """    (void)params;
    memcpy(state->tag, "made", 5);
    state->gone = 7;
    state->retyped = 5;
    return chi_container_add_lanes(c, 0, 1, CHI_PRIO_LOW_LATENCY);""",
    2: """    (void)params;
    memcpy(state->tag, "made", 5);
    state->retyped = 5;
    return chi_container_add_lanes(c, 0, 1, CHI_PRIO_LOW_LATENCY);""",
}
C_BUMP = {
    1: """    (void)rctx;
    state->served++;
    task->served = state->served;
    task->version = 1;
    task->retyped = state->retyped;
    memcpy(task->tag, state->tag, sizeof task->tag);
    return 0;""",
    2: """    (void)rctx;
    state->served++;
    state->seen++;
    task->served = state->served;
    task->seen = state->seen;
    task->version = 2;
    task->retyped = state->retyped;
    memcpy(task->tag, state->tag, sizeof task->tag);
    return 0;""",
}
SWIFT_CREATE = {
    1: """    state.tag = "made"
    state.gone = 7
    state.retyped = 5
    let rc = chi_container_add_lanes(c, 0, 1, UInt32(CHI_PRIO_LOW_LATENCY))""",
    2: """    state.tag = "made"
    state.retyped = 5
    let rc = chi_container_add_lanes(c, 0, 1, UInt32(CHI_PRIO_LOW_LATENCY))""",
}
SWIFT_BUMP = {
    1: """    state.served += 1
    task.pointee.served = state.served
    task.pointee.version = 1
    task.pointee.retyped = UInt32(state.retyped)
    chiSetString(&task.pointee.tag, state.tag)
    return 0""",
    2: """    state.served += 1
    state.seen += 1
    task.pointee.served = state.served
    task.pointee.seen = state.seen
    task.pointee.version = 2
    task.pointee.retyped = state.retyped
    chiSetString(&task.pointee.tag, state.tag)
    return 0""",
}
C_SKELETON_CREATE = """    (void)params;
    (void)state;
    /* Lane group 0: one low-latency lane. MapTaskToLane picks among a group's lanes. */
    return chi_container_add_lanes(c, 0, 1, CHI_PRIO_LOW_LATENCY);"""
SWIFT_SKELETON_CREATE = """    // Lane group 0: one low-latency lane. mapTaskToLane picks among a group's lanes.
    let rc = chi_container_add_lanes(c, 0, 1, UInt32(CHI_PRIO_LOW_LATENCY))"""


def methods_yaml(text, state):
    return text.replace("kUpgrade: -1", "kUpgrade: 5").replace("kMigrate: -1", "kMigrate: 4") + state + BUMP


def make_kit_repo(root, version, *, build=True):
    """A repo `kmig` with a C module (ctr) and a Swift one (sctr), both declaring STATE_V<version>,
    kMigrate and kUpgrade, and Bump; only Create and Bump are filled in: the Migrate and Upgrade
    regions stay as the kit generated them. Returns (repo, directory of the built .so files)."""
    from test_devkit import cmake, need_cmake, tool
    need_cmake()
    require_staged()
    root.mkdir(parents=True)
    tool("chi_make_repo", "repo", "kmig", cwd=root)
    tool("chi_make_mod", "repo/ctr", cwd=root)
    tool("chi_make_mod", "repo/sctr", "--lang", "swift", cwd=root)
    repo = root / "repo"
    for m in ("ctr", "sctr"):
        y = repo / m / "include" / m / f"{m}_methods.yaml"
        y.write_text(methods_yaml(y.read_text(), STATE_V1 if version == 1 else STATE_V2))
        mod = repo / m / "chimaera_mod.yaml"
        mod.write_text(mod.read_text().replace("version: 1", f"version: {version}"))
    tool("chi_refresh_repo", "repo", cwd=root)
    c = repo / "ctr/src/ctr_runtime.c"
    text = c.read_text()
    assert C_SKELETON_CREATE in text, text
    text = text.replace(C_SKELETON_CREATE, C_CREATE[version])
    text = text.replace("    (void)state;\n    (void)task;\n    (void)rctx;\n    return -ENOSYS;", C_BUMP[version])
    assert C_BUMP[version] in text
    c.write_text(text)
    s = repo / "sctr/Sources/sctr/sctr_runtime.swift"
    text = s.read_text()
    assert SWIFT_SKELETON_CREATE in text, text
    text = text.replace(SWIFT_SKELETON_CREATE, SWIFT_CREATE[version])
    text = text.replace("    -ENOSYS\n}", SWIFT_BUMP[version] + "\n}")
    assert SWIFT_BUMP[version] in text
    s.write_text(text)
    if not build:
        return repo, None
    cmake(repo, root / "build", f"-DCMAKE_PREFIX_PATH={STAGE}",
          "-DCMAKE_C_FLAGS=-Wall -Wextra -Werror -pedantic")
    out = root / "build" / "chimaera_modules"
    for m in ("ctr", "sctr"):
        assert (out / f"libkmig_{m}.so").exists()
    return repo, out


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Versions 1 and 2 of both modules, built once for the tests of this file."""
    base = tmp_path_factory.mktemp("kit")
    return {v: make_kit_repo(base / f"v{v}", v) for v in (1, 2)}


def bump(pool, container):
    return pool.call("Bump", dq=chimaera.dq_direct_id(GLOBAL, container), timeout=30)


def cluster_nodes(daemons, module_paths):
    """Two nodes, node i loading modules from module_paths[i-1] before the staged ones."""
    from test_cluster import cluster_config, free_ports
    hosts = [f"127.0.0.1:{p}" for p in free_ports(len(module_paths))]
    nodes = []
    for i, path in enumerate(module_paths, 1):
        cfg = cluster_config(hosts, node_id=i)
        cfg["runtime"]["module_path"] = [str(path)]
        nodes.append(daemons.new(config=cfg, segment=unique_segment(f"t{os.getpid()}k{i}_")))
    for d in nodes:
        d.start()
    return nodes


def placement(node, pool_name):
    import json
    rc, out = node.status("--json")
    assert rc == 0, out
    p = next(p for p in json.loads(out)["pools"] if p["name"] == pool_name)
    return {x["container"]: x["node"] for x in p["placement"]}


# ---- (a) a container moves under load --------------------------------------------------------


def test_kit_modules_migrate_under_load_and_keep_their_state(daemons, kit, monkeypatch):
    _, v1 = kit[1]
    monkeypatch.setenv("CHI_MODULE_PATH", f"{v1}:{STAGE / 'lib' / 'chimaera'}")
    nodes = cluster_nodes(daemons, [v1, v1])
    clients = [chimaera.Client(segment=d.segment, mode="attach") for d in nodes]
    stop = threading.Event()
    threads = []
    try:
        for mod in ("kmig_ctr", "kmig_sctr"):
            name = f"{mod}_mig"
            clients[0].create_pool(mod, name)
            pools = [c.pool(name) for c in clients]
            for p in pools:
                r = bump(p, 0)
                assert r.version == 1 and r.tag == "made", r
            errors, counts = [], []
            stop.clear()

            def load(p):
                n, last = 0, 0
                try:
                    while not stop.is_set():
                        r = bump(p, 0)
                        assert r.served > last and r.tag == "made", (r.served, last, r.tag)
                        last = r.served
                        n += 1
                except Exception as e:  # noqa: BLE001 (reported by the main thread)
                    errors.append(repr(e))
                counts.append(n)
            threads = [threading.Thread(target=load, args=(p,)) for p in pools for _ in range(2)]
            for t in threads:
                t.start()
            time.sleep(0.7)
            clients[1].migrate_container(name, 0, 2)  # held by node 1, asked on node 2
            time.sleep(0.7)
            clients[0].migrate_container(name, 0, 1)  # and back
            time.sleep(0.7)
            stop.set()
            for t in threads:
                t.join(timeout=60)
            assert not any(t.is_alive() for t in threads), "a load thread hung"
            assert not errors, errors
            for d in nodes:
                assert placement(d, name)[0] == 1, d.log()
            if mod == "kmig_ctr":  # the C glue reports its record's size to chimaera status
                import json
                rc, out = nodes[0].status("--json")
                st = next(p for p in json.loads(out)["pools"] if p["name"] == name)["placement"]
                assert 16 < st[0]["state_bytes"] < 4096 and "state_bytes" not in st[1], st
            # Every Bump counted exactly once, across two moves; the str field travelled too.
            r = bump(pools[1], 0)
            assert r.served == sum(counts) + 3 and r.tag == "made" and r.retyped == 5, (r, sum(counts))
            assert f"pool {name}: container 0 moved from node 1" in nodes[0].log()
            assert f"pool {name}: container 0 arrived on node 2" in nodes[1].log()
            print(mod, sum(counts), "calls across two moves")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        for c in clients:
            c.close()


# ---- (b) the generated Upgrade: v1 -> v2 with a field added, one removed, one retyped ----------


def test_kit_modules_upgrade_with_an_added_field_under_load(daemons, kit, monkeypatch):
    _, v1 = kit[1]
    _, v2 = kit[2]
    monkeypatch.setenv("CHI_MODULE_PATH", f"{v1}:{STAGE / 'lib' / 'chimaera'}")
    d = daemons.start(config={"runtime": {"shm_size": "256M", "low_latency_workers": 2,
                                          "high_latency_workers": 1, "module_path": [str(v1)]}})
    with chimaera.Client(segment=d.segment, mode="attach") as c:
        for mod in ("kmig_ctr", "kmig_sctr"):
            pool = c.create_pool(mod, f"{mod}_up", containers_per_node=2)
            assert [bump(pool, i).version for i in range(2)] == [1, 1]
            stop, upgraded = threading.Event(), threading.Event()
            errors, counts = [], []

            def load(tid):
                n, v2_calls, k = 0, 0, tid
                try:
                    while not stop.is_set():
                        after = upgraded.is_set()
                        r = bump(pool, k % 2)
                        k += 1
                        n += 1
                        assert r.version in (1, 2) and r.tag == "made", r
                        assert not after or r.version == 2, "submitted after the upgrade, answered 1"
                        v2_calls += r.version == 2
                except Exception as e:  # noqa: BLE001 (reported by the main thread)
                    errors.append(repr(e))
                counts.append((n, v2_calls))
            threads = [threading.Thread(target=load, args=(i,)) for i in range(3)]
            for t in threads:
                t.start()
            time.sleep(0.8)
            rep = c.upgrade_module(mod, str(v2 / f"lib{mod}.so"))
            upgraded.set()
            time.sleep(0.8)
            stop.set()
            for t in threads:
                t.join(timeout=60)
            assert not errors, errors
            assert rep["old_version"] == 1 and rep["new_version"] == 2 and rep["containers"] == 2, rep
            total = sum(n for n, _ in counts) + 2
            answered_by_v2 = sum(v for _, v in counts)
            after = [bump(pool, i) for i in range(2)]
            # served carried and counting on; seen is new in v2: zero at the upgrade, then counted;
            # retyped changed type (u16 -> u32): zero; tag (str[16]) carried.
            assert sum(r.served for r in after) - 2 == total, (after, total)
            assert sum(r.seen for r in after) - 2 == answered_by_v2, (after, answered_by_v2)
            assert all(r.version == 2 and r.retyped == 0 and r.tag == "made" for r in after), after
            # A container created by v2 has its own Create's values.
            fresh = c.create_pool(mod, f"{mod}_fresh")
            r = bump(fresh, 0)
            assert (r.version, r.served, r.seen, r.retyped, r.tag) == (2, 1, 1, 5, "made"), r
            print(mod, rep["pause_us_max"], "us pause,", total, "calls")
    assert "upgraded from version 1 to 2" in d.log()


def test_upgrade_from_a_version_without_a_declared_state_is_refused(daemons, kit, tmp_path, monkeypatch):
    """The generated Upgrade reads an old state only through the kit's header. Version 1 here is
    a kit module whose own code defines its state (no `state:`), so it has no header: the
    upgrade to the kit's version 2 is refused with -EPROTO and version 1 serves on."""
    from test_devkit import tool
    _, v2 = kit[2]
    tool("chi_make_repo", "repo", "kmig", cwd=tmp_path)
    tool("chi_make_mod", "repo/ctr", cwd=tmp_path)
    repo = tmp_path / "repo"
    y = repo / "ctr/include/ctr/ctr_methods.yaml"
    y.write_text(y.read_text().replace("kUpgrade: -1", "kUpgrade: 5") + BUMP)
    tool("chi_refresh_repo", "repo", cwd=tmp_path)
    out_dir = tmp_path / "plain"
    out_dir.mkdir()
    so = out_dir / "libkmig_ctr.so"
    rc, out = run([CC, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                   "-fvisibility=hidden", f"-I{STAGE}/include", f"-I{repo}/ctr/include",
                   str(repo / "ctr/src/ctr_runtime.c"), "-o", str(so), f"-L{STAGE}/lib", "-lchimaera"],
                  timeout=120)
    assert rc == 0, out
    so.chmod(0o755)
    monkeypatch.setenv("CHI_MODULE_PATH", f"{out_dir}:{STAGE / 'lib' / 'chimaera'}")
    d = daemons.start(config={"runtime": {"shm_size": "256M", "module_path": [str(out_dir)]}})
    with chimaera.Client(segment=d.segment, mode="attach") as c:
        pool = c.create_pool("kmig_ctr", "plain_then_kit", containers_per_node=2)
        with pytest.raises(ChimaeraError) as e:
            c.upgrade_module("kmig_ctr", str(v2 / "libkmig_ctr.so"))
        assert e.value.code == -EPROTO, e.value
        # Version 1's Bump is still the skeleton's -ENOSYS: the old code serves.
        with pytest.raises(ChimaeraError) as e:
            bump(pool, 1)
        assert e.value.code == -38, e.value


# ---- (c) hostile records ------------------------------------------------------------------------

HARNESS = r"""/* Feeds the generated MigrateIn and Upgrade of ctr (v1) records: valid, short, long and
 * malformed. The chi_* functions the module calls are stubbed here. */
#include <stdio.h>

#include "ctr_runtime.c"

struct chi_migrate_stream {
    const uint8_t *buf;
    size_t len, pos;
    uint64_t claim; /* what chi_migrate_remaining reports */
    int fail;       /* chi_migrate_read returns this when nonzero */
};

int chi_migrate_write(chi_migrate_stream_t *s, const void *buf, size_t len) {
    (void)s; (void)buf; (void)len;
    return 0;
}
long chi_migrate_read(chi_migrate_stream_t *s, void *buf, size_t len) {
    if (s->fail) return s->fail;
    size_t n = s->len - s->pos < len ? s->len - s->pos : len;
    if (n > 3) n = 3; /* in small pieces, as a stream may come */
    memcpy(buf, s->buf + s->pos, n);
    s->pos += n;
    return (long)n;
}
uint64_t chi_migrate_remaining(chi_migrate_stream_t *s) { return s->claim; }
int chi_container_add_lanes(chi_container_t *c, uint32_t g, uint32_t n, uint32_t p) {
    (void)c; (void)g; (void)n; (void)p;
    return 0;
}
int chi_lane_by_hash(const chi_container_t *c, uint32_t g, uint64_t h) {
    (void)c; (void)g; (void)h;
    return 0;
}
uint32_t chi_rctx_replica_count(chi_rctx_t *r) { (void)r; return 0; }
chi_task_t *chi_rctx_replica(chi_rctx_t *r, uint32_t i) { (void)r; (void)i; return NULL; }

/* A record builder: header, then fields appended one by one. */
static uint8_t rec[4096];
static size_t rec_len;
static void begin(uint32_t version, uint32_t nfields) {
    uint32_t h[4] = {0x31524b43u, version, nfields, 0};
    memcpy(rec, h, 16);
    rec_len = 16;
}
static void field(const char *name, uint16_t type, uint32_t size, const void *value) {
    uint16_t n = (uint16_t)strlen(name);
    memcpy(rec + rec_len, &n, 2);
    memcpy(rec + rec_len + 2, &type, 2);
    memcpy(rec + rec_len + 4, &size, 4);
    memcpy(rec + rec_len + 8, name, n);
    memcpy(rec + rec_len + 8 + n, value, size);
    rec_len += 8 + n + size;
}
static void end(void) { uint32_t l = (uint32_t)rec_len; memcpy(rec + 12, &l, 4); }
static void good(uint32_t version) {
    uint64_t served = 41;
    char tag[16] = "moved";
    uint32_t gone = 7;
    uint16_t retyped = 5;
    begin(version, 4);
    field("served", CHI_FT_U64, 8, &served);
    field("tag", CHI_FT_STR, 16, tag);
    field("gone", CHI_FT_U32, 4, &gone);
    field("retyped", CHI_FT_U16, 2, &retyped);
    end();
}

static int failures;
static ctr_state_t *last;
static int feed(const char *what, size_t len, uint64_t claim, int fail, uint32_t version, int want) {
    struct chi_migrate_stream s = {rec, len, 0, claim, fail};
    void *state = NULL;
    int rc = chi_gen_vtable.migrate_in((chi_container_t *)&s, &s, version, &state);
    if (rc != want || (rc == 0) != (state != NULL)) {
        fprintf(stderr, "%s: rc %d, wanted %d\n", what, rc, want);
        failures++;
    }
    if (last != NULL) chi_gen_vtable.destroy(NULL, last);
    last = state;
    return rc;
}
#define CASE(what, want) feed(what, rec_len, rec_len, 0, 1, want)

static long fake_save(const void *state, void *buf, size_t cap) {
    (void)state;
    if (buf != NULL && cap >= rec_len) memcpy(buf, rec, rec_len);
    return (long)rec_len;
}

int main(void) {
    good(1);
    CASE("a valid record", 0);
    if (last == NULL || last->served != 41 || strcmp(last->tag, "moved") != 0 || last->gone != 7 ||
        last->retyped != 5 || last->chi_gen_hdr.magic != CHI_GEN_STATE_MAGIC) {
        fprintf(stderr, "a valid record: fields not stored\n");
        failures++;
    }
    /* Its own record round-trips: save then read. */
    {
        uint8_t mine[4096];
        long n = chi_gen_state_save(last, mine, sizeof mine);
        memcpy(rec, mine, (size_t)n);
        rec_len = (size_t)n;
        CASE("a record save wrote", 0);
        if (last->served != 41 || strcmp(last->tag, "moved") != 0) {
            fprintf(stderr, "save/read changed the fields\n");
            failures++;
        }
    }
    good(1);
    feed("short by one byte", rec_len - 1, rec_len - 1, 0, 1, -EPROTO);
    feed("a stream shorter than it claims", rec_len - 5, rec_len, 0, 1, -EPROTO);
    feed("empty", 0, 0, 0, 1, -EPROTO);
    feed("a failing read", rec_len, rec_len, -EIO, 1, -EIO);
    rec[rec_len] = 0;
    feed("one byte too long", rec_len + 1, rec_len + 1, 0, 1, -EPROTO);
    feed("a huge claim", rec_len, 1ull << 40, 0, 1, -EPROTO);
    feed("another version than the runtime says", rec_len, rec_len, 0, 2, -EPROTO);
    good(1); rec[0] ^= 1; CASE("bad magic", -EPROTO);
    good(1); rec[12] ^= 1; CASE("a wrong length in the header", -EPROTO);
    good(1); rec[8] = 5; CASE("a field count too high", -EPROTO);
    good(1); memset(rec + 8, 0xff, 4); CASE("a field count of 4 billion", -EPROTO);
    good(1); rec[8] = 3; CASE("a field count too low", -EPROTO);
    good(1); memset(rec + rec_len, 0, 4); rec_len += 4; end(); CASE("bytes after the last field", -EPROTO);
    {
        uint64_t v = 1;
        char tag[16] = "t";
        uint32_t u = 1;
        uint16_t r = 1;
        begin(1, 4); field("served", CHI_FT_I64, 8, &v); field("tag", CHI_FT_STR, 16, tag);
        field("gone", CHI_FT_U32, 4, &u); field("retyped", CHI_FT_U16, 2, &r); end();
        CASE("a field of another type", -EPROTO);
        begin(1, 4); field("served", CHI_FT_U64, 8, &v); field("tag", CHI_FT_STR, 8, tag);
        field("gone", CHI_FT_U32, 4, &u); field("retyped", CHI_FT_U16, 2, &r); end();
        CASE("a field of another size", -EPROTO);
        begin(1, 4); field("served", CHI_FT_U64, 8, &v); field("taag", CHI_FT_STR, 16, tag);
        field("gone", CHI_FT_U32, 4, &u); field("retyped", CHI_FT_U16, 2, &r); end();
        CASE("an unknown field", -EPROTO);
        begin(1, 4); field("served", CHI_FT_U64, 8, &v); field("served", CHI_FT_U64, 8, &v);
        field("gone", CHI_FT_U32, 4, &u); field("retyped", CHI_FT_U16, 2, &r); end();
        CASE("a field twice", -EPROTO);
        memset(tag, 'x', sizeof tag);
        begin(1, 4); field("served", CHI_FT_U64, 8, &v); field("tag", CHI_FT_STR, 16, tag);
        field("gone", CHI_FT_U32, 4, &u); field("retyped", CHI_FT_U16, 2, &r); end();
        CASE("a str without its NUL", -EPROTO);
        begin(1, 1); field("served", CHI_FT_U64, 8, &v); end();
        rec[16] = 0; CASE("a name of length 0", -EPROTO);
        begin(1, 1); field("served", CHI_FT_U64, 8, &v); end();
        rec[16] = 200; CASE("a name longer than the record", -EPROTO);
        begin(1, 1); field("served", CHI_FT_U64, 8, &v); end();
        memset(rec + 20, 0xff, 4); CASE("a size past the end", -EPROTO);
        begin(1, 1); field("served", CHI_FT_U64, 0, &v); end();
        CASE("a size of 0", -EPROTO);

        /* From another version: carried by name and type; the rest stays zero. */
        uint8_t yes = 1;
        uint32_t retyped32 = 9;
        char short_tag[8] = "short";
        begin(0, 4); field("served", CHI_FT_U64, 8, &v); field("flag", CHI_FT_BOOL, 1, &yes);
        field("retyped", CHI_FT_U32, 4, &retyped32); field("tag", CHI_FT_STR, 8, short_tag);
        end();
        feed("another version's record", rec_len, rec_len, 0, 0, 0);
        if (last == NULL || last->served != 1 || last->retyped != 0 || last->tag[0] != 0 || last->gone != 0) {
            fprintf(stderr, "another version's record: wrong fields\n");
            failures++;
        }
        uint8_t two = 2;
        begin(0, 1); field("flag", CHI_FT_BOOL, 1, &two); end();
        feed("another version's unknown bool of 2", rec_len, rec_len, 0, 0, 0);
        char ok[16] = "ok";
        begin(1, 4); field("served", CHI_FT_U64, 8, &v); field("tag", CHI_FT_STR, 16, ok);
        field("gone", CHI_FT_U32, 4, &u); field("retyped", CHI_FT_U16, 2, &r); end();
        CASE("all fields right again", 0);
    }

    /* Upgrade: the old state is read only through its header. */
    {
        void *state = NULL;
        struct { uint32_t magic, version; long (*save)(const void *, void *, size_t); } old = {
            CHI_GEN_STATE_MAGIC, 0, fake_save};
        uint64_t v = 77;
        begin(0, 2); field("served", CHI_FT_U64, 8, &v); field("gone", CHI_FT_U8, 1, "x"); end();
        int rc = chi_gen_vtable.upgrade(NULL, &old, 0, &state);
        if (rc != 0 || ((ctr_state_t *)state)->served != 77 || ((ctr_state_t *)state)->gone != 0) {
            fprintf(stderr, "upgrade from a kit state: rc %d\n", rc);
            failures++;
        }
        if (state != NULL) chi_gen_vtable.destroy(NULL, state);
        state = NULL;
        if ((rc = chi_gen_vtable.upgrade(NULL, &old, 3, &state)) != -EPROTO || state != NULL) {
            fprintf(stderr, "upgrade with another old_version than the state's: rc %d\n", rc);
            failures++;
        }
        old.magic = 0x12345678u;
        if ((rc = chi_gen_vtable.upgrade(NULL, &old, 0, &state)) != -EPROTO || state != NULL) {
            fprintf(stderr, "upgrade from a state without the kit's header: rc %d\n", rc);
            failures++;
        }
    }
    if (last != NULL) chi_gen_vtable.destroy(NULL, last);
    printf("%s\n", failures ? "FAILED" : "hostile records: all refused");
    return failures ? 1 : 0;
}
"""


def test_generated_c_reader_refuses_short_long_and_malformed_records(tmp_path, kit):
    repo, _ = kit[1]
    src = repo / "ctr/src"
    harness = src / "hostile_harness.c"
    harness.write_text(HARNESS)
    try:
        exe = tmp_path / "hostile"
        flags = ["-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", f"-I{STAGE}/include",
                 f"-I{repo}/ctr/include", f"-I{src}"]
        san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
        rc, out = run([CC, *flags, *san, str(harness), "-o", str(exe)], timeout=120)
        if rc != 0:  # no sanitizer runtime here: the checks still run
            rc, out = run([CC, *flags, str(harness), "-o", str(exe)], timeout=120)
        assert rc == 0, out
        rc, out = run([exe], timeout=60)
        assert rc == 0 and "all refused" in out, out
    finally:
        harness.unlink()


EVIL_MIGRATE_OUT = """    (void)c;
    /* Each attempt sends another bad record; the fourth the true one. */
    static int attempt;
    uint8_t rec[512];
    long n = chi_gen_state_save(state, rec, sizeof rec);
    switch (attempt++) {
    case 0: /* long: a byte after the record */
        rec[n] = 0;
        return chi_migrate_write(out, rec, (size_t)n + 1);
    case 1: /* short: the last byte missing */
        return chi_migrate_write(out, rec, (size_t)n - 1);
    case 2: /* mismatched: served's type says i64 */
        rec[16 + 2] = CHI_FT_I64;
        return chi_migrate_write(out, rec, (size_t)n);
    default:
        return chi_migrate_write(out, rec, (size_t)n);
    }"""


def build_evil(kit, tmp_path, name):
    """v1 of ctr with a MigrateOut that writes bad records, registered as module `name`."""
    repo, _ = kit[1]
    src = (repo / "ctr/src/ctr_runtime.c").read_text()
    body = "    (void)c;\n    return chi_gen_state_write(out, state);"
    assert body in src
    evil = tmp_path / "evil"
    evil.mkdir(exist_ok=True)
    (evil / "ctr_runtime.c").write_text(src.replace(body, EVIL_MIGRATE_OUT))
    lib_exec = (repo / "ctr/src/ctr_lib_exec.h").read_text()
    (evil / "ctr_lib_exec.h").write_text(lib_exec.replace(".name = CTR_MODULE_NAME", f'.name = "{name}"'))
    out_dir = tmp_path / f"evil_{name}"
    out_dir.mkdir()
    so = out_dir / f"lib{name}.so"
    rc, out = run([CC, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                   "-fvisibility=hidden", f"-I{STAGE}/include", f"-I{repo}/ctr/include", f"-I{evil}",
                   str(evil / "ctr_runtime.c"), "-o", str(so), f"-L{STAGE}/lib", "-lchimaera"], timeout=120)
    assert rc == 0, out
    so.chmod(0o755)
    return out_dir


@pytest.mark.parametrize("mod", ["kmig_ctr", "kmig_sctr"])
def test_a_node_that_sends_bad_records_cannot_move_a_container(daemons, kit, tmp_path, monkeypatch, mod):
    """Node 1 runs a build of the module whose MigrateOut sends a long, a short and a mismatched
    record before a true one; node 2 runs the kit's (C, or Swift for kmig_sctr: the record is
    the same bytes). The three are refused with -EPROTO and the container stays on node 1 with
    its count; the fourth moves it, count and all."""
    _, v1 = kit[1]
    evil = build_evil(kit, tmp_path, mod)
    monkeypatch.setenv("CHI_MODULE_PATH", f"{v1}:{STAGE / 'lib' / 'chimaera'}")
    nodes = cluster_nodes(daemons, [evil, v1])
    clients = [chimaera.Client(segment=d.segment, mode="attach") for d in nodes]
    try:
        name = f"{mod}_hostile"
        clients[0].create_pool(mod, name)
        pool = clients[0].pool(name)
        for _ in range(5):
            assert bump(pool, 0).tag == "made"
        for what in ("long", "short", "mismatched"):
            with pytest.raises(ChimaeraError) as e:
                clients[0].migrate_container(name, 0, 2)
            assert e.value.code == -EPROTO, (what, e.value)
            assert "migrate_in of container 0" in e.value.message, e.value.message
            assert placement(nodes[0], name)[0] == 1, what
            r = bump(pool, 0)
            assert r.tag == "made", what
        assert r.served == 8
        clients[0].migrate_container(name, 0, 2)
        for d in nodes:
            assert placement(d, name)[0] == 2
        r = bump(clients[1].pool(name), 0)
        assert (r.served, r.tag, r.retyped) == (9, "made", 5), r
        assert f"pool {name}: container 0 arrived on node 2" in nodes[1].log(), nodes[1].log()
    finally:
        for c in clients:
            c.close()


# ---- (d) refresh ------------------------------------------------------------------------------


def test_refresh_is_stable_and_removing_kmigrate_keeps_edited_code(tmp_path):
    from test_devkit import snapshot, tool
    repo, _ = make_kit_repo(tmp_path / "k", 1, build=False)
    cwd = tmp_path / "k"
    before = snapshot(repo)
    out = tool("chi_refresh_repo", "repo", cwd=cwd)
    assert "up to date" in out, out
    out = tool("chi_refresh_repo", "repo", cwd=cwd)
    assert "up to date" in out and snapshot(repo) == before, out

    c_src, s_src = repo / "ctr/src/ctr_runtime.c", repo / "sctr/Sources/sctr/sctr_runtime.swift"
    # Edit the C module's Migrate region; leave the Swift one's as generated.
    c_text = c_src.read_text()
    c_text = c_text.replace("    return chi_gen_state_write(out, state);",
                            "    /* mine */\n    return chi_gen_state_write(out, state);")
    c_src.write_text(c_text)
    for m in ("ctr", "sctr"):
        y = repo / m / "include" / m / f"{m}_methods.yaml"
        y.write_text(y.read_text().replace("kMigrate: 4", "kMigrate: -1"))
    out = tool("chi_refresh_repo", "repo", cwd=cwd)
    c_text, s_text = c_src.read_text(), s_src.read_text()
    line = next(i + 1 for i, l in enumerate(c_text.split("\n")) if "CHI_BEGIN(Migrate)" in l)
    assert f"ctr_runtime.c:{line}: warning:" in out and "Migrate" in out, out
    assert "/* mine */" in c_text, "the edited Migrate region was removed"
    assert "CHI_BEGIN(Migrate)" not in s_text and "migrateOut" not in s_text, "the untouched one stayed"
    for m, gen in (("ctr", "src/ctr_lib_exec.h"), ("sctr", "Sources/sctr/sctr_lib_exec.swift")):
        text = (repo / m / gen).read_text()
        assert "migrate_out" not in text and "chiGenWrite" not in text and "chi_gen_state_write(" not in text, gen
        assert "METHOD_MIGRATE" not in (repo / m / f"include/{m}/{m}_methods.h").read_text()
    assert "static int MigrateOut" not in c_text.split("CHI_AUTOGEN_END(decls)")[0]
    # The warning repeats; nothing else changes.
    before = snapshot(repo)
    out = tool("chi_refresh_repo", "repo", cwd=cwd)
    assert "warning:" in out and snapshot(repo) == before


def test_kmigrate_as_an_old_method_is_refused_or_warned(tmp_path):
    """kMigrate was an ordinary method at id 4: with params it is refused with its line; an
    edited Migrate region that still holds a method is kept, with a warning that says why."""
    from test_devkit import snapshot, tool
    require_staged()
    tool("chi_make_repo", "repo", "old", cwd=tmp_path)
    tool("chi_make_mod", "repo/m", cwd=tmp_path)
    repo = tmp_path / "repo"
    y = repo / "m/include/m/m_methods.yaml"
    base = y.read_text()
    y.write_text(re.sub(r"^kMigrate: -1.*$", "kMigrate:\n  id: 4\n  params:\n    to: in u32", base, flags=re.M))
    line = y.read_text().split("\n").index("kMigrate:") + 1
    before = snapshot(repo)
    out = tool("chi_refresh_repo", "repo", cwd=tmp_path, expect=1)
    assert f"m_methods.yaml:{line}: kMigrate is the container hook" in out, out
    assert snapshot(repo) == before
    src = repo / "m/src/m_runtime.c"
    src.write_text(src.read_text().replace(
        "/* CHI_AUTOGEN_METHODS", "/* CHI_BEGIN(Migrate) */\nstatic int Migrate(void) { return 0; }\n"
        "/* CHI_END(Migrate) */\n\n/* CHI_AUTOGEN_METHODS"))
    y.write_text(base.replace("kMigrate: -1", "kMigrate: 4"))
    out = tool("chi_refresh_repo", "repo", cwd=tmp_path)
    assert "holds a Migrate method, but kMigrate" in out, out
    assert "static int Migrate(void)" in src.read_text()


EVERY_STATE_TYPE = """state:
  a: u8
  b: u16
  c: u32
  d: u64
  e: i8
  f: i16
  g: i32
  h: i64
  x: f32
  y: f64
  z: bool
  s: str[8]
  k: bytes[3]
"""
# (module, language, kDestroy, kMigrate, kUpgrade, declares the state)
COMBOS = [("c_all", "c", 1, 4, 5, True), ("c_none", "c", -1, -1, -1, True),
          ("c_mig", "c", -1, 4, -1, True), ("c_up", "c", 1, -1, 5, True),
          ("c_own", "c", 1, 4, 5, False), ("s_all", "swift", 1, 4, 5, True),
          ("s_none", "swift", -1, -1, -1, True), ("s_own", "swift", 1, 4, -1, False)]


def test_every_state_type_and_hook_combination_builds_warning_free(tmp_path, daemons, monkeypatch):
    """Every state type, with and without each hook, and kMigrate without a declared state (the
    hand-written skeletons), in C (-Wall -Wextra -Werror -pedantic) and Swift; then the
    all-hooks modules run: a container created, moved nowhere, but destroyed cleanly."""
    from test_devkit import cmake, need_cmake, tool
    need_cmake()
    require_staged()
    tool("chi_make_repo", "repo", "combo", cwd=tmp_path)
    repo = tmp_path / "repo"
    for name, lang, destroy, migrate, upgrade, state in COMBOS:
        tool("chi_make_mod", f"repo/{name}", "--lang", lang, cwd=tmp_path)
        y = repo / name / "include" / name / f"{name}_methods.yaml"
        text = y.read_text().replace("kDestroy: 1 ", f"kDestroy: {destroy} ")
        text = text.replace("kMigrate: -1", f"kMigrate: {migrate}").replace("kUpgrade: -1", f"kUpgrade: {upgrade}")
        y.write_text(text + (EVERY_STATE_TYPE if state else "") + "kGet:\n  id: 10\n  params:\n    v: out u64\n")
    tool("chi_refresh_repo", "repo", cwd=tmp_path)
    for name, _, destroy, migrate, upgrade, state in COMBOS:
        gen = (repo / name / "src" / f"{name}_lib_exec.h")
        if gen.exists():
            text = gen.read_text()
            assert ("chi_gen_migrate_out" in text) == (migrate == 4), name
            assert (".upgrade = chi_gen_upgrade" in text) == (upgrade == 5), name
            assert ("chi_gen_state_save" in text) == state, name
    cmake(repo, tmp_path / "build", f"-DCMAKE_PREFIX_PATH={STAGE}",
          "-DCMAKE_C_FLAGS=-Wall -Wextra -Werror -pedantic")
    out = tmp_path / "build" / "chimaera_modules"
    for name, *_ in COMBOS:
        assert (out / f"libcombo_{name}.so").exists(), name
    monkeypatch.setenv("CHI_MODULE_PATH", f"{out}:{STAGE / 'lib' / 'chimaera'}")
    d = daemons.start(config={"runtime": {"shm_size": "256M", "module_path": [str(out)]}})
    with chimaera.Client(segment=d.segment, mode="attach") as c:
        for name, *_ in COMBOS:
            pool = c.create_pool(f"combo_{name}", f"{name}_p", containers_per_node=2)
            with pytest.raises(ChimaeraError) as e:  # Get is still the skeleton's
                pool.call("Get", dq=chimaera.dq_direct_id(GLOBAL, 1), timeout=30)
            assert e.value.code == -38, (name, e.value)
            pool.destroy()
    assert "error" not in d.log().lower(), d.log()


# ---- docs -------------------------------------------------------------------------------------


def test_docs_show_the_state_and_the_hooks_the_kit_generates(tmp_path):
    """docs/modules.md: the state declaration and the filled-in code these tests run, and the
    Upgrade and Migrate regions exactly as the kit generates them, in C and in Swift."""
    repo, _ = make_kit_repo(tmp_path / "k", 2, build=False)
    doc = (REPO / "docs" / "modules.md").read_text()

    def region(path, name):
        text = path.read_text()
        body = re.search(rf"CHI_BEGIN\({name}\) [0-9a-f]+(?: \*/)?\n(.*?)\n[^\n]*CHI_END\({name}\)", text, re.S)
        assert body, f"{path} has no {name} region"
        return body.group(1)

    c_src, s_src = repo / "ctr/src/ctr_runtime.c", repo / "sctr/Sources/sctr/sctr_runtime.swift"
    snippets = [STATE_V1.strip(), STATE_V2.strip(), C_CREATE[2], C_BUMP[2], SWIFT_BUMP[2],
                region(c_src, "Upgrade"), region(c_src, "Migrate"),
                region(s_src, "Upgrade"), region(s_src, "Migrate")]
    for snippet in snippets:
        assert snippet in doc, f"docs/modules.md lacks:\n{snippet}"
