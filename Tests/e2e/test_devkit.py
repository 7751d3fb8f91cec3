"""The module developer's workflow (docs/modules.md), run from scratch in a temporary directory:
chi_make_repo, chi_make_mod for a C and a Swift module, methods added to the YAML,
chi_refresh_repo, the generated skeletons filled in, a CMake build against the staged
Chimaera, a daemon that loads the modules, and a client built by a separate CMake project
through find_package(Example CONFIG). Also: a second refresh changes nothing, malformed YAML
is refused with its line and changes nothing, removing a method removes its generated parts
and warns about code left behind, and the compressor example round-trips 64 MiB.

Plain-function methods (`style: plain`) are only reachable through the runtime's libffi call:
the generated `run` hook answers -CHI_ENOMETHOD for them, so a correct result proves the
descriptor's handler was called with the task's fields."""

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import CC, CXX, REPO, STAGE, require_staged, run

BIN = STAGE / "bin"
CMAKE_C_FLAGS = "-Wall -Wextra -Werror -pedantic"

# ---- what the test adds to the modules ---------------------------------------------------------

CALC_CREATE = """kCreate:
  id: 0
  params:
    bias: in i64
"""

CALC_METHODS = """
kAdd:
  id: 10
  doc: Returns a + b + the pool's bias; counts calls in both the task and the container.
  params:
    a: in i64
    b: in i64
    sum: out i64
    calls: inout u32
kDigest:
  id: 11
  style: plain
  doc: Hashes data, copies it reversed into out, scales size by weight.
  params:
    data: in bulk(size)
    size: in u64
    seed: in u32
    weight: in f64
    out: out bulk(out_cap) expose
    out_cap: in u64
    sum: out u64
    total: out f64
    label: out str[32]
"""

GREETER_METHODS = """
kHello:
  id: 10
  params:
    name: in str[32]
    greeting: out str[64]
    calls: out u64
kScale:
  id: 11
  style: plain
  params:
    x: in f64
    factor: in i32
    y: out f64
"""

CALC_CODE = {
    "Create": """struct calc_state {
    int64_t bias;
    uint64_t adds;
};

static int Create(chi_container_t *c, const calc_create_params_t *params, calc_state_t **state) {
    calc_state_t *s = calloc(1, sizeof(*s));
    if (s == NULL) return -ENOMEM;
    s->bias = params->bias;
    int rc = chi_container_add_lanes(c, 0, 1, CHI_PRIO_LOW_LATENCY);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *state = s;
    return 0;
}""",
    "Add": """static int Add(calc_state_t *state, calc_add_task_t *task, chi_rctx_t *rctx) {
    (void)rctx;
    task->sum = task->a + task->b + state->bias;
    task->calls += 1;
    state->adds += 1;
    return 0;
}""",
    "Digest": """static int32_t Digest(chi_rctx_t *rctx, const void *data, uint64_t size, uint32_t seed,
                      double weight, void *out, uint64_t out_cap, uint64_t *sum, double *total,
                      char *label) {
    (void)rctx;
    if (data == NULL || out == NULL) return -EINVAL;
    const unsigned char *in = data;
    unsigned char *o = out;
    uint64_t h = 1469598103934665603ull ^ seed;
    for (uint64_t i = 0; i < size; i++) h = (h ^ in[i]) * 1099511628211ull;
    uint64_t n = size < out_cap ? size : out_cap;
    for (uint64_t i = 0; i < n; i++) o[i] = in[size - 1 - i];
    *sum = h;
    *total = (double)size * weight;
    snprintf(label, 32, "digest:%llu", (unsigned long long)size);
    return (int32_t)n;
}""",
}

GREETER_CODE = {
    "Create": """final class State {
    var hellos: UInt64 = 0
}

func create(_ c: OpaquePointer, _ params: greeter_create_params_t) throws(ChiFailure) -> State {
    let rc = chi_container_add_lanes(c, 0, 1, UInt32(CHI_PRIO_LOW_LATENCY))
    if rc < 0 { throw ChiFailure(rc) }
    return State()
}""",
    "Hello": """func hello(_ state: State, _ task: UnsafeMutablePointer<greeter_hello_task_t>,
           _ rctx: OpaquePointer) -> Int32 {
    state.hellos += 1
    chiSetString(&task.pointee.greeting, "hello, " + chiString(task.pointee.name))
    task.pointee.calls = state.hellos
    return 0
}""",
    "Scale": """func scale(_ rctx: OpaquePointer, _ x: Double, _ factor: Int32,
           _ y: UnsafeMutablePointer<Double>) -> Int32 {
    y.pointee = x * Double(factor)
    return 0
}""",
}

CLIENT_C = r"""/* The external client: finds the repo with find_package(Example CONFIG). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <calc/calc_client.h>
#include <greeter/greeter_client.h>

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__,         \
                    __LINE__, #cond, chi_last_error());                                     \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

int main(void) {
    chi_client_t *c;
    CHECK(chi_client_init(NULL, &c) == 0);
    CHECK(chi_module_register(c, CALC_MODULE_NAME) == 0);
    CHECK(chi_module_register(c, GREETER_MODULE_NAME) == 0);
    uint64_t calc_pool, greeter_pool;
    CHECK(calc_create(c, "devkit_calc", 2, 5, &calc_pool) == 0);
    CHECK(greeter_create(c, "devkit_greeter", 1, &greeter_pool) == 0);
    chi_domain_query_t dq0 = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 0);
    chi_domain_query_t dq1 = chi_dq_direct_id(CHI_SUBDOMAIN_GLOBAL_CONTAINERS, 1);

    /* Classic C method: in, out and inout fields, create params in the container's state. */
    int64_t sum = 0;
    uint32_t calls = 7;
    CHECK(calc_add(c, calc_pool, dq0, 40, -3, &sum, &calls) == 0);
    CHECK(sum == 42 && calls == 8);
    printf("Add: 40 + -3 + bias 5 = %lld, calls 7 -> %u\n", (long long)sum, calls);
    CHECK(calc_add(c, calc_pool, dq1, 1, 2, &sum, NULL) == 0);
    CHECK(sum == 8);

    /* Plain C method through libffi: a bulk buffer in, a bulk buffer out, scalars and a
     * double by value, and out fields (u64, f64, str) by pointer. */
    const uint64_t n = 1u << 20, cap = 4096;
    unsigned char *data, *out;
    CHECK(chi_buffer_alloc(c, n, (void **)&data) == 0);
    CHECK(chi_buffer_alloc(c, cap, (void **)&out) == 0);
    for (uint64_t i = 0; i < n; i++) data[i] = (unsigned char)(i * 131u + (i >> 9));
    memset(out, 0, cap);
    uint64_t h = 1469598103934665603ull ^ 1234u;
    for (uint64_t i = 0; i < n; i++) h = (h ^ data[i]) * 1099511628211ull;
    uint64_t dsum = 0;
    double total = 0;
    char label[32] = "";
    int rc = calc_digest(c, calc_pool, dq1, data, n, 1234u, 0.25, out, cap, &dsum, &total, label);
    CHECK(rc == (int)cap);
    CHECK(dsum == h);
    CHECK(total == (double)n * 0.25);
    CHECK(strcmp(label, "digest:1048576") == 0);
    for (uint64_t i = 0; i < cap; i++) CHECK(out[i] == data[n - 1 - i]);
    printf("Digest (libffi): sum %016llx, total %.1f, label %s, %d bytes out\n",
           (unsigned long long)dsum, total, label, rc);

    /* A bulk buffer that fails the runtime's bounds check: -EFAULT, handler not called. */
    calc_digest_task_t *t;
    CHECK(calc_digest_new(c, calc_pool, dq0, data, n, 1u, 1.0, out, cap, &t) == 0);
    t->size = 1ull << 60;
    rc = chi_task_call(c, &t->hdr, -1);
    CHECK(rc == -EFAULT);
    CHECK(t->sum == 0 && t->label[0] == 0);
    CHECK(chi_task_del(c, &t->hdr) == 0);
    printf("Digest with an out-of-bounds buffer: %s\n", chi_strerror(rc));

    /* Swift module: a classic method with strings, and a plain one through libffi. */
    char greeting[64];
    uint64_t hellos = 0;
    CHECK(greeter_hello(c, greeter_pool, dq0, "chimaera", greeting, &hellos) == 0);
    CHECK(strcmp(greeting, "hello, chimaera") == 0 && hellos == 1);
    CHECK(greeter_hello(c, greeter_pool, dq0, "swift", greeting, &hellos) == 0);
    CHECK(strcmp(greeting, "hello, swift") == 0 && hellos == 2);
    CHECK(greeter_hello(c, greeter_pool, dq0, "a name far too long for thirty-two bytes", greeting,
                        &hellos) == -ENAMETOOLONG);
    double y = 0;
    CHECK(greeter_scale(c, greeter_pool, dq0, 2.5, -4, &y) == 0);
    CHECK(y == -10.0);
    printf("Hello (Swift): %s, %llu calls; Scale (Swift, libffi): %.1f\n", greeting,
           (unsigned long long)hellos, y);

    CHECK(chi_buffer_free(c, data) == 0);
    CHECK(chi_buffer_free(c, out) == 0);
    /* Destroy runs the modules' Destroy hooks; the next run starts from fresh pools. */
    CHECK(chi_pool_destroy(c, calc_pool) == 0);
    CHECK(chi_pool_destroy(c, greeter_pool) == 0);
    CHECK(chi_client_finalize(c) == 0);
    printf("devkit client: all checks passed\n");
    return 0;
}
"""

CLIENT_CMAKE = """cmake_minimum_required(VERSION 3.16)
project(devkit_client LANGUAGES C)

find_package(Chimaera CONFIG REQUIRED)
find_package(Example CONFIG REQUIRED)

add_executable(devkit_client client.c)
target_link_libraries(devkit_client PRIVATE example::calc_client example::greeter_client)
"""

# ---- helpers ---------------------------------------------------------------------------------


def tool(name, *args, cwd, expect=0):
    """Runs bin/<name> (a symlink to chimaera); returns its output, checking its status."""
    rc, out = run([BIN / name, *args], cwd=cwd, timeout=60)
    if expect is not None:
        assert rc == expect, f"{name} {' '.join(map(str, args))} exited {rc}, not {expect}:\n{out}"
    return out


def fill(path, region, code):
    """Replaces the body of the CHI_BEGIN(region) ... CHI_END(region) region of path."""
    lines = path.read_text().split("\n")
    begin = next(i for i, l in enumerate(lines) if re.search(rf"CHI_BEGIN\({region}\)", l))
    end = next(i for i, l in enumerate(lines) if re.search(rf"CHI_END\({region}\)", l))
    path.write_text("\n".join(lines[:begin + 1] + code.split("\n") + lines[end:]))


def snapshot(root):
    """Every file under root: (sha256, mtime_ns), to prove a command wrote nothing."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(),
                                             p.stat().st_mtime_ns)
    return out


def cmake(src, build, *args, timeout=600):
    rc, out = run(["cmake", "-S", src, "-B", build, *args], timeout=120)
    assert rc == 0, f"cmake configure of {src} failed:\n{out}"
    rc, out2 = run(["cmake", "--build", build, "-j2"], timeout=timeout)
    assert rc == 0, f"cmake build of {src} failed:\n{out2}"
    return out + out2


def make_repo(tmp_path):
    """chi_make_repo + a C module (calc) + a Swift module (greeter), methods added, refreshed."""
    require_staged()
    for t in ("chi_make_repo", "chi_make_mod", "chi_refresh_repo"):
        assert (BIN / t).is_symlink(), f"{BIN / t} is not installed"
    tool("chi_make_repo", "repo", "example", cwd=tmp_path)
    tool("chi_make_mod", "repo/calc", cwd=tmp_path)
    tool("chi_make_mod", "repo/greeter", "--lang", "swift", cwd=tmp_path)
    repo = tmp_path / "repo"
    calc_yaml = repo / "calc/include/calc/calc_methods.yaml"
    text = calc_yaml.read_text()
    text = re.sub(r"^kCreate: 0.*\n", CALC_CREATE, text, flags=re.M)
    calc_yaml.write_text(text + CALC_METHODS)
    greeter_yaml = repo / "greeter/include/greeter/greeter_methods.yaml"
    greeter_yaml.write_text(greeter_yaml.read_text() + GREETER_METHODS)
    out = tool("chi_refresh_repo", "repo", cwd=tmp_path)
    assert "calc/src/calc_runtime.c" in out and "greeter_lib_exec.swift" in out, out
    return repo


def need_cmake():
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed (`make deps` installs it)")


# ---- tests -----------------------------------------------------------------------------------


def test_module_workflow_from_scratch(tmp_path, daemons):
    need_cmake()
    repo = make_repo(tmp_path)
    runtime_c = repo / "calc/src/calc_runtime.c"
    for region, code in CALC_CODE.items():
        fill(runtime_c, region, code)
    # Code outside the regions is the user's too.
    runtime_c.write_text(runtime_c.read_text().replace("#include <stdlib.h>",
                                                       "#include <stdio.h>\n#include <stdlib.h>"))
    runtime_swift = repo / "greeter/Sources/greeter/greeter_runtime.swift"
    for region, code in GREETER_CODE.items():
        fill(runtime_swift, region, code)

    # A second refresh is a no-op, filled-in code and all.
    before = snapshot(repo)
    out = tool("chi_refresh_repo", "repo", cwd=tmp_path)
    assert "up to date" in out, out
    assert snapshot(repo) == before, "a second chi_refresh_repo changed files"

    # The generated client headers compile alone as C99 and as C++.
    probe = tmp_path / "probe.c"
    probe.write_text("#include <calc/calc_client.h>\n#include <greeter/greeter_client.h>\n")
    for cmd in ([CC, "-std=c99"], [CXX, "-x", "c++", "-std=c++11"]):
        rc, out = run([*cmd, "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only",
                       f"-I{STAGE}/include", f"-I{repo}/calc/include", f"-I{repo}/greeter/include",
                       probe], timeout=60)
        assert rc == 0, f"{cmd}: the generated client headers do not compile:\n{out}"

    # Build and install with CMake against the staged Chimaera (the Swift module via SwiftPM).
    inst = tmp_path / "inst"
    cmake(repo, tmp_path / "build", f"-DCMAKE_PREFIX_PATH={STAGE}",
          f"-DCMAKE_INSTALL_PREFIX={inst}", f"-DCMAKE_C_FLAGS={CMAKE_C_FLAGS}")
    rc, out = run(["cmake", "--install", tmp_path / "build"], timeout=120)
    assert rc == 0, out
    for rel in ("lib/chimaera/libexample_calc.so", "lib/chimaera/libexample_greeter.so",
                "include/calc/calc_client.h", "include/greeter/greeter_client.h",
                "lib/cmake/Example/ExampleConfig.cmake", "lib/pkgconfig/example_calc.pc"):
        assert (inst / rel).exists(), f"{rel} was not installed"

    # The client: a separate CMake project that finds the repo as a package.
    client = tmp_path / "client"
    client.mkdir()
    (client / "client.c").write_text(CLIENT_C)
    (client / "CMakeLists.txt").write_text(CLIENT_CMAKE)
    cmake(client, client / "build", f"-DCMAKE_PREFIX_PATH={inst};{STAGE}",
          f"-DCMAKE_C_FLAGS={CMAKE_C_FLAGS}")

    # ... and the same client built with pkg-config alone.
    pc_env = dict(os.environ, PKG_CONFIG_PATH=f"{inst}/lib/pkgconfig:{STAGE}/lib/pkgconfig")
    rc, flags = run(["pkg-config", "--cflags", "--libs", "example_calc", "example_greeter"],
                    env=pc_env, timeout=30)
    assert rc == 0, f"pkg-config example_calc example_greeter failed:\n{flags}"
    pc_client = tmp_path / "pc_client"
    rc, out = run([CC, "-std=c11", *CMAKE_C_FLAGS.split(), client / "client.c", "-o", pc_client,
                   *flags.split(), f"-Wl,-rpath,{STAGE}/lib"], timeout=120)
    assert rc == 0, f"the pkg-config build ({flags.strip()}) failed:\n{out}"

    d = daemons.start(config={"runtime": {"shm_size": "256M",
                                          "module_path": [str(inst / "lib/chimaera")]}})
    for binary in (client / "build/devkit_client", pc_client):
        rc, out = run([binary], env=d.env, timeout=60)
        assert rc == 0, f"{binary.name} exited {rc}:\n{out}\ndaemon log:\n{d.log()}"
        assert "all checks passed" in out
    print(out)


BAD_YAML = [
    # (id, text appended to calc's YAML, line offset of the fault in the appended text, message)
    ("duplicate-id", "kAdd: 10\nkSub: 10\n", 2, "kSub has id 10, already used by kAdd"),
    ("reserved-id", "kAdd: 7\n", 1, "id 7 of kAdd is reserved"),
    ("bad-name", "kAdd: 10\nadd_more: 11\n", 2, "bad method name \"add_more\""),
    ("lowercase-name", "kadd: 10\n", 1, "bad method name \"kadd\""),
    ("duplicate-key", "kAdd: 10\nkAdd: 11\n", 2, "kAdd is declared twice"),
    ("bad-param-type", "kAdd:\n  id: 10\n  params:\n    a: in int128\n", 4, "unknown type \"int128\""),
    ("bulk-size-missing", "kAdd:\n  id: 10\n  params:\n    data: in bulk(len)\n", 4,
     "names its size \"len\", which is not a parameter"),
    ("yaml-syntax", "kAdd: [10\n", 1, "invalid YAML"),
]


@pytest.mark.parametrize("case", BAD_YAML, ids=[c[0] for c in BAD_YAML])
def test_malformed_yaml_names_the_line_and_changes_nothing(tmp_path, case):
    _, extra, offset, message = case
    repo = make_repo(tmp_path)
    calc_yaml = repo / "calc/include/calc/calc_methods.yaml"
    base = re.sub(r"^kAdd:.*\Z", "", calc_yaml.read_text(), flags=re.M | re.S)
    calc_yaml.write_text(base + extra)
    line = base.count("\n") + offset
    before = snapshot(repo)
    out = tool("chi_refresh_repo", "repo", cwd=tmp_path, expect=1)
    assert f"calc_methods.yaml:{line}: " in out, f"no line {line} in:\n{out}"
    assert message in out, out
    assert "nothing was changed" in out
    assert snapshot(repo) == before, "a refused refresh changed files"


def test_removing_a_method_removes_its_generated_parts_and_keeps_user_code(tmp_path):
    repo = make_repo(tmp_path)
    runtime_c = repo / "calc/src/calc_runtime.c"
    fill(runtime_c, "Add", CALC_CODE["Add"])
    calc_yaml = repo / "calc/include/calc/calc_methods.yaml"
    text = calc_yaml.read_text()
    calc_yaml.write_text(text[:text.index("kAdd:")])
    out = tool("chi_refresh_repo", "repo", cwd=tmp_path)
    src = runtime_c.read_text()
    line = next(i + 1 for i, l in enumerate(src.split("\n")) if "CHI_BEGIN(Add)" in l)
    assert f"calc_runtime.c:{line}: warning:" in out and "Add" in out, out
    assert "task->sum = task->a + task->b" in src, "user code for Add was removed"
    assert "CHI_BEGIN(Digest)" not in src, "the untouched Digest skeleton was left behind"
    for rel in ("calc/include/calc/calc_tasks.h", "calc/include/calc/calc_client.h",
                "calc/include/calc/calc_methods.h", "calc/src/calc_lib_exec.h"):
        text = (repo / rel).read_text()
        assert "calc_add" not in text and "calc_digest" not in text, f"{rel} still has them"
    # The warning repeats, but nothing else changes.
    before = snapshot(repo)
    out = tool("chi_refresh_repo", "repo", cwd=tmp_path)
    assert "warning:" in out and snapshot(repo) == before


def test_changed_params_update_untouched_skeletons_only(tmp_path):
    repo = make_repo(tmp_path)
    runtime_c = repo / "calc/src/calc_runtime.c"
    fill(runtime_c, "Add", CALC_CODE["Add"])
    calc_yaml = repo / "calc/include/calc/calc_methods.yaml"
    calc_yaml.write_text(calc_yaml.read_text().replace("    label: out str[32]\n",
                                                       "    label: out str[32]\n    flag: in bool\n")
                         .replace("    calls: inout u32\n", "    calls: inout u32\n    c: in i64\n"))
    tool("chi_refresh_repo", "repo", cwd=tmp_path)
    src = runtime_c.read_text()
    assert re.search(r"char \*label,\s+bool flag\)", src), src
    assert "task->sum = task->a + task->b + state->bias;" in src
    tasks = (repo / "calc/include/calc/calc_tasks.h").read_text()
    assert "int64_t c;" in tasks and "bool flag;" in tasks


EVERY_KIND = """kCreate:
  id: 0
  params:
    level: in i32
    tag: in str[16]
    key: in bytes[8]
    on: in bool
kDestroy: 1
kNodeFailure: 2
kRecover: 3
kMigrate: -1
kUpgrade: 5
kScalars:
  id: 10
  periodic: true
  params:
    a: in u8
    b: in u16
    c: inout u32
    d: out u64
    e: in i8
    f: in i16
    g: inout i32
    h: out i64
    x: in f32
    y: inout f64
    z: out bool
kBlobs:
  id: 11
  params:
    s_in: in str[8]
    s_io: inout str[8]
    s_out: out str[8]
    b_in: in bytes[4]
    b_io: inout bytes[4]
    b_out: out bytes[4]
    p: in shm_ptr
    p_io: inout shm_ptr
    q: in domain_query
    q_out: out domain_query
    buf: inout bulk(n) write expose
    n: inout u64
kPlainEverything:
  id: 12
  style: plain
  params:
    a: in u8
    c: inout u32
    d: out u64
    x: in f32
    z: out bool
    s_in: in str[8]
    s_out: out str[8]
    b_in: in bytes[4]
    b_io: inout bytes[4]
    p: in shm_ptr
    q: in domain_query
    q_out: out domain_query
    buf: inout bulk(n)
    n: in u32
    ro: in bulk(n)
    wo: out bulk(n) expose
kEmpty: 4095
"""


def test_every_field_kind_and_hook_generates_code_that_compiles(tmp_path):
    """Every type, direction and style, and the optional hooks, in a C and a Swift module:
    the untouched skeletons build warning-free (and the Swift one with SwiftPM)."""
    need_cmake()
    require_staged()
    tool("chi_make_repo", "repo", "kinds", cwd=tmp_path)
    tool("chi_make_mod", "repo/cmod", cwd=tmp_path)
    tool("chi_make_mod", "repo/smod", "--lang", "swift", cwd=tmp_path)
    repo = tmp_path / "repo"
    for mod in ("cmod", "smod"):
        (repo / f"{mod}/include/{mod}/{mod}_methods.yaml").write_text(EVERY_KIND)
    tool("chi_refresh_repo", "repo", cwd=tmp_path)
    cmake(repo, tmp_path / "build", f"-DCMAKE_PREFIX_PATH={STAGE}",
          f"-DCMAKE_C_FLAGS={CMAKE_C_FLAGS}")
    for mod in ("cmod", "smod"):
        assert (tmp_path / f"build/chimaera_modules/libkinds_{mod}.so").exists()
    probe = tmp_path / "probe.c"
    probe.write_text("#include <cmod/cmod_client.h>\n#include <smod/smod_client.h>\n")
    for cmd in ([CC, "-std=c99"], [CXX, "-x", "c++", "-std=c++11"]):
        rc, out = run([*cmd, "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only",
                       f"-I{STAGE}/include", f"-I{repo}/cmod/include", f"-I{repo}/smod/include",
                       probe], timeout=60)
        assert rc == 0, f"{cmd}: the generated client headers do not compile:\n{out}"


def test_walkthrough_shows_what_these_tests_run():
    """docs/modules.md: its commands, declarations and code are the ones run here."""
    doc = (REPO / "docs/modules.md").read_text()
    snippets = [CALC_CREATE, CALC_METHODS, GREETER_METHODS, CLIENT_CMAKE,
                *CALC_CODE.values(), *GREETER_CODE.values()]
    for snippet in snippets:
        assert snippet.strip() in doc, f"docs/modules.md lacks:\n{snippet}"
    for cmd in ("chi_make_repo repo example", "chi_make_mod repo/calc",
                "chi_make_mod repo/greeter --lang swift", "chi_refresh_repo repo",
                "cmake -S repo -B build", "cmake --install build"):
        assert cmd in doc, f"docs/modules.md lacks `{cmd}`"


def test_compressor_example_round_trips_64_mib(tmp_path, daemons):
    """examples/compressor: in sync with its YAML, builds with CMake, and compress_test
    round-trips 64 MiB of real data (files from /usr) through Compress and Decompress."""
    need_cmake()
    require_staged()
    src = REPO / "examples/compressor"
    copy = tmp_path / "compressor"
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("build*"))
    out = tool("chi_refresh_repo", copy, cwd=tmp_path)
    assert "up to date" in out, f"examples/compressor is stale; run chi_refresh_repo on it:\n{out}"

    inst = tmp_path / "inst"
    cmake(copy, tmp_path / "build", f"-DCMAKE_PREFIX_PATH={STAGE}",
          f"-DCMAKE_INSTALL_PREFIX={inst}", f"-DCMAKE_C_FLAGS={CMAKE_C_FLAGS}")
    rc, out = run(["cmake", "--install", tmp_path / "build"], timeout=120)
    assert rc == 0, out
    cmake(copy / "external", tmp_path / "external", f"-DCMAKE_PREFIX_PATH={inst};{STAGE}",
          f"-DCMAKE_C_FLAGS={CMAKE_C_FLAGS}")

    # 64 MiB of real data: the files under /usr/lib and /usr/share, in a fixed order.
    want = 64 << 20
    chunks, size = [], 0
    for root in ("/usr/lib", "/usr/share"):
        for p in sorted(Path(root).rglob("*")):
            if size >= want:
                break
            try:
                if p.is_symlink() or not p.is_file():
                    continue
                chunk = p.read_bytes()[: want - size]
            except OSError:
                continue
            chunks.append(chunk)
            size += len(chunk)
    assert size > 0, "no readable files under /usr/lib or /usr/share"
    blob = b"".join(chunks)
    blob = (blob * (want // len(blob) + 1))[:want]
    data = tmp_path / "data.bin"
    data.write_bytes(blob)

    d = daemons.start(config={"runtime": {"shm_size": "512M",
                                          "module_path": [str(inst / "lib/chimaera")]}})
    rc, out = run([inst / "bin/compress_test", data], env=d.env, timeout=300)
    assert rc == 0, f"compress_test exited {rc}:\n{out}\ndaemon log:\n{d.log()}"
    assert "67108864 bytes round-tripped" in out, out
    print(out)
    rc, out = run([tmp_path / "external/external"], env=d.env, timeout=60)
    assert rc == 0, f"external exited {rc}:\n{out}"
    print(out)
