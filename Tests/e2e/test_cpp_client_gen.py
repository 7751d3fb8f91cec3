"""Generated C++ clients for C and Swift modules (issue 17): chi_refresh_repo writes
include/NAME/NAME_cpp_client.h, a seed-shaped chi::NAME::Client (Create, one sync call and the
CHI_TASK_METHODS family per method, over C++ task structs laid out as the C ones), which
NAME_client.h includes in C++17. The repo of test_devkit (a C module calc and a Swift module
greeter, classic and plain methods, bulk buffers, strings, create params) is built and
installed; a C++ program in another CMake project, linking example::calc_client and
example::greeter_client, drives both modules through chi::calc::Client and
chi::greeter::Client against a daemon."""

import shutil

import pytest

from conftest import CXX, STAGE, run
from test_devkit import (CALC_CODE, CMAKE_C_FLAGS, GREETER_CODE, cmake, fill, make_repo,
                         need_cmake, snapshot, tool)

PROGRAM = r"""#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <calc/calc_client.h>
#include <greeter/greeter_client.h>

#define CHECK(cond)                                                             \
  do {                                                                          \
    if (!(cond)) {                                                              \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::exit(1);                                                             \
    }                                                                           \
  } while (0)

int main() {
  CHIMAERA_CLIENT_INIT();
  auto dq0 = chi::DomainQuery::GetDirectId(chi::SubDomainId::kGlobalContainers, 0);
  auto dq1 = chi::DomainQuery::GetDirectId(chi::SubDomainId::kGlobalContainers, 1);

  // A C module: create params, in/out/inout fields, sync and async calls.
  chi::calc::Client calc;
  calc.Create(HSHM_MCTX,
              chi::DomainQuery::GetDirectHash(chi::SubDomainId::kGlobalContainers, 0),
              chi::DomainQuery::GetGlobalBcast(), "cpp_calc", chi::CreateContext(2), 5);
  chi::calc::AddTask r = calc.Add(HSHM_MCTX, dq0, 40, -3, 7);
  CHECK(r.sum == 42 && r.calls == 8);
  hipc::FullPtr<chi::calc::AddTask> t = calc.AsyncAdd(HSHM_MCTX, dq1, 1, 2, 0);
  t->Wait();
  CHECK(t->sum == 8 && t->calls == 1);
  CHI_CLIENT->DelTask(HSHM_MCTX, t);
  std::printf("calc Add: %lld, calls %u\n", static_cast<long long>(r.sum), r.calls);

  // Its plain method (through libffi in the runtime): bulk buffers in and out.
  const size_t n = 1 << 20, cap = 4096;
  hipc::FullPtr<char> data = CHI_CLIENT->AllocateBuffer(HSHM_MCTX, n);
  hipc::FullPtr<char> out = CHI_CLIENT->AllocateBuffer(HSHM_MCTX, cap);
  unsigned char *in = reinterpret_cast<unsigned char *>(data.ptr_);
  for (size_t i = 0; i < n; i++) in[i] = static_cast<unsigned char>(i * 131u + (i >> 9));
  unsigned long long h = 1469598103934665603ull ^ 1234u;
  for (size_t i = 0; i < n; i++) h = (h ^ in[i]) * 1099511628211ull;
  chi::calc::DigestTask d = calc.Digest(HSHM_MCTX, dq1, data.shm_, n, 1234u, 0.25, out.shm_, cap);
  CHECK(d.GetReturnCode() == static_cast<int>(cap));
  CHECK(d.sum == h && d.total == n * 0.25 && std::strcmp(d.label, "digest:1048576") == 0);
  for (size_t i = 0; i < cap; i++)
    CHECK(static_cast<unsigned char>(out.ptr_[i]) == in[n - 1 - i]);
  std::printf("calc Digest: %s, %d bytes out\n", d.label, d.GetReturnCode());
  CHI_CLIENT->FreeBuffer(HSHM_MCTX, data);
  CHI_CLIENT->FreeBuffer(HSHM_MCTX, out);

  // A Swift module: strings in and out, and a plain method.
  chi::greeter::Client greeter;
  greeter.Create(HSHM_MCTX, dq0, chi::DomainQuery::GetGlobalBcast(), "cpp_greeter");
  chi::greeter::HelloTask hi = greeter.Hello(HSHM_MCTX, dq0, "chimaera");
  CHECK(std::strcmp(hi.greeting, "hello, chimaera") == 0 && hi.calls == 1);
  try {
    greeter.Hello(HSHM_MCTX, dq0, "a name far too long for thirty-two bytes");
    CHECK(false);
  } catch (const chi::Error &e) {
    CHECK(e.code() == -ENAMETOOLONG);
  }
  CHECK(greeter.Scale(HSHM_MCTX, dq0, 2.5, -4).y == -10.0);
  std::printf("greeter Hello: %s\n", hi.greeting);

  calc.Destroy(HSHM_MCTX, dq0);
  greeter.Destroy(HSHM_MCTX, dq0);
  std::printf("cpp client: all checks passed\n");
  return 0;
}
"""

PROGRAM_CMAKE = """cmake_minimum_required(VERSION 3.16)
project(cpp_client LANGUAGES CXX)
set(CMAKE_CXX_STANDARD 17)

find_package(Chimaera CONFIG REQUIRED)
find_package(Example CONFIG REQUIRED)

add_executable(cpp_client client.cc)
target_link_libraries(cpp_client PRIVATE example::calc_client example::greeter_client)
"""


def test_generated_cpp_clients_drive_a_c_and_a_swift_module(tmp_path, daemons):
    need_cmake()
    if shutil.which("swift") is None:
        pytest.skip("swift is not installed: the Swift module cannot be built")
    repo = make_repo(tmp_path)
    for mod in ("calc", "greeter"):
        assert (repo / mod / "include" / mod / f"{mod}_cpp_client.h").exists()
    runtime_c = repo / "calc/src/calc_runtime.c"
    for region, code in CALC_CODE.items():
        fill(runtime_c, region, code)
    runtime_c.write_text(runtime_c.read_text().replace("#include <stdlib.h>",
                                                       "#include <stdio.h>\n#include <stdlib.h>"))
    runtime_swift = repo / "greeter/Sources/greeter/greeter_runtime.swift"
    for region, code in GREETER_CODE.items():
        fill(runtime_swift, region, code)
    before = snapshot(repo)
    out = tool("chi_refresh_repo", "repo", cwd=tmp_path)
    assert "up to date" in out and snapshot(repo) == before, out

    # The headers compile as C++17 with every warning an error (the C++ client included).
    probe = tmp_path / "probe.cc"
    probe.write_text("#include <calc/calc_client.h>\n#include <greeter/greeter_client.h>\n"
                     "static_assert(sizeof(chi::calc::AddTask) == sizeof(calc_add_task_t));\n")
    rc, out = run([CXX, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only",
                   f"-I{STAGE}/include", f"-I{repo}/calc/include", f"-I{repo}/greeter/include",
                   probe], timeout=60)
    assert rc == 0, f"the generated C++ clients do not compile:\n{out}"

    inst = tmp_path / "inst"
    cmake(repo, tmp_path / "build", f"-DCMAKE_PREFIX_PATH={STAGE}",
          f"-DCMAKE_INSTALL_PREFIX={inst}", f"-DCMAKE_C_FLAGS={CMAKE_C_FLAGS}", timeout=1200)
    rc, out = run(["cmake", "--install", tmp_path / "build"], timeout=120)
    assert rc == 0, out
    assert (inst / "include/calc/calc_cpp_client.h").exists()

    client = tmp_path / "client"
    client.mkdir()
    (client / "client.cc").write_text(PROGRAM)
    (client / "CMakeLists.txt").write_text(PROGRAM_CMAKE)
    cmake(client, client / "build", f"-DCMAKE_PREFIX_PATH={inst};{STAGE}",
          "-DCMAKE_CXX_FLAGS=-Wall -Wextra -Werror")
    d = daemons.start(config={"runtime": {"shm_size": "256M",
                                          "module_path": [str(inst / "lib/chimaera")]}})
    rc, out = run([client / "build/cpp_client"], env=d.env, timeout=60)
    assert rc == 0 and "cpp client: all checks passed" in out, f"{out}\nlog:\n{d.log()}"
