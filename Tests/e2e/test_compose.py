"""`chimaera compose FILE`: modules registered and pools created in a running runtime, a second
run creating nothing, and bad files refused with the file, line, pool and key named."""

import json
import os

import pytest

from conftest import STAGE, REPO, require_staged, run, unique_segment

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


BAD_FILES = {
    "unknown_param": ("pools:\n  - name: b1\n    module: bdev\n    params:\n      url: \"ram://\"\n"
                      "      sise: 1M\n", 6, "pool \"b1\": params.sise"),
    "replicas": ("pools:\n  - name: b2\n    module: small_message\n    replicas: 3\n", 4,
                 "pool \"b2\": replicas: 3 is not supported"),
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
