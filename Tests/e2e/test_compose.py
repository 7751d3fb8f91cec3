"""`chimaera compose FILE`: modules registered and pools created in a running runtime, a second
run creating nothing, and bad files refused with the file, line, pool and key named."""

import json
import os

import pytest

from conftest import CC, STAGE, REPO, require_staged, run, unique_segment

BIN = STAGE / "bin" / "chimaera"


def compose(d, path, *args, timeout=30):
    return run([BIN, "compose", path, "--segment", d.segment, *args], env=d.env, timeout=timeout)


def pools(d):
    rc, out = d.status("--json")
    assert rc == 0, out
    return {p["name"]: p for p in json.loads(out)["pools"]}


def test_compose_creates_pools_then_is_idempotent(daemons, tmp_path):
    d = daemons.start()
    dev = tmp_path / "dev.bin"
    f = tmp_path / "deploy.yaml"
    f.write_text(f"""\
modules: [small_message]
pools:
  - name: c_sm
    module: small_message
    containers_per_node: 3
    replicas: 1
  - name: c_ram
    module: bdev
    params: {{url: "ram://", size: 1M}}
  - name: c_fs
    module: bdev
    containers_per_node: 2
    params:
      path: {dev}
      size: 2M
      buffered: true
""")
    rc, out = compose(d, f, "--json")
    assert rc == 0, out
    rep = json.loads(out)
    assert rep["ok"] and rep["created"] == 3 and rep["existing"] == 0, rep
    assert [p["action"] for p in rep["pools"]] == ["created"] * 3, rep
    assert rep["modules"] == ["small_message"], rep

    have = pools(d)
    assert have["c_sm"]["module"] == "small_message" and have["c_sm"]["containers"] == 3, have
    assert have["c_ram"]["module"] == "bdev" and have["c_ram"]["containers"] == 1, have
    assert have["c_fs"]["containers"] == 2, have
    # The create parameters reached bdev: one device file per container, of `size` bytes.
    for c in range(2):
        p = tmp_path / f"dev.bin.{c}"
        assert p.exists(), f"bdev made no {p}: params did not arrive"
        assert p.stat().st_size == 2 << 20, p.stat().st_size
    ids = {n: p["id"] for n, p in have.items()}

    # Again: nothing new, the same ids, exit 0; the text report says so.
    rc, out = compose(d, f)
    assert rc == 0, out
    assert "0 pool(s) created, 3 already there" in out, out
    assert "pool c_sm: exists" in out, out
    rc, out = compose(d, f, "--json")
    rep = json.loads(out)
    assert rc == 0 and rep["created"] == 0 and rep["existing"] == 3, out
    assert {n: p["id"] for n, p in pools(d).items()} == ids


def test_compose_refusals_from_the_runtime_name_the_pool(daemons, tmp_path):
    d = daemons.start()
    first = tmp_path / "first.yaml"
    first.write_text("pools:\n  - name: r_sm\n    module: small_message\n")
    rc, out = compose(d, first)
    assert rc == 0, out

    # The same name with another shape: refused, nothing changed.
    other = tmp_path / "other.yaml"
    other.write_text("pools:\n  - name: r_sm\n    module: small_message\n    containers_per_node: 4\n")
    rc, out = compose(d, other)
    assert rc == 1, out
    assert f"{other}:2: pool \"r_sm\" already exists" in out, out
    assert pools(d)["r_sm"]["containers"] == 1

    # A module the runtime cannot find: the pool and the module are named; earlier pools stay.
    missing = tmp_path / "missing.yaml"
    missing.write_text("pools:\n  - name: r_ok\n    module: small_message\n"
                       "  - name: r_bad\n    module: no_such_module_x\n")
    rc, out = compose(d, missing)
    assert rc == 1, out
    assert f"{missing}:4: pool \"r_bad\"" in out and "no_such_module_x" in out, out
    have = pools(d)
    assert "r_ok" in have and "r_bad" not in have, have

    # A bdev URL bdev refuses: the runtime's answer, with the pool.
    badurl = tmp_path / "badurl.yaml"
    badurl.write_text("pools:\n  - name: r_dev\n    module: bdev\n    params: {url: \"nope://x\", size: 1M}\n")
    rc, out = compose(d, badurl)
    assert rc == 1, out
    assert "pool \"r_dev\"" in out, out
    assert "r_dev" not in pools(d)


# A module whose Create writes the parameters it received to the file they name: the layout
# below is what chi_refresh_repo generates for PARAMS_YAML (declaration order, C alignment).
PARAMS_MODULE_C = r"""
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <chimaera/module.h>

typedef struct {
    uint8_t tag;
    int64_t bias;
    uint32_t level;
    char out[200];
    double ratio;
    bool flag;
} params_t;

static int create(chi_container_t *c, const void *params, uint32_t size, void **state) {
    params_t p;
    memset(&p, 0, sizeof p);
    memcpy(&p, params, size < sizeof p ? size : sizeof p);
    if (chi_container_id(c) == 0 && p.out[0]) {
        FILE *f = fopen(p.out, "w");
        if (f == NULL) return -errno;
        fprintf(f, "size=%u sizeof=%zu tag=%u bias=%lld level=%u ratio=%.3f flag=%d\n", size, sizeof p, p.tag,
                (long long)p.bias, p.level, p.ratio, p.flag);
        fclose(f);
    }
    *state = NULL;
    return chi_container_add_lanes(c, 0, 1, CHI_PRIO_LOW_LATENCY);
}
static void destroy(chi_container_t *c, void *s) { (void)c; (void)s; }
static int run(void *s, chi_task_t *t, chi_rctx_t *r) { (void)s; (void)t; (void)r; return 0; }
static const chi_method_desc_t methods[] = {{10, sizeof(chi_task_t), 0, 0, "Nop", NULL, NULL}};
static const chi_module_vtable_t vt = {
    .size = sizeof vt, .abi_major = CHI_ABI_MAJOR, .abi_minor = CHI_ABI_MINOR,
    .name = "param_probe", .version = 1, .nmethods = 1, .methods = methods,
    .create = create, .destroy = destroy, .run = run};
CHI_MODULE_EXPORT(&vt)
"""

PARAMS_YAML = """\
kCreate:
  id: 0
  params:
    tag: in u8
    bias: in i64
    level: in u32
    out: in str[200]
    ratio: in f64
    flag: in bool
kDestroy: 1
kNop:
  id: 10
"""


def test_compose_lays_out_params_from_a_methods_file(daemons, tmp_path):
    require_staged()
    mods = tmp_path / "mods"
    mods.mkdir()
    src = tmp_path / "param_probe.c"
    src.write_text(PARAMS_MODULE_C)
    rc, out = run([CC, "-std=c11", "-shared", "-fPIC", "-Wall", "-Werror", f"-I{STAGE}/include",
                   src, "-o", mods / "libparam_probe.so", f"-L{STAGE}/lib", "-lchimaera"], timeout=60)
    assert rc == 0, out
    (tmp_path / "param_probe_methods.yaml").write_text(PARAMS_YAML)
    d = daemons.start(config={"runtime": {"shm_size": "256M", "module_path": [str(mods)]}})
    seen = tmp_path / "seen.txt"
    f = tmp_path / "probe.yaml"
    f.write_text(f"""\
pools:
  - name: probe
    module: param_probe
    methods: param_probe_methods.yaml    # beside this file
    containers_per_node: 2
    params: {{tag: 200, bias: -42, level: 7, out: "{seen}", ratio: 0.25, flag: true}}
""")
    rc, out = compose(d, f)
    assert rc == 0, out
    assert seen.read_text() == "size=240 sizeof=240 tag=200 bias=-42 level=7 ratio=0.250 flag=1\n"

    bad = tmp_path / "probe_bad.yaml"
    bad.write_text("pools:\n  - name: probe2\n    module: param_probe\n"
                   "    methods: param_probe_methods.yaml\n    params:\n      tag: 300\n      levle: 1\n")
    rc, out = compose(d, bad)
    assert rc == 2 and f"{bad}:6: pool \"probe2\": params.tag: expected an integer from 0 to 255" in out, out
    bad.write_text("pools:\n  - name: probe2\n    module: param_probe\n"
                   "    methods: param_probe_methods.yaml\n    params:\n      levle: 1\n")
    rc, out = compose(d, bad)
    assert rc == 2 and "params.levle: kCreate in" in out and "tag, bias, level" in out, out
    bad.write_text("pools:\n  - name: probe2\n    module: param_probe\n    methods: nowhere.yaml\n")
    rc, out = compose(d, bad)
    assert rc == 2 and f"{bad}:4: pool \"probe2\": methods:" in out and "nowhere.yaml" in out, out


BAD_FILES = {
    "unknown_param": ("pools:\n  - name: b1\n    module: bdev\n    params:\n      url: \"ram://\"\n"
                      "      sise: 1M\n", 6, "pool \"b1\": params.sise"),
    "replicas": ("pools:\n  - name: b2\n    module: small_message\n    replicas: 0\n", 4,
                 "pool \"b2\": replicas: expected an integer from 1"),
    "no_module": ("pools:\n  - name: b3\n    containers_per_node: 2\n", 2,
                  "pool \"b3\": key `module` is required"),
    "bad_size": ("pools:\n  - name: b4\n    module: bdev\n    params: {url: \"ram://\", size: lots}\n", 4,
                 "pool \"b4\": params.size: expected a size"),
    "no_size": ("pools:\n  - name: b5\n    module: bdev\n    params: {path: /tmp/x}\n", 2,
                "pool \"b5\": params.size is required"),
    "params_for_sm": ("pools:\n  - name: b6\n    module: small_message\n    params: {depth: 3}\n", 4,
                      "pool \"b6\": params.depth: module \"small_message\" takes no create parameters"),
    "bad_containers": ("pools:\n  - name: b7\n    module: small_message\n    containers_per_node: 0\n", 4,
                       "pool \"b7\": containers_per_node: expected an integer from 1"),
    "unknown_top": ("pool:\n  - name: b8\n", 1, "unknown key `pool`"),
    "duplicate": ("pools:\n  - name: b9\n    module: small_message\n  - name: b9\n    module: small_message\n", 4,
                  "pool \"b9\": given twice (first on line 2)"),
    "yaml": ("pools: [\n", 1, "invalid YAML"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_compose_bad_file_names_file_line_pool_and_key(tmp_path, case):
    """Checked before the runtime is reached: no runtime serves this segment at all."""
    require_staged()
    text, line, what = BAD_FILES[case]
    f = tmp_path / f"{case}.yaml"
    f.write_text(text)
    env = dict(os.environ, CHI_MODULE_PATH=str(STAGE / "lib/chimaera"))
    rc, out = run([BIN, "compose", f, "--segment", unique_segment("nobody")], env=env)
    assert rc == 2, out
    assert f"{f}:{line}: " in out, out
    assert what in out, out


def test_compose_without_a_runtime_names_the_segment(tmp_path):
    require_staged()
    f = tmp_path / "ok.yaml"
    f.write_text("modules: [small_message]\n")
    seg = unique_segment("nobody")
    rc, out = run([BIN, "compose", f, "--segment", seg, "--timeout-ms", "200"])
    assert rc == 1, out
    assert seg in out and str(f) in out, out


def test_compose_example_file_applies_twice(daemons):
    d = daemons.start()
    example = REPO / "examples/deploy/compose.yaml"
    for created in (2, 0):
        rc, out = compose(d, example, "--json")
        assert rc == 0, out
        assert json.loads(out)["created"] == created, out
    assert {"demo_messages", "demo_blocks"} <= set(pools(d))


def test_compose_help():
    require_staged()
    rc, out = run([BIN, "compose", "--help"])
    assert rc == 0, out
    for opt in ("--segment", "--json", "<file>", "replicas", "containers_per_node"):
        assert opt in out, out
