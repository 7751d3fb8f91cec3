/* client_example.cc: the seed's "Client API Example" with the C++ binding. Registers the
 * small_message module, creates the pool "ipc_test", runs 256 synchronous Md calls spread over
 * the pool's containers by direct hash (each returns 1), then 256 asynchronous ones, a
 * broadcast, and a 1 MiB buffer round trip, and prints the latency. Errors are chi::Error
 * exceptions carrying the C library's code and message.
 *
 * Build (installed prefix; the headers are C++11, header-only over libchimaera.so):
 *   c++ -std=c++11 -O2 client_example.cc $(pkg-config --cflags --libs chimaera) -o client_example
 * or with CMake: find_package(Chimaera CONFIG REQUIRED), see CMakeLists.txt beside this file.
 * Run against a daemon:
 *   chimaera start --segment demo --detach --pid-file /tmp/chimaera.pid
 *   CHIMAERA_SEGMENT=demo ./client_example
 *   chimaera stop --segment demo
 */
#include <cstdio>
#include <cstring>
#include <vector>

#include "chimaera/api/chimaera_client.h"
#include "chimaera_admin/chimaera_admin_client.h"
#include "small_message/small_message_client.h"

CHI_NAMESPACE_INIT

static int Run() {
    CHIMAERA_CLIENT_INIT();
    CHI_ADMIN->RegisterModule(HSHM_MCTX, DomainQuery::GetGlobalBcast(), "small_message");
    chi::small_message::Client client;
    client.Create(HSHM_MCTX, DomainQuery::GetDirectHash(SubDomainId::kGlobalContainers, 0),
                  DomainQuery::GetGlobalBcast(), "ipc_test");

    const size_t ops = 256;
    const u32 depth = 0;
    HILOG(kInfo, "OPS: {}", ops);
    hshm::Timer t;
    t.Resume();
    for (size_t i = 0; i < ops; ++i) {
        int ret = client.Md(HSHM_MCTX,
                            DomainQuery::GetDirectHash(SubDomainId::kGlobalContainers, i),
                            depth, 0);
        if (ret != 1) {
            HILOG(kError, "Md #{} returned {}, expected 1", i, ret);
            return 1;
        }
    }
    t.Pause();
    HILOG(kInfo, "Latency: {} MOps, {} MTasks", ops / t.GetUsec(),
          ops * (depth + 1) / t.GetUsec());

    // The same calls in flight together: each TaskPtr frees its task when it goes.
    hshm::Timer ta;
    ta.Resume();
    std::vector<TaskPtr<chi::small_message::MdTask> > tasks;
    for (size_t i = 0; i < ops; ++i)
        tasks.push_back(client.AsyncMd(
            HSHM_MCTX, DomainQuery::GetDirectHash(SubDomainId::kGlobalContainers, i), depth, 0));
    int sum = 0;
    for (size_t i = 0; i < tasks.size(); ++i) sum += tasks[i].Wait().ret;
    ta.Pause();
    HILOG(kInfo, "Async: {} of {} answered in {} us", sum, ops, ta.GetUsec());

    int containers = client.Md(HSHM_MCTX, DomainQuery::GetGlobalBcast(), 0, 0);
    HILOG(kInfo, "Broadcast: {} container(s) answered", containers);

    // A shared-memory buffer the runtime fills (kIoRead) and then checks (kIoWrite).
    chi::Buffer buf(MEGABYTES(1));
    client.Io(HSHM_MCTX, DomainQuery::GetLocalHash(0), buf.shm(), buf.size(),
              chi::small_message::kIoRead, 0x5a);
    bool filled = buf.data()[0] == 0x5a && buf.data()[buf.size() - 1] == 0x5a;
    uint64_t checked = client.Io(HSHM_MCTX, DomainQuery::GetLocalHash(1), buf.shm(), buf.size(),
                                 chi::small_message::kIoWrite, 0x5a);
    HILOG(kInfo, "Io: {} bytes filled ({}), {} checked", buf.size(), filled ? "ok" : "WRONG",
          checked);
    return sum == static_cast<int>(ops) && filled ? 0 : 1;
}

int main() {
    try {
        return Run();
    } catch (const chi::Error &e) {
        std::fprintf(stderr, "client_example: %s\n", e.what());
        return 1;
    }
}
