"""`chi_make_mod --lang cpp` (issue 17): the seed's "Building Modules" chapter followed in a
temporary directory. chi_make_repo my_mod_repo example; chi_make_mod my_mod_repo/compressor
--lang cpp (the seed's layout); the skeleton builds as it is; kCompress: 10 and kDecompress: 11
added and chi_refresh_repo run (regions for both in the tasks, client and server files, a second
refresh changes nothing); the seed's task structs, client methods and Server methods pasted in
(only include lines and the zlib bodies of Compress and Decompress are not the seed's: the text
below is checked against the seed documentation when it is at hand); `cmake .. && make install`;
a runtime started with `modules: [example_compressor]`; the seed's "Invoking your mods" program,
built by an external project (find_package(Chimaera), find_package(Example),
example::compressor_client), compresses 1 MiB and decompresses it byte for byte; Python calls
the same methods by name, and Decompress runs on another node's container. Then the refresh's edits: removing a method removes its untouched
regions and warns about edited ones; malformed YAML is rejected with its line, files untouched."""

import os
import re
import shutil
import sys
import zlib
from pathlib import Path

import pytest

from conftest import REPO, STAGE, require_staged, run
from test_devkit import BIN, snapshot, tool

sys.path.insert(0, str(REPO / "bindings" / "python"))
os.environ["CHIMAERA_LIB"] = str(STAGE / "lib" / "libchimaera.so.1")
import chimaera  # noqa: E402

SEED_DOC = Path(os.environ.get("CHI_SEED_DOC", "/work/shared/seed/chimaera-docs.md"))
MiB = 1 << 20

# ---- the seed's code (its "Customize your new tasks" and following sections) ----------------

SEED_CREATE_PARAMS = """struct CreateTaskParams {
  CLS_CONST char *lib_name_ = "example_compressor";
  int compress_id_;

  HSHM_INLINE_CROSS_FUN
  CreateTaskParams() = default;

  HSHM_INLINE_CROSS_FUN
  CreateTaskParams(const hipc::CtxAllocator<CHI_ALLOC_T> &alloc,
                   int compress_id = 0) {
    compress_id_ = compress_id;
  }

  template <typename Ar>
  HSHM_INLINE_CROSS_FUN void serialize(Ar &ar) {
    ar(compress_id_);
  }
};
typedef chi::Admin::CreatePoolBaseTask<CreateTaskParams> CreateTask;"""

SEED_COMPRESS_TASK = """struct CompressTask : public Task, TaskFlags<TF_SRL_SYM> {
  IN hipc::Pointer data_;
  IN size_t data_size_;

  /** SHM default constructor */
  HSHM_INLINE explicit CompressTask(
      const hipc::CtxAllocator<CHI_ALLOC_T> &alloc)
      : Task(alloc) {}

  /** Emplace constructor */
  HSHM_INLINE explicit CompressTask(
      const hipc::CtxAllocator<CHI_ALLOC_T> &alloc, const TaskNode &task_node,
      const PoolId &pool_id, const DomainQuery &dom_query,
      const hipc::Pointer &data, size_t data_size)
      : Task(alloc) {
    // Initialize task
    task_node_ = task_node;
    prio_ = TaskPrioOpt::kLowLatency;
    pool_ = pool_id;
    method_ = Method::kCompress;
    task_flags_.SetBits(0);
    dom_query_ = dom_query;

    // Custom
    data_ = data;
    data_size_ = data_size;
  }

  /** Duplicate message */
  void Copy(const CompressTask &other, bool deep) {
    data_ = other.data_;
    data_size_ = other.data_size_;
    if (!deep) {
      UnsetDataOwner();
    }
  }

  /** (De)serialize message call */
  template <typename Ar>
  void SerializeIn(Ar &ar) {
    ar.bulk(DT_WRITE, data_, data_size_);
  }

  /** (De)serialize message return */
  template <typename Ar>
  void SerializeOut(Ar &ar) {}
};"""

SEED_DECOMPRESS_TASK = """struct DecompressTask : public Task, TaskFlags<TF_SRL_SYM> {
  IN hipc::Pointer data_;
  INOUT size_t data_size_;

  /** SHM default constructor */
  HSHM_INLINE explicit DecompressTask(
      const hipc::CtxAllocator<CHI_ALLOC_T> &alloc)
      : Task(alloc) {}

  /** Emplace constructor */
  HSHM_INLINE explicit DecompressTask(
      const hipc::CtxAllocator<CHI_ALLOC_T> &alloc, const TaskNode &task_node,
      const PoolId &pool_id, const DomainQuery &dom_query,
      const hipc::Pointer &data, size_t data_size)
      : Task(alloc) {
    // Initialize task
    task_node_ = task_node;
    prio_ = TaskPrioOpt::kLowLatency;
    pool_ = pool_id;
    method_ = Method::kDecompress;
    task_flags_.SetBits(0);
    dom_query_ = dom_query;

    // Custom
    data_ = data;
    data_size_ = data_size;
  }

  /** Duplicate message */
  void Copy(const DecompressTask &other, bool deep) {
    data_ = other.data_;
    data_size_ = other.data_size_;
    if (!deep) {
      UnsetDataOwner();
    }
  }

  /** (De)serialize message call */
  template <typename Ar>
  void SerializeIn(Ar &ar) {
    ar.bulk(DT_EXPOSE, data_, data_size_);
  }

  /** (De)serialize message return */
  template <typename Ar>
  void SerializeOut(Ar &ar) {
    ar.bulk(DT_WRITE, data_, data_size_);
  }
};"""

SEED_CLIENT_CREATE = """  /** Create a pool */
  HSHM_INLINE_CROSS_FUN
  void Create(const hipc::MemContext &mctx, const DomainQuery &dom_query,
              const DomainQuery &affinity, const chi::string &pool_name,
              const CreateContext &ctx = CreateContext(), int compress_id = 0) {
    FullPtr<CreateTask> task =
        AsyncCreate(mctx, dom_query, affinity, pool_name, ctx, compress_id);
    task->Wait();
    Init(task->ctx_.id_);
    CHI_CLIENT->DelTask(mctx, task);
  }
  CHI_TASK_METHODS(Create);"""

SEED_CLIENT_COMPRESS = """/** Compress task */
void Compress(const hipc::MemContext &mctx, const DomainQuery &dom_query,
              const hipc::Pointer &data, size_t data_size) {
  FullPtr<CompressTask> task =
      AsyncCompress(mctx, dom_query, data, data_size);
  task->Wait();
  CHI_CLIENT->DelTask(mctx, task);
}
CHI_TASK_METHODS(Compress);"""

SEED_CLIENT_DECOMPRESS = """/** Decompress task */
void Decompress(const hipc::MemContext &mctx, const DomainQuery &dom_query,
                const hipc::Pointer &data, size_t data_size) {
  FullPtr<DecompressTask> task =
      AsyncDecompress(mctx, dom_query, data, data_size);
  task->Wait();
  CHI_CLIENT->DelTask(mctx, task);
}
CHI_TASK_METHODS(Decompress);"""

SEED_SERVER_CREATE = """  /** Construct compressor */
  void Create(CreateTask *task, RunContext &rctx) {
    // Create a set of lanes for holding tasks
    CreateQueue(kDefaultGroup, 1, QUEUE_LOW_LATENCY);
  }
  void MonitorCreate(MonitorModeId mode, CreateTask *task, RunContext &rctx) {}"""

# The seed's Server methods; the {body} of Compress and Decompress is ours (zlib, in place:
# Compress leaves zlib's stream at the start of the buffer, rc its size; Decompress inflates it
# back, zlib finding the stream's end by itself).
SEED_SERVER_COMPRESS = """/** The Compress method */
  void Compress(CompressTask *task, RunContext &rctx) {
{body}  }
  void MonitorCompress(MonitorModeId mode, CompressTask *task,
                       RunContext &rctx) {
    switch (mode) {
      case MonitorMode::kReplicaAgg: {
        std::vector<FullPtr<Task>> &replicas = *rctx.replicas_;
      }
    }
  }"""

SEED_SERVER_DECOMPRESS = """  /** The Decompress method */
  void Decompress(DecompressTask *task, RunContext &rctx) {
{body}  }
  void MonitorDecompress(MonitorModeId mode, DecompressTask *task,
                         RunContext &rctx) {
    switch (mode) {
      case MonitorMode::kReplicaAgg: {
        std::vector<FullPtr<Task>> &replicas = *rctx.replicas_;
      }
    }
  }"""

ZLIB_COMPRESS = """    Bytef *data = rctx.Resolve<Bytef>(task->data_, task->data_size_);
    uLongf n = compressBound(task->data_size_);
    std::vector<Bytef> out(n);
    if (compress2(out.data(), &n, data, task->data_size_, Z_DEFAULT_COMPRESSION) != Z_OK) {
      task->SetReturnCode(-EIO);
      return;
    }
    if (n > task->data_size_) {  // incompressible: it does not fit in place
      task->SetReturnCode(-ENOSPC);
      return;
    }
    std::memcpy(data, out.data(), n);
    task->SetReturnCode(static_cast<int>(n));
"""

ZLIB_DECOMPRESS = """    Bytef *data = rctx.Resolve<Bytef>(task->data_, task->data_size_);
    std::vector<Bytef> in(data, data + task->data_size_);
    uLongf out_n = task->data_size_;
    uLong in_n = in.size();
    int z = uncompress2(data, &out_n, in.data(), &in_n);
    if (z != Z_OK) {
      task->SetReturnCode(z == Z_DATA_ERROR ? -EBADMSG : z == Z_BUF_ERROR ? -ENOSPC : -EIO);
      return;
    }
    task->data_size_ = out_n;
"""

# The seed's "Invoking your mods" program (its main up to the Compress), then a Decompress and
# the check: the buffer holds the original bytes again.
SEED_INVOKE = """int main() {
  CHIMAERA_CLIENT_INIT();
  chi::compressor::Client client;
  client.Create(
      HSHM_MCTX,
      chi::DomainQuery::GetDirectHash(chi::SubDomainId::kGlobalContainers, 0),
      chi::DomainQuery::GetGlobalBcast(), "ipc_test");

  size_t data_size = hshm::Unit<size_t>::Megabytes(1);
  hipc::FullPtr<char> orig_data =
      CHI_CLIENT->AllocateBuffer(HSHM_MCTX, data_size);
"""

EXTERNAL = """#include <cstdio>
#include <cstring>
#include <vector>

#include "compressor/compressor_client.h"

""" + SEED_INVOKE + """  std::vector<char> expect(data_size);
  static const char *words[] = {"chimaera ", "module ", "task ", "lane ", "pool ", "zlib "};
  unsigned x = 7;
  for (size_t i = 0; i < data_size;) {
    x = x * 1103515245u + 12345u;
    for (const char *w = words[(x >> 16) % 6]; *w && i < data_size; w++) expect[i++] = *w;
  }
  std::memcpy(orig_data.ptr_, expect.data(), data_size);
  client.Compress(HSHM_MCTX, chi::DomainQuery::GetLocalHash(0), orig_data.shm_,
                  data_size);
  if (static_cast<unsigned char>(orig_data.ptr_[0]) != 0x78 ||
      std::memcmp(orig_data.ptr_, expect.data(), data_size) == 0) {
    std::printf("Compress wrote no zlib stream\\n");
    return 1;
  }
  client.Decompress(HSHM_MCTX, chi::DomainQuery::GetLocalHash(0), orig_data.shm_,
                    data_size);
  if (std::memcmp(orig_data.ptr_, expect.data(), data_size) != 0) {
    std::printf("the round trip differs\\n");
    return 1;
  }
  std::printf("round trip ok: %zu bytes\\n", data_size);
  return 0;
}
"""

EXTERNAL_CMAKE = """cmake_minimum_required(VERSION 3.25)
project(external)

find_package(Chimaera CONFIG REQUIRED)
find_package(Example CONFIG REQUIRED)

add_executable(external external.cc)
target_link_libraries(external example::compressor_client)
"""


def test_the_pasted_code_is_the_seeds():
    """Every block pasted below appears in the seed's chapter as it is (the Server methods
    without the zlib bodies)."""
    if not SEED_DOC.exists():
        pytest.skip(f"the seed documentation is not at {SEED_DOC} (set CHI_SEED_DOC)")
    doc = SEED_DOC.read_text()
    for block in (SEED_CREATE_PARAMS, SEED_COMPRESS_TASK, SEED_DECOMPRESS_TASK,
                  SEED_CLIENT_CREATE, SEED_CLIENT_COMPRESS, SEED_CLIENT_DECOMPRESS,
                  SEED_SERVER_CREATE, SEED_INVOKE, EXTERNAL_CMAKE,
                  SEED_SERVER_COMPRESS.replace("{body}", ""),
                  SEED_SERVER_DECOMPRESS.replace("{body}", "")):
        assert block in doc, f"not in {SEED_DOC}:\n{block}"


def region(path, name, body):
    """Replaces the body of the CHI_BEGIN(name) ... CHI_END(name) region of path."""
    lines = path.read_text().split("\n")
    begin = next(i for i, l in enumerate(lines) if l.strip().startswith(f"CHI_BEGIN({name})"))
    end = next(i for i, l in enumerate(lines) if l.strip() == f"CHI_END({name})")
    path.write_text("\n".join(lines[:begin + 1] + body.split("\n") + lines[end:]))


def regions_of(path):
    return re.findall(r"^\s*CHI_BEGIN\((\w+)\)", path.read_text(), re.M)


def build(src, build_dir, *args, target=None, timeout=900):
    build_dir.mkdir(parents=True, exist_ok=True)
    rc, out = run(["cmake", src, *args], cwd=build_dir, timeout=300)
    assert rc == 0, f"cmake {src} failed:\n{out}"
    cmd = ["make", "-j2"] + ([target] if target else [])
    rc, out2 = run(cmd, cwd=build_dir, timeout=timeout)
    assert rc == 0, f"make in {build_dir} failed:\n{out2}"
    return out + out2


@pytest.fixture(scope="module")
def kit():
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed (`make deps` installs it)")
    require_staged()
    for t in ("chi_make_repo", "chi_make_mod", "chi_refresh_repo"):
        assert (BIN / t).is_symlink(), f"{BIN / t} is not installed"


def test_the_seeds_chapter_with_lang_cpp(kit, tmp_path, daemons, monkeypatch):
    home = tmp_path
    tool("chi_make_repo", "my_mod_repo", "example", cwd=home)
    out = tool("chi_make_mod", "my_mod_repo/compressor", "--lang", "cpp", cwd=home)
    repo = home / "my_mod_repo"
    mod = repo / "compressor"
    inc = mod / "include" / "compressor"
    for rel in ("chimaera_mod.yaml", "CMakeLists.txt", "include/compressor/compressor_client.h",
                "include/compressor/compressor_lib_exec.h",
                "include/compressor/compressor_methods.h",
                "include/compressor/compressor_methods.yaml",
                "include/compressor/compressor_tasks.h", "src/compressor_client.cc",
                "src/compressor_runtime.cc"):
        assert (mod / rel).is_file(), f"chi_make_mod wrote no {rel}:\n{out}"
    assert "language: cpp" in (mod / "chimaera_mod.yaml").read_text()
    for f in ("compressor_tasks.h", "compressor_client.h"):
        assert regions_of(inc / f) == ["Create", "Destroy"], (f, (inc / f).read_text())
    assert regions_of(mod / "src/compressor_runtime.cc") == ["Create", "Destroy"]

    # "Try compiling": the skeleton builds as it is.
    prefix = home / "prefix"
    cfg = [f"-DCMAKE_PREFIX_PATH={STAGE}", f"-DCMAKE_INSTALL_PREFIX={prefix}"]
    build("..", repo / "build", *cfg)

    # Declare the tasks and refresh.
    y = inc / "compressor_methods.yaml"
    y.write_text(y.read_text().replace("# kCustom: 10\n", "kCompress: 10\nkDecompress: 11\n"))
    tool("chi_refresh_repo", "my_mod_repo", cwd=home)
    for f in (inc / "compressor_tasks.h", inc / "compressor_client.h",
              mod / "src/compressor_runtime.cc"):
        assert regions_of(f) == ["Create", "Destroy", "Compress", "Decompress"], f.read_text()
    methods_h = (inc / "compressor_methods.h").read_text()
    assert "TASK_METHOD_T kCompress = 10;" in methods_h and "kDecompress = 11;" in methods_h
    assert "struct DecompressTask : public Task, TaskFlags<TF_SRL_SYM>" in \
        (inc / "compressor_tasks.h").read_text()
    before = snapshot(repo)
    out = tool("chi_refresh_repo", "my_mod_repo", cwd=home)
    assert "up to date" in out and snapshot(repo) == before, out

    # Paste the seed's code.
    tasks = inc / "compressor_tasks.h"
    region(tasks, "Create", "/** A task to create compressor */\n" + SEED_CREATE_PARAMS)
    region(tasks, "Compress", SEED_COMPRESS_TASK)
    region(tasks, "Decompress", SEED_DECOMPRESS_TASK)
    client = inc / "compressor_client.h"
    region(client, "Create", SEED_CLIENT_CREATE)
    region(client, "Compress", SEED_CLIENT_COMPRESS)
    region(client, "Decompress", SEED_CLIENT_DECOMPRESS)
    server = mod / "src" / "compressor_runtime.cc"
    region(server, "Create", SEED_SERVER_CREATE)
    region(server, "Compress", SEED_SERVER_COMPRESS.replace("{body}", ZLIB_COMPRESS))
    region(server, "Decompress", SEED_SERVER_DECOMPRESS.replace("{body}", ZLIB_DECOMPRESS))
    text = server.read_text()
    server.write_text("#include <zlib.h>\n\n#include <cerrno>\n#include <cstring>\n#include <vector>\n\n"
                      + text)
    cm = mod / "CMakeLists.txt"
    text = cm.read_text()
    assert "  CLIENT_SOURCES src/compressor_client.cc)" in text, text
    cm.write_text("find_package(ZLIB REQUIRED)\n" + text.replace(
        "  CLIENT_SOURCES src/compressor_client.cc)",
        "  CLIENT_SOURCES src/compressor_client.cc\n  LINK_LIBRARIES ZLIB::ZLIB)"))

    # Compile + install: `cmake ..` reruns the refresh (the tasks header changed), which reads
    # the field names from the pasted Serialize functions.
    build("..", repo / "build", *cfg, target="install")
    lib_exec = (inc / "compressor_lib_exec.h").read_text()
    assert '{"data_", "data_size_"}' in lib_exec and '{"compress_id_"}' in lib_exec, lib_exec
    before = snapshot(repo)
    out = tool("chi_refresh_repo", "my_mod_repo", cwd=home)
    assert "up to date" in out and snapshot(repo) == before, out
    moddir = prefix / "lib" / "chimaera"
    assert (moddir / "libexample_compressor.so").exists()

    # A runtime that loads the module at start, and the seed's program from another project.
    d = daemons.start(config={"runtime": {"shm_size": "64M", "module_path": [str(moddir)],
                                          "modules": ["example_compressor"]}})
    ext = home / "external"
    ext.mkdir()
    (ext / "external.cc").write_text(EXTERNAL)
    (ext / "CMakeLists.txt").write_text(EXTERNAL_CMAKE)
    build("..", ext / "build", f"-DCMAKE_PREFIX_PATH={STAGE};{prefix}")
    rc, out = run([ext / "build" / "external"], env=d.env, timeout=120)
    assert rc == 0 and "round trip ok: 1048576 bytes" in out, f"{out}\nlog:\n{d.log()}"

    # The same module from Python, by name.
    monkeypatch.setenv("CHI_MODULE_PATH", f"{moddir}:{STAGE / 'lib' / 'chimaera'}")
    from test_remote_decompress import real_bytes
    blob = real_bytes(MiB)
    with chimaera.Client(segment=d.segment, mode="attach") as c:
        pool = c.pool("ipc_test")
        with c.buffer(MiB) as buf:
            buf.view[:] = blob
            r = pool.call("Compress", data=buf, timeout=60)
            assert 0 < r.rc < MiB and zlib.decompress(bytes(buf.view[:r.rc])) == blob, r.rc
            r = pool.call("Decompress", data=buf, timeout=60)
            assert r.data_size == MiB and bytes(buf.view) == blob

    # Its Decompress on another node's container: DT_EXPOSE in, DT_WRITE back.
    from test_cluster import Cluster
    from test_cpp_module import placement
    cl = Cluster(daemons, 2)
    for node in cl.nodes:
        text = node.config.read_text()
        node.config.write_text(text.replace("runtime:\n", f"runtime:\n  module_path: [{moddir}]\n", 1))
    cl.start()
    packed = zlib.compress(blob)
    with chimaera.Client(segment=cl.node(1).segment, mode="attach") as c:
        pool = c.create_pool("example_compressor", "two", containers_per_node=1)
        held, _ = placement(cl.node(1), "two")
        far = next(k for k, n in held.items() if n == 2)
        with c.buffer(MiB) as buf:
            buf.view[:len(packed)] = packed
            r = pool.call("Decompress", data=buf, dq=chimaera.dq_direct_id(
                chimaera.SUBDOMAIN_GLOBAL_CONTAINERS, far), timeout=60)
            assert r.data_size == MiB and bytes(buf.view) == blob, "remote Decompress"
        _, status = placement(cl.node(2), "two")
        assert {m["method"]: m["completed"] for m in status["methods"]}["Decompress"] == 1


def test_refresh_edits_cpp_modules_as_it_edits_c_ones(kit, tmp_path):
    tool("chi_make_repo", "repo", "example", cwd=tmp_path)
    tool("chi_make_mod", "repo/calc", "--lang", "cpp", cwd=tmp_path)
    repo = tmp_path / "repo"
    mod = repo / "calc"
    y = mod / "include" / "calc" / "calc_methods.yaml"
    base = y.read_text()
    y.write_text(base + "kAdd: 10\nkSub: 11\n")
    tool("chi_refresh_repo", "repo", cwd=tmp_path)
    files = [mod / "include/calc/calc_tasks.h", mod / "include/calc/calc_client.h",
             mod / "src/calc_runtime.cc"]
    for f in files:
        assert regions_of(f) == ["Create", "Destroy", "Add", "Sub"], f.read_text()
    # Add is edited (in the tasks header), Sub is not.
    region(files[0], "Add", "struct AddTask : public Task, TaskFlags<TF_LOCAL> {\n"
           "  IN u32 a_;\n  explicit AddTask(const hipc::CtxAllocator<CHI_ALLOC_T> &alloc)"
           " : Task(alloc) {}\n};")
    y.write_text(base)
    rc, out = run([BIN / "chi_refresh_repo", "repo"], cwd=tmp_path, timeout=60)
    assert rc == 0, out
    # Sub's untouched regions are gone everywhere, Add's untouched ones too; the edited one is
    # kept, with a warning naming its file and line.
    assert regions_of(files[0]) == ["Create", "Destroy", "Add"]
    assert regions_of(files[1]) == ["Create", "Destroy"] == regions_of(files[2])
    m = re.search(r"calc_tasks\.h:(\d+): warning: the CHI_BEGIN\(Add\) region holds code", out)
    assert m, out
    line = files[0].read_text().split("\n")[int(m.group(1)) - 1]
    assert line.strip().startswith("CHI_BEGIN(Add)"), line
    assert "kAdd" not in (mod / "include/calc/calc_methods.h").read_text()
    assert "Server::Add" not in (mod / "include/calc/calc_lib_exec.h").read_text()

    # Malformed YAML: the line is named, and nothing is written.
    before = snapshot(repo)
    y.write_text(base + "kMul: [10\n")
    rc, out = run([BIN / "chi_refresh_repo", "repo"], cwd=tmp_path, timeout=60)
    assert rc != 0 and re.search(r"calc_methods\.yaml:\d+:", out), out
    after = snapshot(repo)
    after.pop("calc/include/calc/calc_methods.yaml")
    before.pop("calc/include/calc/calc_methods.yaml")
    assert after == before, "a failed refresh wrote files"
    # Params belong in the task struct for a C++ module.
    y.write_text(base + "kMul:\n  id: 12\n  params:\n    a: in u32\n")
    rc, out = run([BIN / "chi_refresh_repo", "repo"], cwd=tmp_path, timeout=60)
    assert rc != 0 and "calc_methods.yaml:" in out and "MulTask" in out, out


def test_walkthrough_shows_what_this_test_runs():
    """docs/modules.md's C++ section: its commands, declarations and code are the ones run
    here."""
    doc = (REPO / "docs" / "modules.md").read_text()
    doc = doc[doc.index("## A module in C++, the seed's way"):]
    for snippet in (
        "chi_make_repo my_mod_repo example",
        "chi_make_mod my_mod_repo/compressor --lang cpp",
        "chi_refresh_repo my_mod_repo",
        "kCompress: 10\nkDecompress: 11\n",
        "  void Compress(CompressTask *task, RunContext &rctx) {\n" + ZLIB_COMPRESS + "  }",
        "  void Decompress(DecompressTask *task, RunContext &rctx) {\n" + ZLIB_DECOMPRESS + "  }",
        "  CLIENT_SOURCES src/compressor_client.cc\n  LINK_LIBRARIES ZLIB::ZLIB)",
        "modules: [example_compressor]",
        'pool.call("Compress", data=buf)',
        'pool.call("Decompress", data=buf)',
        "find_package(Example CONFIG REQUIRED)",
        "target_link_libraries(external example::compressor_client)",
    ):
        assert snippet in doc, f"docs/modules.md's C++ section lacks:\n{snippet}"
    # The Serialize functions it shows are the seed's structs' (pasted above).
    blocks = re.findall(r"```cpp\n(  /\*\* \(De\)serialize.*?)```", doc, re.S)
    assert len(blocks) == 2, blocks
    for block in blocks:
        assert block.rstrip("\n") in SEED_COMPRESS_TASK + SEED_DECOMPRESS_TASK, block
