"""The seed's bulk semantics across two nodes (issue 13): an `in bulk expose` buffer's bytes
travel to the remote side, which reads them, and what it writes into exposed buffers comes
back; checked byte for byte by Tests/capi/test_expose_remote.c against mod_expose."""

from conftest import CC, REPO, STAGE
from test_capi import compile_cmd, link_flags, CFLAGS
from test_cluster import Cluster, client, wait_serving, cluster_bin  # noqa: F401

MODS = REPO / "Tests" / "capi" / "mods"


def test_remote_task_reads_exposed_input_and_writes_back(daemons, tmp_path, cluster_bin):
    mod_dir = tmp_path / "mods"
    mod_dir.mkdir()
    compile_cmd([CC, "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                 "-fvisibility=hidden", f"-I{STAGE}/include", MODS / "mod_expose.c",
                 "-o", mod_dir / "libchi_test_expose.so"], "mod_expose.c")
    prog = tmp_path / "test_expose_remote"
    compile_cmd(["cc", *CFLAGS, f"-I{STAGE}/include", REPO / "Tests" / "capi" / "test_expose_remote.c",
                 "-o", prog, *link_flags()], "test_expose_remote")
    c = Cluster(daemons, 2)
    for d in c.nodes:
        text = d.config.read_text().replace("runtime:\n", f"runtime:\n  module_path: [{mod_dir}]\n", 1)
        d.config.write_text(text)
    c.start()
    for i, d in enumerate(c.nodes, 1):
        d.nodeid = i
    wait_serving(cluster_bin, c.node(1), 2)
    rc, out = client(prog, c.node(1), timeout=120)
    assert rc == 0 and "test_expose_remote: ok" in out, out
