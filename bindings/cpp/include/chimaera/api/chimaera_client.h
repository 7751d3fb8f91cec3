/* chimaera/api/chimaera_client.h: the C++ client API in the shapes of the seed's
 * documentation (CHIMAERA_CLIENT_INIT, CHI_CLIENT, chi::DomainQuery, module clients),
 * header-only over the C ABI of libchimaera.so. C++11 or later; link with -lchimaera.
 *
 *   #include "chimaera/api/chimaera_client.h"
 *   #include "small_message/small_message_client.h"
 *   CHI_NAMESPACE_INIT
 *   int main() {
 *     CHIMAERA_CLIENT_INIT();                      // attaches to $CHIMAERA_SEGMENT's runtime
 *     chi::small_message::Client client;
 *     client.Create(HSHM_MCTX, chi::DomainQuery::GetDirectHash(
 *                       chi::SubDomainId::kGlobalContainers, 0),
 *                   chi::DomainQuery::GetGlobalBcast(), "ipc_test");
 *     int one = client.Md(HSHM_MCTX, chi::DomainQuery::GetLocalHash(0), 0, 0);
 *   }
 *
 * Every failure throws chi::Error carrying the C error's code and text. Tasks (chi::TaskPtr)
 * and buffers (chi::Buffer) free themselves. The client is detached at exit by a static
 * destructor. */
#ifndef CHIMAERA_API_CHIMAERA_CLIENT_H
#define CHIMAERA_API_CHIMAERA_CLIENT_H

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "chimaera/api/domain_query.h"
#include "chimaera/api/hshm.h"
#include "chimaera/api/task_ptr.h"
#include "chimaera/chimaera.h"

#if CHI_ABI_MAJOR != 1
#error "the C++ binding is written for Chimaera ABI major 1; chimaera/version.h declares another"
#endif

namespace chi {

struct Task;
struct TaskNode;

namespace detail {

/// The client handle of module code running in a runtime hook on this thread (the
/// runtime's internal client, from chi_rctx_client), or NULL. The C++ module layer
/// (chimaera/api/chimaera_module.h) sets it on entry to every hook, so CHI_CLIENT calls made
/// by a method (subtasks) go to the runtime it runs in and their waits suspend the fiber,
/// not the worker. All fibers of a worker share one internal client, so the value is right
/// whichever fiber runs.
inline chi_client_t *&HookClient() {
    static thread_local chi_client_t *h = nullptr;
    return h;
}

/// Whether this thread is running a module's create or destroy hook, which has no run context
/// and so no internal client: CHI_CLIENT there is an error, not a second connection made from
/// inside the runtime.
inline bool &InLifecycleHook() {
    static thread_local bool in = false;
    return in;
}

}  // namespace detail

using hshm::i16;
using hshm::i32;
using hshm::i64;
using hshm::i8;
using hshm::u16;
using hshm::u32;
using hshm::u64;
using hshm::u8;
/// The seed's string type for names; a std::string here.
typedef std::string string;

/// A pool's id. Null (0) until a Create or GetPoolId fills it.
struct PoolId {
    uint64_t id_;

    PoolId() : id_(0) {}
    explicit PoolId(uint64_t id) : id_(id) {}
    static PoolId GetNull() { return PoolId(); }
    bool IsNull() const { return id_ == 0; }
    uint64_t value() const { return id_; }
    bool operator==(const PoolId &o) const { return id_ == o.id_; }
    bool operator!=(const PoolId &o) const { return id_ != o.id_; }
};

/// The process's connection to a runtime (CHI_CLIENT points at the one instance). Attaches on
/// CHIMAERA_CLIENT_INIT(), or on first use; detaches at exit. Thread-safe.
///
/// Not guaranteed: one instance per process when the header is compiled into several shared
/// objects built with -fvisibility=hidden (each then has its own connection).
class Client {
public:
    /// The instance. Its destructor (a static destructor, at exit) detaches, which also stops
    /// an embedded runtime (CHIMAERA_EMBEDDED=1).
    static Client &Instance() {
        static Client instance;
        return instance;
    }

    /// Attaches with default options ($CHIMAERA_SEGMENT, $CHIMAERA_CONF, $CHIMAERA_EMBEDDED).
    /// Does nothing when attached. Throws chi::Error (-CHI_ENORUNTIME naming the segment when
    /// no runtime serves it). Blocks for at most the connect timeout.
    void Init() { Init(nullptr); }
    /// Attaches with explicit options (see chi_client_opts_t; opts may be NULL).
    void Init(const chi_client_opts_t *opts) {
        std::lock_guard<std::mutex> lock(mu_);
        if (handle_.load(std::memory_order_acquire) != nullptr) return;
        uint32_t lib_major = chi_abi_version() >> 16;
        if (lib_major != CHI_ABI_MAJOR)
            throw Error(-CHI_EABI, "CHIMAERA_CLIENT_INIT: these headers are for ABI major " +
                                       std::to_string(CHI_ABI_MAJOR) + ", libchimaera.so is " +
                                       std::to_string(lib_major));
        chi_client_t *h = nullptr;
        detail::Check(chi_client_init(opts, &h), "CHIMAERA_CLIENT_INIT");
        handle_.store(h, std::memory_order_release);
    }
    /// Detaches now. Tasks and buffers of this connection must not be used afterwards (their
    /// destructors then fail quietly). A later call attaches again. Throws chi::Error.
    void Finalize() {
        std::lock_guard<std::mutex> lock(mu_);
        chi_client_t *h = handle_.exchange(nullptr, std::memory_order_acq_rel);
        if (h != nullptr) detail::Check(chi_client_finalize(h), "Finalize");
    }
    bool IsInitialized() const { return handle_.load(std::memory_order_acquire) != nullptr; }

    /// The C handle, attaching first if needed, for mixing in C calls. Inside a module hook
    /// it is the runtime's internal client. Throws chi::Error.
    chi_client_t *handle() {
        if (detail::InLifecycleHook())
            throw Error(-ENOTSUP, "CHI_CLIENT in a module's Create or Destroy: the runtime's "
                                  "client is reachable from methods and monitors only");
        chi_client_t *h = detail::HookClient();
        if (h != nullptr) return h;
        h = handle_.load(std::memory_order_acquire);
        if (h != nullptr) return h;
        Init();
        return handle_.load(std::memory_order_acquire);
    }

    /// The name of the segment this process is attached to.
    std::string GetSegment() {
        std::vector<char> buf(256);
        int n = chi_client_segment(handle(), buf.data(), buf.size());
        if (n == -ERANGE) {
            buf.resize(4096);
            n = chi_client_segment(handle(), buf.data(), buf.size());
        }
        detail::Check(n, "GetSegment");
        return std::string(buf.data(), static_cast<size_t>(n));
    }

    /// Allocates size bytes (64-byte aligned) of shared memory the runtime can see. The
    /// result owns nothing: free it with FreeBuffer (or allocate a chi::Buffer instead).
    /// Throws chi::Error (-ENOMEM when the segment's heap is exhausted).
    hipc::FullPtr<char> AllocateBuffer(const hipc::MemContext &, size_t size) {
        chi_client_t *h = handle();
        void *p = nullptr;
        detail::Check(chi_buffer_alloc(h, size, &p), "AllocateBuffer");
        chi_shm_ptr_t shm;
        int rc = chi_ptr_to_shm(h, p, &shm);
        if (rc < 0) {
            std::string last = chi_last_error();
            chi_buffer_free(h, p);
            throw detail::MakeError(rc, "AllocateBuffer", nullptr, last);
        }
        return hipc::FullPtr<char>(static_cast<char *>(p), hipc::Pointer(shm));
    }
    /// Frees a buffer from AllocateBuffer. Throws chi::Error.
    template <typename T>
    void FreeBuffer(const hipc::MemContext &, const hipc::FullPtr<T> &p) {
        detail::Check(chi_buffer_free(handle(), p.ptr_), "FreeBuffer");
    }
    /// Frees a buffer from AllocateBuffer given only its shared-memory pointer.
    void FreeBuffer(const hipc::MemContext &mctx, const hipc::Pointer &p) {
        FreeBuffer(mctx, ToFullPtr<char>(p, 1));
    }
    /// Resolves a shared-memory pointer, checking [offset, offset + size) lies in the segment.
    template <typename T>
    hipc::FullPtr<T> ToFullPtr(const hipc::Pointer &p, size_t size = sizeof(T)) {
        void *addr = nullptr;
        detail::Check(chi_shm_to_ptr(handle(), p.shm_, size, &addr), "ToFullPtr");
        return hipc::FullPtr<T>(static_cast<T *>(addr), p);
    }
    /// The shared-memory pointer of an address inside the segment.
    hipc::Pointer ToPointer(const void *addr) {
        chi_shm_ptr_t shm;
        detail::Check(chi_ptr_to_shm(handle(), addr, &shm), "ToPointer");
        return hipc::Pointer(shm);
    }

    /// Allocates a task of type T (a C task struct) for (pool, method) routed by dq.
    template <typename T>
    TaskPtr<T> NewTask(const PoolId &pool, uint32_t method, const DomainQuery &dq,
                       const char *op = "NewTask") {
        return TaskPtr<T>::New(handle(), pool.value(), method, dq, op);
    }

    // The seed's task calls for C++ task structs (chimaera/api/chimaera_task.h defines them):
    // a task struct derives from chi::Task, whose layout is the C header chi_task_t.

    /// Allocates a task of type T in shared memory and runs its emplace constructor
    /// T(alloc, task_node, pool, dom_query, args...). Not submitted. Throws chi::Error.
    template <typename T, typename... Args>
    hipc::FullPtr<T> NewTask(const hipc::MemContext &mctx, const TaskNode &task_node,
                             const PoolId &pool, const DomainQuery &dom_query, Args &&...args);
    /// NewTask and submit: the seed's AsyncX. Throws chi::Error.
    template <typename T, typename... Args>
    hipc::FullPtr<T> ScheduleNewTask(const hipc::MemContext &mctx, const PoolId &pool,
                                     const DomainQuery &dom_query, Args &&...args);
    /// The same, as a subtask of parent (the seed's AsyncXBase; from inside a method).
    template <typename T, typename... Args>
    hipc::FullPtr<T> ScheduleNewTask(const hipc::MemContext &mctx, Task *parent,
                                     const TaskNode &task_node, const PoolId &pool,
                                     const DomainQuery &dom_query, Args &&...args);
    /// Frees a task from NewTask/ScheduleNewTask (waiting first if it is in flight).
    template <typename T>
    void DelTask(const hipc::MemContext &mctx, const hipc::FullPtr<T> &task);
    /// Frees a task given by address.
    template <typename T>
    void DelTask(const hipc::MemContext &mctx, T *task);
    /// A task node for a new root task (see chi::TaskNode).
    TaskNode MakeTaskNodeId();

    ~Client() {
        chi_client_t *h = handle_.exchange(nullptr);
        if (h != nullptr) chi_client_finalize(h);
    }
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

private:
    Client() : handle_(nullptr) {}

    std::mutex mu_;
    std::atomic<chi_client_t *> handle_;
};

/// A shared-memory buffer that frees itself. Move-only. Allocated on CHI_CLIENT's connection.
class Buffer {
public:
    Buffer() : client_(nullptr), size_(0) {}
    /// Allocates size bytes. Throws chi::Error.
    explicit Buffer(size_t size)
        : client_(Client::Instance().handle()),
          ptr_(Client::Instance().AllocateBuffer(hipc::MemContext(), size)),
          size_(size) {}
    Buffer(Buffer &&o) noexcept : client_(o.client_), ptr_(o.ptr_), size_(o.size_) {
        o.ptr_ = hipc::FullPtr<char>();
    }
    Buffer &operator=(Buffer &&o) noexcept {
        if (this != &o) {
            reset();
            client_ = o.client_;
            ptr_ = o.ptr_;
            size_ = o.size_;
            o.ptr_ = hipc::FullPtr<char>();
        }
        return *this;
    }
    Buffer(const Buffer &) = delete;
    Buffer &operator=(const Buffer &) = delete;
    ~Buffer() { reset(); }

    char *data() const { return ptr_.ptr_; }
    size_t size() const { return size_; }
    const hipc::Pointer &shm() const { return ptr_.shm_; }
    const hipc::FullPtr<char> &full() const { return ptr_; }
    /// Frees the buffer now. Never throws.
    void reset() noexcept {
        if (ptr_.ptr_ != nullptr) chi_buffer_free(client_, ptr_.ptr_);
        ptr_ = hipc::FullPtr<char>();
        size_ = 0;
    }
    /// Gives up ownership: free the result with CHI_CLIENT->FreeBuffer.
    hipc::FullPtr<char> release() noexcept {
        hipc::FullPtr<char> p = ptr_;
        ptr_ = hipc::FullPtr<char>();
        size_ = 0;
        return p;
    }

private:
    chi_client_t *client_;
    hipc::FullPtr<char> ptr_;
    size_t size_;
};

namespace detail {

/// Creates (or finds, by name) a pool of module. Registers the module on demand.
inline PoolId CreatePool(const char *module, const std::string &name,
                         uint32_t containers_per_node, const void *params, size_t params_size) {
    if (params_size > UINT32_MAX)
        throw Error(-EINVAL, "CreatePool(\"" + name + "\"): parameters over 4 GiB");
    chi_pool_create_opts_t opts = chi_pool_create_opts_t();
    opts.size = sizeof(opts);
    opts.containers_per_node = containers_per_node;
    opts.module = module;
    opts.name = name.c_str();
    opts.params = params;
    opts.params_size = static_cast<uint32_t>(params_size);
    uint64_t id = 0;
    Check(chi_pool_create(Client::Instance().handle(), &opts, &id), "CreatePool", name.c_str());
    return PoolId(id);
}

}  // namespace detail

/// The base of module clients: the pool it talks to (id_, as in the seed) and what every
/// module has.
class ModuleClient {
public:
    PoolId id_;

    /// Talks to an existing pool (from CHI_ADMIN->GetPoolId, say).
    void Init(const PoolId &id) { id_ = id; }
    const PoolId &GetPoolId() const { return id_; }
    /// Destroys the pool (for every client of it). The domain query is accepted for the
    /// seed's shape; the C ABI destroys the whole pool. Throws chi::Error.
    void Destroy(const hipc::MemContext &, const DomainQuery &) {
        detail::Check(chi_pool_destroy(Client::Instance().handle(), id_.value()), "Destroy");
        id_ = PoolId();
    }

protected:
    template <typename T>
    TaskPtr<T> NewTask(uint32_t method, const DomainQuery &dq, const char *op) const {
        return Client::Instance().NewTask<T>(id_, method, dq, op);
    }
};

}  // namespace chi

/// The client singleton, as a pointer: CHI_CLIENT->AllocateBuffer(HSHM_MCTX, size).
#define CHI_CLIENT (&::chi::Client::Instance())

/// Attaches this process to the runtime ($CHIMAERA_SEGMENT). Throws chi::Error.
#define CHIMAERA_CLIENT_INIT() ::chi::Client::Instance().Init()

/// The names client code uses unqualified, brought into the enclosing (usually global) scope.
#define CHI_NAMESPACE_INIT                                                                    \
    using ::chi::u8;                                                                          \
    using ::chi::u16;                                                                         \
    using ::chi::u32;                                                                         \
    using ::chi::u64;                                                                         \
    using ::chi::i32;                                                                         \
    using ::chi::i64;                                                                         \
    using ::chi::DomainQuery;                                                                 \
    using ::chi::SubDomainId;                                                                 \
    using ::chi::SubDomainGroup;                                                              \
    using ::chi::PoolId;                                                                      \
    using ::chi::TaskPtr;                                                                     \
    using ::hshm::ipc::FullPtr;

#endif
