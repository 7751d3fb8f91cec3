/* The C++ binding against a running daemon ($CHIMAERA_SEGMENT): errors arrive as chi::Error
 * with the C error's code and text; tasks and buffers free themselves (the shared heap is back
 * where it was after 10,000 AsyncMd and 1,000 buffers); every DomainQuery constructor routes
 * an Md where the C helper of the same name does; a broadcast folds one answer per container;
 * the client attaches lazily from several threads at once; the hshm stand-ins behave.
 * `test_cpp_api noruntime` instead checks that attaching to a segment nobody serves throws.
 * Exit 0 pass, 1 fail. */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "chimaera/api/chimaera_client.h"
#include "chimaera_admin/chimaera_admin_client.h"
#include "small_message/small_message_client.h"

CHI_NAMESPACE_INIT

namespace {

typedef chi::small_message::Client SmClient;
const chi::u32 G = chi::SubDomainId::kGlobalContainers;

[[noreturn]] void Fail(int line, const std::string &what) {
    std::fprintf(stderr, "test_cpp_api.cc:%d: FAIL: %s\n", line, what.c_str());
    std::exit(1);
}
#define CHECK(cond, what)                                                       \
    do {                                                                        \
        if (!(cond)) Fail(__LINE__, std::string("(" #cond ") ") + (what));      \
    } while (0)
#define CHECK_EQ(a, b)                                                          \
    do {                                                                        \
        long long a_ = static_cast<long long>(a), b_ = static_cast<long long>(b); \
        if (a_ != b_)                                                           \
            Fail(__LINE__, std::string(#a " == " #b ": ") + std::to_string(a_) + \
                               " != " + std::to_string(b_));                    \
    } while (0)
/* The statement must throw chi::Error with code `want`; its text is left in `err`. */
#define CHECK_THROWS(stmt, want, err)                                           \
    do {                                                                        \
        bool thrown_ = false;                                                   \
        try {                                                                   \
            stmt;                                                               \
        } catch (const chi::Error &e_) {                                        \
            thrown_ = true;                                                     \
            err = e_.what();                                                    \
            if (e_.code() != (want))                                            \
                Fail(__LINE__, std::string(#stmt " threw code ") +              \
                                   std::to_string(e_.code()) + ": " + err);     \
        }                                                                       \
        if (!thrown_) Fail(__LINE__, #stmt " did not throw");                   \
    } while (0)

bool Contains(const std::string &s, const std::string &part) {
    return s.find(part) != std::string::npos;
}

SmClient Pool(const char *name, chi::u32 containers) {
    SmClient c;
    c.Create(HSHM_MCTX, DomainQuery::GetDirectHash(G, 0), DomainQuery::GetGlobalBcast(), name,
             containers);
    CHECK(!c.id_.IsNull(), name);
    return c;
}

/* The shared heap's bytes in use, from the runtime's statistics. */
long long HeapUsed() {
    std::string s = CHI_ADMIN->GetStats(HSHM_MCTX);
    size_t at = s.find("\"heap_used\":");
    CHECK(at != std::string::npos, "no heap_used in the stats: " + s.substr(0, 300));
    return std::atoll(s.c_str() + at + std::strlen("\"heap_used\":"));
}

void ConcurrentFirstUse() {
    CHECK(!CHI_CLIENT->IsInitialized(), "attached before the first use");
    std::vector<std::thread> threads;
    std::vector<int> sums(4, 0);
    for (int t = 0; t < 4; ++t) {
        threads.push_back(std::thread([t, &sums]() {
            SmClient c = Pool("cpp_threads", 2);
            for (int i = 0; i < 500; ++i)
                sums[t] += c.Md(HSHM_MCTX, DomainQuery::GetDirectHash(G, i), 0, 0);
        }));
    }
    for (size_t t = 0; t < threads.size(); ++t) threads[t].join();
    for (int t = 0; t < 4; ++t) CHECK_EQ(sums[t], 500);
    CHIMAERA_CLIENT_INIT();  // already attached: a no-op
    const char *seg = std::getenv("CHIMAERA_SEGMENT");
    CHECK(CHI_CLIENT->GetSegment() == seg, CHI_CLIENT->GetSegment());
}

void Errors() {
    std::string err;
    CHECK_THROWS(CHI_ADMIN->RegisterModule(HSHM_MCTX, DomainQuery::GetGlobalBcast(),
                                           "no_such_mod"),
                 -CHI_ENOMODULE, err);
    CHECK(Contains(err, "RegisterModule(\"no_such_mod\")"), err);
    CHECK(Contains(err, chi_strerror(CHI_ENOMODULE)), err);
    std::string dirs = std::getenv("CHI_MODULE_PATH") ? std::getenv("CHI_MODULE_PATH") : "";
    std::string first_dir = dirs.substr(0, dirs.find(':'));
    CHECK(!first_dir.empty() && Contains(err, first_dir), "searched path missing: " + err);
    std::printf("unknown module: %s\n", err.c_str());

    CHECK_THROWS(CHI_ADMIN->GetPoolId(HSHM_MCTX, DomainQuery(), "cpp_no_such_pool"),
                 -CHI_ENOPOOL, err);
    CHECK(Contains(err, "cpp_no_such_pool"), err);

    SmClient c = Pool("cpp_errors", 4);
    CHECK_THROWS(c.Md(HSHM_MCTX, DomainQuery::GetDirectId(G, 99), 0, 0), -CHI_ENOCONTAINER, err);
    CHECK(Contains(err, "small_message::Md"), err);
    // The async path reports the task's own failure, never the thread's earlier message.
    CHECK_THROWS(CHI_ADMIN->RegisterModule(HSHM_MCTX, DomainQuery(), "no_such_mod"),
                 -CHI_ENOMODULE, err);
    TaskPtr<chi::small_message::MdTask> t =
        c.AsyncMd(HSHM_MCTX, DomainQuery::GetDirectId(G, 99), 0, 0);
    CHECK_THROWS(t.Wait(), -CHI_ENOCONTAINER, err);
    CHECK(!Contains(err, "no_such_mod"), "a stale message was reported: " + err);
    CHECK_EQ(t.rc(), -CHI_ENOCONTAINER);

    TaskPtr<chi::small_message::MdTask> empty;
    CHECK_THROWS(empty.Wait(), -EINVAL, err);
    CHECK_THROWS(c.Md(HSHM_MCTX, DomainQuery(), 0, CHI_TASK_FIRE_AND_FORGET), -EINVAL, err);
    TaskPtr<chi::small_message::MdTask> gone =
        c.AsyncMd(HSHM_MCTX, DomainQuery(), 0, CHI_TASK_FIRE_AND_FORGET);
    CHECK(!gone, "a fire-and-forget task still has an owner");
    CHI_ADMIN->Flush(HSHM_MCTX, DomainQuery::GetGlobalBcast());

    chi_shm_ptr_t bogus = {0, 0, 1ull << 62};
    CHECK_THROWS(CHI_CLIENT->ToFullPtr<char>(hipc::Pointer(bogus), 16), -EFAULT, err);
    CHECK_EQ(c.Md(HSHM_MCTX, DomainQuery::GetDirectId(G, 3), 0, 0), 1);  // still serving
}

/* One round of everything that must free itself: 10,000 AsyncMd waited in batches of 64,
 * 1,000 dropped unwaited (the destructor waits, then frees), one freed during unwinding, and
 * 1,000 moved buffers. */
void RaiiRound(SmClient &c) {
    long long ones = 0;
    std::vector<TaskPtr<chi::small_message::MdTask> > batch;
    for (int i = 0; i < 10000; ++i) {
        batch.push_back(c.AsyncMd(HSHM_MCTX, DomainQuery::GetDirectHash(G, i), 0, 0));
        if (batch.size() == 64) {
            for (size_t k = 0; k < batch.size(); ++k) ones += batch[k].Wait().ret;
            batch.clear();
        }
    }
    for (size_t k = 0; k < batch.size(); ++k) ones += batch[k].Wait().ret;
    batch.clear();
    CHECK_EQ(ones, 10000);
    for (int i = 0; i < 1000; ++i) c.AsyncMd(HSHM_MCTX, DomainQuery::GetDirectHash(G, i), 1, 0);
    try {
        TaskPtr<chi::small_message::MdTask> t = c.AsyncMd(HSHM_MCTX, DomainQuery(), 0, 0);
        throw std::runtime_error("unwind");
    } catch (const std::runtime_error &) {
    }
    for (int i = 0; i < 1000; ++i) {
        chi::Buffer b(4096 + static_cast<size_t>(i));
        chi::Buffer moved(std::move(b));
        CHECK(b.data() == nullptr && moved.data() != nullptr, "move left two owners");
    }
}

/* heap_used is the shared allocator's high-water mark: freed blocks are reused, so a round
 * that frees everything leaves it where the first round put it. A leak of 10,000 tasks would
 * add at least 2.5 MB; the positive control shows 4,000 leaked tasks do move it. */
void Raii() {
    SmClient c = Pool("cpp_raii", 4);
    RaiiRound(c);  // warm-up: carves the spans a round needs
    long long before = HeapUsed();
    RaiiRound(c);
    RaiiRound(c);
    long long after = HeapUsed();
    std::vector<chi::small_message::MdTask *> leaked;
    for (int i = 0; i < 4000; ++i)
        leaked.push_back(c.AsyncMd(HSHM_MCTX, DomainQuery(), 0, 0).release());
    long long with_leak = HeapUsed();
    for (size_t i = 0; i < leaked.size(); ++i) {
        chi_task_wait(CHI_CLIENT->handle(), &leaked[i]->hdr, -1);
        CHECK_EQ(chi_task_del(CHI_CLIENT->handle(), &leaked[i]->hdr), 0);
    }
    std::printf("heap_used: %lld before, %lld after two rounds, %lld with 4,000 tasks leaked\n",
                before, after, with_leak);
    CHECK(after - before < 256 * 1024,
          "tasks or buffers leaked: " + std::to_string(after - before) + " bytes more in use");
    CHECK(with_leak - after >= 512 * 1024,
          "heap_used does not see 4,000 leaked tasks: " + std::to_string(with_leak - after));
}

void Buffers() {
    SmClient c = Pool("cpp_buffers", 2);
    size_t size = hshm::Unit<size_t>::Megabytes(1);
    hipc::FullPtr<char> data = CHI_CLIENT->AllocateBuffer(HSHM_MCTX, size);
    CHECK(data.ptr_ != nullptr && !data.shm_.IsNull(), "no buffer");
    CHECK((reinterpret_cast<uintptr_t>(data.ptr_) & 63) == 0, "buffer is not 64-byte aligned");
    CHECK(CHI_CLIENT->ToFullPtr<char>(data.shm_, size).ptr_ == data.ptr_, "shm_ round trip");
    CHECK(CHI_CLIENT->ToPointer(data.ptr_) == data.shm_, "ToPointer round trip");
    std::memset(data.ptr_, 0x33, size);
    CHECK_EQ(c.Io(HSHM_MCTX, DomainQuery::GetLocalHash(0), data.shm_, size,
                  chi::small_message::kIoWrite, 0x33),
             size);
    CHECK_EQ(c.Io(HSHM_MCTX, DomainQuery::GetDirectHash(G, 1), data.shm_, size,
                  chi::small_message::kIoRead, 0x5a),
             size);
    for (size_t i = 0; i < size; i += 4093) CHECK_EQ(data.ptr_[i], 0x5a);
    std::string err;
    data.ptr_[size / 2] = 0;
    CHECK_THROWS(c.Io(HSHM_MCTX, DomainQuery(), data.shm_, size, chi::small_message::kIoWrite,
                      0x5a),
                 -EIO, err);
    CHI_CLIENT->FreeBuffer(HSHM_MCTX, data);

    chi::Buffer b(KILOBYTES(64));
    std::memset(b.data(), 7, b.size());
    TaskPtr<chi::small_message::IoTask> io = c.AsyncIo(
        HSHM_MCTX, DomainQuery::GetDynamic(), b.shm(), b.size(), chi::small_message::kIoWrite, 7);
    CHECK_EQ(io.Wait().ret, KILOBYTES(64));
    hipc::FullPtr<char> kept = b.release();
    CHI_CLIENT->FreeBuffer(HSHM_MCTX, kept.shm_);  // by shared-memory pointer alone
}

void DomainQueries() {
    SmClient four = Pool("cpp_dq4", 4), one = Pool("cpp_dq1", 1);
    struct Case {
        const char *name;
        DomainQuery dq;
        chi_domain_query_t c;  // the C helper's query (flags 0: no C helper to compare)
        int expect;
    } cases[] = {
        {"GetDirectHash(G, 6)", DomainQuery::GetDirectHash(G, 6), chi_dq_direct_hash(G, 6), 1},
        {"GetDirectId(G, 3)", DomainQuery::GetDirectId(G, 3), chi_dq_direct_id(G, 3), 1},
        {"GetLocalHash(5)", DomainQuery::GetLocalHash(5), chi_dq_local_hash(5), 1},
        {"GetLocalId(kLocalContainers, 2)",
         DomainQuery::GetLocalId(chi::SubDomainId::kLocalContainers, 2),
         chi_dq_local_id(CHI_SUBDOMAIN_LOCAL_CONTAINERS, 2), 1},
        {"GetLocalId(3)", DomainQuery::GetLocalId(3),
         chi_dq_local_id(CHI_SUBDOMAIN_LOCAL_CONTAINERS, 3), 1},
        {"GetGlobal(G, kBroadcast)", DomainQuery::GetGlobal(G, DomainQuery::kBroadcast),
         chi_dq_global(G, CHI_DQ_BCAST), 4},
        {"GetGlobal(G, kChooseOne)", DomainQuery::GetGlobal(G, DomainQuery::kChooseOne),
         chi_dq_global(G, CHI_DQ_CHOOSE_ONE), 1},
        {"GetGlobal(G, kRepUntilSuccess)",
         DomainQuery::GetGlobal(G, DomainQuery::kRepUntilSuccess),
         chi_dq_global(G, CHI_DQ_REP_UNTIL_SUCCESS), 1},
        {"GetRange(G, 1, 2)", DomainQuery::GetRange(G, 1, 2), chi_dq_range(G, 1, 2, CHI_DQ_BCAST),
         2},
        {"GetRange(G, 1, 0)", DomainQuery::GetRange(G, 1, 0), chi_dq_range(G, 1, 0, CHI_DQ_BCAST),
         3},
        {"GetGlobalBcast()", DomainQuery::GetGlobalBcast(), chi_dq_global_bcast(), 4},
        {"GetDynamic()", DomainQuery::GetDynamic(), chi_dq_dynamic(), 1},
        {"DomainQuery()", DomainQuery(), chi_dq_local_hash(0), 1},
        {"GetDirectId(kPhysicalNode, 1)",
         DomainQuery::GetDirectId(chi::SubDomain::kPhysicalNode, 1),
         chi_dq_direct_id(CHI_SUBDOMAIN_PHYSICAL_NODE, 1), 1},
        {"GetDirectId(kPhysicalNode, 1, kBroadcast)",
         DomainQuery::GetDirectId(chi::SubDomain::kPhysicalNode, 1, DomainQuery::kBroadcast),
         chi_dq_make(CHI_DQ_DIRECT | CHI_DQ_ID | CHI_DQ_BCAST, CHI_SUBDOMAIN_PHYSICAL_NODE, 1, 1),
         4},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        const Case &k = cases[i];
        CHECK(k.dq == DomainQuery(k.c), std::string(k.name) + " differs from the C helper's");
        int got = four.Md(HSHM_MCTX, k.dq, 0, 0);
        if (got != k.expect)
            Fail(__LINE__, std::string(k.name) + ": Md returned " + std::to_string(got) +
                               ", want " + std::to_string(k.expect));
        CHECK_EQ(four.AsyncMd(HSHM_MCTX, k.dq, 2, 0).Wait().ret, k.expect);  // with subtasks
    }
    CHECK_EQ(one.Md(HSHM_MCTX, DomainQuery::GetGlobalBcast(), 0, 0), 1);
    CHECK(DomainQuery::GetGlobalBcast().IsBroadcast() && DomainQuery::GetDynamic().IsDynamic(),
          "predicates");
    std::string err;
    CHECK_THROWS(four.Md(HSHM_MCTX, DomainQuery::GetDirectId(chi::SubDomain::kPhysicalNode, 2),
                         0, 0),
                 -CHI_ENOCONTAINER, err);
    CHECK_THROWS(four.Md(HSHM_MCTX, DomainQuery::GetDirectHash(G, 0, DomainQuery::kRange), 0, 0),
                 -EINVAL, err);
}

void Admin() {
    PoolId id = CHI_ADMIN->CreatePool(HSHM_MCTX, DomainQuery::GetDirectHash(G, 0),
                                      DomainQuery::GetGlobalBcast(), "small_message",
                                      "cpp_admin_pool", 3);
    CHECK(!id.IsNull(), "CreatePool gave a null id");
    CHECK(CHI_ADMIN->GetPoolId(HSHM_MCTX, DomainQuery(), "cpp_admin_pool") == id, "GetPoolId");
    SmClient c;
    c.Create(HSHM_MCTX, DomainQuery(), DomainQuery(), "cpp_admin_pool");  // idempotent by name
    CHECK(c.id_ == id, "a second Create of the same name gave another pool");
    CHECK_EQ(c.Md(HSHM_MCTX, DomainQuery::GetGlobalBcast(), 0, 0), 3);
    CHECK(Contains(CHI_ADMIN->GetStats(HSHM_MCTX), "cpp_admin_pool"), "pool not in stats");
    c.Destroy(HSHM_MCTX, DomainQuery::GetGlobalBcast());
    std::string err;
    CHECK_THROWS(CHI_ADMIN->GetPoolId(HSHM_MCTX, DomainQuery(), "cpp_admin_pool"), -CHI_ENOPOOL,
                 err);
    SmClient stale;
    stale.Init(id);
    CHECK_THROWS(stale.Md(HSHM_MCTX, DomainQuery(), 0, 0), -CHI_ENOPOOL, err);
}

void HshmStandIns() {
    CHECK(hshm::Formatter::format("{} + {} = {}", 1, 2.5, "3.5") == "1 + 2.5 = 3.5", "format");
    CHECK(hshm::Formatter::format("{} and {}", 1) == "1 and {}", "missing argument");
    CHECK(hshm::Formatter::format("none", 1) == "none", "extra argument");
    CHECK_EQ(hshm::Unit<size_t>::Megabytes(3), MEGABYTES(3));
    CHECK_EQ(KILOBYTES(2), 2048);
    CHECK_EQ(GIGABYTES(1), 1ll << 30);
    hshm::Timer t;
    CHECK(t.GetUsec() == 0, "a new timer is not zero");
    t.Resume();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    t.Pause();
    double ms = t.GetMsec();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    CHECK(ms >= 19 && ms < 2000 && t.GetMsec() == ms, "timer: " + std::to_string(ms));
    HILOG(kInfo, "HILOG: {} {}", "info", 1);
    HILOG(kError, "HILOG to stderr: {}", 2);
}

/* The client's handle, checked after the client singleton's static destructor has run: an
 * atexit handler registered before the singleton exists runs after its destructor. */
chi_client_t *g_handle = nullptr;

void CheckFinalizedAtExit() {
    char seg[256];
    int rc = chi_client_segment(g_handle, seg, sizeof seg);
    if (rc != -EINVAL) {
        std::fprintf(stderr, "test_cpp_api: FAIL: the client is still attached at exit (%d)\n", rc);
        std::fflush(nullptr);
        std::_Exit(1);
    }
    std::printf("test_cpp_api: client finalized at exit\n");
    std::fflush(nullptr);
}

int NoRuntime() {
    const char *seg = std::getenv("CHIMAERA_SEGMENT");
    std::string err;
    CHECK_THROWS(CHIMAERA_CLIENT_INIT(), -CHI_ENORUNTIME, err);
    CHECK(seg != nullptr && Contains(err, seg), "the error does not name the segment: " + err);
    CHECK(!CHI_CLIENT->IsInitialized(), "attached after a failed init");
    std::printf("no runtime: %s\n", err.c_str());
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    try {
        if (argc > 1 && std::strcmp(argv[1], "noruntime") == 0) return NoRuntime();
        std::atexit(CheckFinalizedAtExit);
        ConcurrentFirstUse();
        g_handle = CHI_CLIENT->handle();
        Errors();
        Raii();
        Buffers();
        DomainQueries();
        Admin();
        HshmStandIns();
    } catch (const chi::Error &e) {
        std::fprintf(stderr, "test_cpp_api: uncaught chi::Error %d: %s\n", e.code(), e.what());
        return 1;
    }
    std::printf("test_cpp_api: ok\n");
    return 0;
}
