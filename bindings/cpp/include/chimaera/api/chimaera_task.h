/* chimaera/api/chimaera_task.h: the seed's C++ task structs over the C task header.
 * Header-only, C++17; link with -lchimaera.
 *
 *   struct CompressTask : public Task, TaskFlags<TF_SRL_SYM> {
 *     IN hipc::Pointer data_;
 *     IN size_t data_size_;
 *     explicit CompressTask(const hipc::CtxAllocator<CHI_ALLOC_T> &alloc) : Task(alloc) {}
 *     ...emplace constructor, Copy...
 *     template <typename Ar> void SerializeIn(Ar &ar) { ar.bulk(DT_WRITE, data_, data_size_); }
 *     template <typename Ar> void SerializeOut(Ar &ar) {}
 *   };
 *
 * chi::Task *is* the C header: its members have the seed's names (method_, pool_, dom_query_,
 * prio_, task_flags_ ...) and sit at chi_task_t's offsets (static_asserts below), so a task
 * struct's own fields follow the 128-byte header and the runtime copies, checks and forwards
 * it by the descriptors the module layer records from SerializeIn/SerializeOut. Task structs
 * must therefore be plain: trivially copyable members only (no virtual functions, STL types
 * or raw pointers; shared-memory data is a hipc::Pointer).
 *
 * Client calls: CHI_CLIENT->NewTask / ScheduleNewTask / DelTask, and the CHI_TASK_METHODS(X)
 * macro that module clients use (AsyncXAlloc, AsyncX, AsyncXBase). Task::Wait() throws
 * chi::Error when the task failed (rc < 0). */
#ifndef CHIMAERA_API_CHIMAERA_TASK_H
#define CHIMAERA_API_CHIMAERA_TASK_H

#if __cplusplus < 201703L
#error "the C++ module layer (chimaera/api/chimaera_task.h) needs C++17"
#endif

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include "chimaera/admin.h"
#include "chimaera/api/chimaera_client.h"
#include "chimaera/module.h"

/* The seed's decorators. IN/OUT/INOUT are documentation: a field's direction is where it
 * appears, in SerializeIn (IN), SerializeOut (OUT) or both (INOUT). */
#ifndef IN
#define IN
#endif
#ifndef OUT
#define OUT
#endif
#ifndef INOUT
#define INOUT
#endif
#define HSHM_INLINE inline
#define HSHM_INLINE_CROSS_FUN inline
#define HSHM_CROSS_FUN
#define HSHM_INLINE_GPU_FUN inline
/** A class constant: `CLS_CONST char *lib_name_ = "x";`, `CLS_CONST QueueId kGroup = 0;`. */
#define CLS_CONST static constexpr const
/** A method id in a module's `struct Method : public TaskMethod`. */
#define TASK_METHOD_T static constexpr const ::chi::MethodId
/* The regions chi_refresh_repo edits (see docs/modules.md): markers for the tool, nothing for
 * the compiler. */
#define CHI_BEGIN(X)
#define CHI_END(X)
#define CHI_AUTOGEN_METHODS

namespace hshm {
namespace ipc {

/// The allocator a task is made with, as the seed's constructors take it. The C ABI has one
/// heap per segment, so it selects nothing; it exists so the seed's signatures compile.
template <typename AllocT>
struct CtxAllocator {
    MemContext ctx_;
    CtxAllocator() = default;
    CtxAllocator(const MemContext &ctx) : ctx_(ctx) {}
};

}  // namespace ipc
}  // namespace hshm

namespace chi {

/// The seed spells hipc::FullPtr unqualified inside its namespaces.
template <typename T>
using FullPtr = hipc::FullPtr<T>;

/// The seed's allocator type parameter; see hipc::CtxAllocator.
struct ChiAllocator {};
#define CHI_ALLOC_T ::chi::ChiAllocator

typedef u32 MethodId;
typedef u32 TaskPrio;

/// The inherited method ids; a module's `struct Method : public TaskMethod` adds its own
/// (from 10, as NAME_methods.yaml declares them).
struct TaskMethod {
    static constexpr const MethodId kCreate = CHI_METHOD_CREATE;
    static constexpr const MethodId kDestroy = CHI_METHOD_DESTROY;
    static constexpr const MethodId kNodeFailure = CHI_METHOD_NODE_FAILURE;
    static constexpr const MethodId kRecover = CHI_METHOD_RECOVER;
    static constexpr const MethodId kMigrate = CHI_METHOD_MIGRATE;
    static constexpr const MethodId kUpgrade = CHI_METHOD_UPGRADE;
};
typedef u32 QueueId;
typedef u32 MonitorModeId;

/// Priorities (task->prio_): which lanes and workers a task prefers.
struct TaskPrioOpt {
    enum : u32 {
        kLowLatency = CHI_PRIO_LOW_LATENCY,
        kHighLatency = CHI_PRIO_HIGH_LATENCY,
    };
};

/// Task flags (task->task_flags_): the seed's names for the CHI_TASK_* and CHI_TF_* bits.
constexpr u32 TASK_PERIODIC = CHI_TASK_PERIODIC;
constexpr u32 TASK_LONG_RUNNING = CHI_TASK_LONG_RUNNING;
constexpr u32 TASK_FIRE_AND_FORGET = CHI_TASK_FIRE_AND_FORGET;
/// The task's fields serialise by its SerializeIn/SerializeOut: it may go to another node.
constexpr u32 TF_SRL_SYM = CHI_TF_SRL_SYM;
/// The task never leaves its node: routed to another node's container it fails with
/// -CHI_ENOCONTAINER.
constexpr u32 TF_LOCAL = CHI_TF_LOCAL;

/// Bulk modes for ar.bulk: DT_WRITE moves the data with the message (the request in
/// SerializeIn, the reply in SerializeOut); DT_EXPOSE lets the remote side read and write the
/// buffer (its bytes go with the request and come back with the reply).
constexpr u32 DT_WRITE = CHI_DT_WRITE;
constexpr u32 DT_EXPOSE = CHI_DT_EXPOSE;

/// Monitor modes (MonitorX(mode, task, rctx)).
struct MonitorMode {
    enum : u32 {
        /// The task's domain query is dynamic: set task->dom_query_ to a direct query.
        kSchedule = CHI_MONITOR_SCHEDULE,
        /// A broadcast finished: fold *rctx.replicas_ into the task.
        kReplicaAgg = CHI_MONITOR_REPLICA_AGG,
    };
};

/// A 32-bit flag word (task->task_flags_).
struct BitField32 {
    u32 bits_;
    void SetBits(u32 mask) { bits_ |= mask; }
    void UnsetBits(u32 mask) { bits_ &= ~mask; }
    bool Any(u32 mask) const { return (bits_ & mask) != 0; }
    bool All(u32 mask) const { return (bits_ & mask) == mask; }
    void Clear() { bits_ = 0; }
};

/// The seed's task identity (root task and depth). The runtime tracks subtask depth itself
/// (runtime.max_task_depth), so a TaskNode carries nothing and the header has no room for it:
/// it is accepted where the seed passes one, and takes no space in a task.
struct TaskNode {
    static TaskNode GetNull() { return TaskNode(); }
    TaskNode operator+(int) const { return *this; }
};

/// The task header: chi_task_t's layout under the seed's member names. Derive task structs
/// from it; their fields start at sizeof(chi_task_t).
///
/// Not guaranteed: the constructors leave the header alone (CHI_CLIENT->NewTask fills it),
/// so a Task built anywhere else (a local variable) has an unspecified header.
struct Task {
    u32 size_;             // whole task size, header included (set by the library)
    MethodId method_;      // method id (Method::kX)
    PoolId pool_;          // target pool
    u64 task_id_;          // unique per segment (set by the library)
    DomainQuery dom_query_;
    TaskPrio prio_;        // TaskPrioOpt::*
    BitField32 task_flags_;  // TASK_* | TF_*
    u64 period_ns_;        // for TASK_PERIODIC: SetPeriodNs/Us/Ms/Sec/Min
    u32 done_;             // completion word (the library's)
    i32 rc_;               // the method's status: 0 or a positive count, or -errno
    u32 runs_;             // how many times the method ran
    u32 lane_hash_;        // a hint for MapTaskToLane
    hipc::Pointer parent_; // the task that spawned this one (the library's)
    u64 reserved_[4];      // the library's
#if defined(__has_cpp_attribute) && __has_cpp_attribute(no_unique_address)
    [[no_unique_address]] TaskNode task_node_;
#else
#error "chi::Task needs [[no_unique_address]] (GCC 9, Clang 9 or later)"
#endif

    /// The seed's SHM constructor: leaves every header field as NewTask set it.
    explicit Task(const hipc::CtxAllocator<CHI_ALLOC_T> &) {}

    /// The C header.
    chi_task_t *header() { return reinterpret_cast<chi_task_t *>(this); }
    const chi_task_t *header() const { return reinterpret_cast<const chi_task_t *>(this); }

    /// Waits for the task (forever; inside a method the fiber waits, not the worker). Throws
    /// chi::Error when the wait fails or the task's rc < 0.
    void Wait() { Wait(-1); }
    /// Waits at most timeout_ns (< 0: forever). Throws chi::Error (-ETIMEDOUT: still running).
    void Wait(int64_t timeout_ns) {
        chi_client_t *h = Client::Instance().handle();
        std::string before = chi_last_error();
        detail::Check(chi_task_wait(h, header(), timeout_ns), "Task::Wait");
        if (rc_ < 0) {
            std::string now = chi_last_error();
            throw detail::MakeError(rc_, "Task::Wait", nullptr, now != before ? now : std::string());
        }
    }
    /// True once the task has completed. Never blocks.
    bool IsComplete() const { return chi_task_is_done(header()); }
    /// The method's status (0 or a positive count on success, -errno).
    int GetReturnCode() const { return rc_; }
    /// Sets the status a method reports (the value the run hook returns).
    void SetReturnCode(int rc) { rc_ = rc; }

    /// Tasks of the C ABI never own their bulk buffers (whoever allocated a buffer frees it),
    /// so there is nothing to give up; kept for the seed's Copy.
    void UnsetDataOwner() {}
    void SetDataOwner() {}
    /// The runtime re-routes by dom_query_ after kSchedule; these mark nothing.
    void SetDirect() {}
    void UnsetRouted() {}

    bool IsPeriodic() const { return task_flags_.Any(TASK_PERIODIC); }
    bool IsFireAndForget() const { return task_flags_.Any(TASK_FIRE_AND_FORGET); }
    bool IsLocal() const { return task_flags_.Any(TF_LOCAL); }
    void SetFireAndForget() { task_flags_.SetBits(TASK_FIRE_AND_FORGET); }
    void SetLaneHash(u32 h) { lane_hash_ = h; }

    /// The minimum time between runs of a periodic task (with task_flags_.SetBits(
    /// TASK_PERIODIC)); SetPeriodMs(0) leaves it unset.
    void SetPeriodNs(u64 ns) { period_ns_ = ns; }
    void SetPeriodUs(u64 us) { period_ns_ = us * 1000ull; }
    void SetPeriodMs(u64 ms) { period_ns_ = ms * 1000000ull; }
    void SetPeriodSec(u64 s) { period_ns_ = s * 1000000000ull; }
    void SetPeriodMin(u64 m) { period_ns_ = m * 60000000000ull; }
    u64 GetPeriodNs() const { return period_ns_; }
};

static_assert(sizeof(PoolId) == 8 && sizeof(DomainQuery) == sizeof(chi_domain_query_t) &&
                  sizeof(hipc::Pointer) == sizeof(chi_shm_ptr_t) && sizeof(BitField32) == 4,
              "header member types must be the C header's sizes");
static_assert(sizeof(Task) == sizeof(chi_task_t), "chi::Task must be the 128-byte task header");
static_assert(offsetof(Task, method_) == offsetof(chi_task_t, method) &&
                  offsetof(Task, pool_) == offsetof(chi_task_t, pool_id) &&
                  offsetof(Task, task_id_) == offsetof(chi_task_t, task_id) &&
                  offsetof(Task, dom_query_) == offsetof(chi_task_t, dom_query) &&
                  offsetof(Task, prio_) == offsetof(chi_task_t, prio) &&
                  offsetof(Task, task_flags_) == offsetof(chi_task_t, flags) &&
                  offsetof(Task, period_ns_) == offsetof(chi_task_t, period_ns) &&
                  offsetof(Task, done_) == offsetof(chi_task_t, done) &&
                  offsetof(Task, rc_) == offsetof(chi_task_t, rc) &&
                  offsetof(Task, runs_) == offsetof(chi_task_t, runs) &&
                  offsetof(Task, lane_hash_) == offsetof(chi_task_t, lane_hash) &&
                  offsetof(Task, parent_) == offsetof(chi_task_t, parent) &&
                  offsetof(Task, reserved_) == offsetof(chi_task_t, reserved),
              "chi::Task members must sit at chi_task_t's offsets");

/// The task flags every task of a struct carries: `struct X : public Task,
/// TaskFlags<TF_SRL_SYM>`. An empty base: it adds no bytes.
template <u32 FLAGS>
struct TaskFlags {
    static constexpr u32 kChiStaticFlags = FLAGS;
};

namespace detail {

template <typename T, typename = void>
struct StaticFlags {
    static constexpr u32 value = 0;
};
template <typename T>
struct StaticFlags<T, std::void_t<decltype(T::kChiStaticFlags)>> {
    static constexpr u32 value = T::kChiStaticFlags;
};

/// A task object that lives in this process, not in shared memory (pool creation): it
/// provides ChiSchedule(), Wait() and is freed with delete.
struct HeapTask {};

template <typename T>
void CheckTaskType() {
    static_assert(std::is_base_of<Task, T>::value, "a task struct must derive from chi::Task");
    static_assert(std::is_trivially_copyable<T>::value,
                  "a task struct lives in shared memory and is copied byte-wise: its members "
                  "must be trivially copyable (no std::string, std::vector, virtual functions)");
}

/// Builds T in the zeroed task t (from chi_task_new) and restores the header fields the
/// library owns, which T's member initialisers may have overwritten.
template <typename T, typename... Args>
T *EmplaceTask(chi_task_t *t, const TaskNode &node, const PoolId &pool, const DomainQuery &dq,
               Args &&...args) {
    CheckTaskType<T>();
    chi_task_t saved = *t;
    T *obj = new (static_cast<void *>(t))
        T(hipc::CtxAllocator<CHI_ALLOC_T>(), node, pool, dq, std::forward<Args>(args)...);
    chi_task_t *h = obj->header();
    h->size = saved.size;
    h->task_id = saved.task_id;
    h->done = saved.done;
    h->rc = saved.rc;
    h->runs = saved.runs;
    h->parent = saved.parent;
    std::memcpy(h->reserved, saved.reserved, sizeof(h->reserved));
    // The constructor owns the user bits (task_flags_.SetBits); the library's stay as they were.
    h->flags = (h->flags & CHI_TASK_USER_FLAGS) | (saved.flags & ~CHI_TASK_USER_FLAGS) |
               StaticFlags<T>::value;
    return obj;
}

}  // namespace detail

/// The seed's pool-creation context: the pool id once created (ctx_.id_), and how many
/// containers each node holds.
struct CreateContext {
    PoolId id_;
    u32 local_containers_pn_;

    CreateContext() : local_containers_pn_(1) {}
    explicit CreateContext(u32 containers_per_node) : local_containers_pn_(containers_per_node) {}
};

namespace detail {

/// Packs the fields a CreateTaskParams' serialize(ar) names into a zeroed copy of the struct
/// (the bytes chi_pool_create hands every container's create hook).
struct ParamsPacker {
    const char *base;
    size_t size;
    char *out;
    template <typename... Args>
    void operator()(Args &...args) {
        (Put(args), ...);
    }
    template <typename T>
    void Put(T &x) {
        static_assert(std::is_trivially_copyable<T>::value,
                      "create params are copied byte-wise: trivially copyable fields only");
        size_t off = static_cast<size_t>(reinterpret_cast<const char *>(&x) - base);
        if (off + sizeof(T) <= size) std::memcpy(out + off, &x, sizeof(T));
    }
    template <typename P, typename S>
    void bulk(u32, P &, S &) {
        static_assert(sizeof(P) == 0, "create params cannot hold bulk data");
    }
};

/// The reverse: takes the fields serialize(ar) names out of a params block (each only if the
/// block holds it: an older, shorter block leaves the rest as the constructor made them).
struct ParamsUnpacker {
    const char *base;
    const char *in;
    size_t n;
    template <typename... Args>
    void operator()(Args &...args) {
        (Get(args), ...);
    }
    template <typename T>
    void Get(T &x) {
        size_t off = static_cast<size_t>(reinterpret_cast<const char *>(&x) - base);
        if (off + sizeof(T) <= n) std::memcpy(&x, in + off, sizeof(T));
    }
    template <typename P, typename S>
    void bulk(u32, P &, S &) {}
};

}  // namespace detail

namespace Admin {

/// The seed's pool-creation task: `typedef chi::Admin::CreatePoolBaseTask<CreateTaskParams>
/// CreateTask;`. Scheduling it submits the admin pool's CreatePool task, carrying the
/// params' fields (those its serialize(ar) names) as the module's create parameters; Wait()
/// waits for it and stores the pool's id in ctx_.id_. It lives in this process (new/delete),
/// not in shared memory.
template <typename ParamsT>
struct CreatePoolBaseTask : public detail::HeapTask {
    typedef ParamsT Params;
    MethodId method_ = CHI_METHOD_CREATE;
    CreateContext ctx_;
    ParamsT params_;
    std::string pool_name_;
    i32 rc_ = 0;

    /// The seed's emplace constructor: (alloc, task_node, pool_id, dom_query, affinity,
    /// pool_name, ctx, then the params' own constructor arguments).
    template <typename... Args>
    CreatePoolBaseTask(const hipc::CtxAllocator<CHI_ALLOC_T> &alloc, const TaskNode &,
                       const PoolId &, const DomainQuery &, const DomainQuery &,
                       const std::string &pool_name, const CreateContext &ctx = CreateContext(),
                       Args &&...args)
        : ctx_(ctx), params_(alloc, std::forward<Args>(args)...), pool_name_(pool_name) {}
    CreatePoolBaseTask(const CreatePoolBaseTask &) = delete;
    CreatePoolBaseTask &operator=(const CreatePoolBaseTask &) = delete;
    ~CreatePoolBaseTask() { Release(); }

    /// Submits the admin task. Throws chi::Error.
    void ChiSchedule() {
        chi_client_t *h = ::chi::Client::Instance().handle();
        h_ = h;
        if (pool_name_.size() >= CHI_NAME_MAX)
            throw Error(-EINVAL, "Create(\"" + pool_name_ + "\"): the pool name is too long");
        const char *module = ParamsT::lib_name_;
        if (std::strlen(module) >= CHI_NAME_MAX)
            throw Error(-EINVAL, std::string("Create: module name ") + module + " is too long");
        // The params' bytes: a zeroed copy with the fields serialize(ar) names.
        void *buf = nullptr;
        detail::Check(chi_buffer_alloc(h, sizeof(ParamsT), &buf), "Create");
        buf_ = buf;
        std::memset(buf, 0, sizeof(ParamsT));
        detail::ParamsPacker pk{reinterpret_cast<const char *>(&params_), sizeof(ParamsT),
                                static_cast<char *>(buf)};
        params_.serialize(pk);
        chi_task_t *t = nullptr;
        detail::Check(chi_task_new(h, CHI_ADMIN_POOL_ID, CHI_ADMIN_CREATE_POOL,
                                   sizeof(chi_admin_create_pool_task_t), nullptr, &t),
                      "Create", pool_name_.c_str());
        task_ = reinterpret_cast<chi_admin_create_pool_task_t *>(t);
        std::memcpy(task_->module, module, std::strlen(module) + 1);
        std::memcpy(task_->name, pool_name_.c_str(), pool_name_.size() + 1);
        task_->containers_per_node = ctx_.local_containers_pn_ ? ctx_.local_containers_pn_ : 1;
        task_->params_size = static_cast<uint32_t>(sizeof(ParamsT));
        detail::Check(chi_ptr_to_shm(h, buf, &task_->params), "Create", pool_name_.c_str());
        detail::Check(chi_task_submit(h, t), "Create", pool_name_.c_str());
        submitted_ = true;
    }

    /// Waits for the pool (forever) and stores its id in ctx_.id_. Throws chi::Error.
    void Wait() {
        if (task_ == nullptr) throw Error(-EINVAL, "Create: the task was not scheduled");
        if (!done_) {
            std::string before = chi_last_error();
            detail::Check(chi_task_wait(h_, &task_->hdr, -1), "Create", pool_name_.c_str());
            done_ = true;
            rc_ = task_->hdr.rc;
            if (rc_ < 0) {
                std::string now = chi_last_error();
                throw detail::MakeError(rc_, "Create", pool_name_.c_str(),
                                        now != before ? now : std::string());
            }
            ctx_.id_ = PoolId(task_->pool_id);
        }
    }
    bool IsComplete() const { return task_ != nullptr && chi_task_is_done(&task_->hdr); }

private:
    void Release() noexcept {
        if (task_ != nullptr) {
            if (submitted_ && !chi_task_is_done(&task_->hdr)) chi_task_wait(h_, &task_->hdr, -1);
            chi_task_del(h_, &task_->hdr);
            task_ = nullptr;
        }
        if (buf_ != nullptr) chi_buffer_free(h_, buf_);
        buf_ = nullptr;
    }
    chi_client_t *h_ = nullptr;
    chi_admin_create_pool_task_t *task_ = nullptr;
    void *buf_ = nullptr;
    bool submitted_ = false;
    bool done_ = false;
};

/// The seed's container-destruction task (`typedef chi::Admin::DestroyContainerTask
/// DestroyTask;`): what a module's Destroy method receives when its pool is destroyed.
struct DestroyContainerTask : public Task, TaskFlags<TF_SRL_SYM> {
    PoolId id_;
    explicit DestroyContainerTask(const hipc::CtxAllocator<CHI_ALLOC_T> &alloc) : Task(alloc) {}
};

}  // namespace Admin

// ---- chi::Client's task calls ------------------------------------------------------------

template <typename T, typename... Args>
hipc::FullPtr<T> Client::NewTask(const hipc::MemContext &, const TaskNode &task_node,
                                 const PoolId &pool, const DomainQuery &dom_query,
                                 Args &&...args) {
    if constexpr (std::is_base_of<detail::HeapTask, T>::value) {
        T *t = new T(hipc::CtxAllocator<CHI_ALLOC_T>(), task_node, pool, dom_query,
                     std::forward<Args>(args)...);
        return hipc::FullPtr<T>(t, hipc::Pointer());
    } else {
        chi_client_t *h = handle();
        chi_task_t *t = nullptr;
        detail::Check(chi_task_new(h, pool.value(), 0, sizeof(T), &dom_query.raw(), &t),
                      "NewTask");
        T *obj;
        try {
            obj = detail::EmplaceTask<T>(t, task_node, pool, dom_query,
                                         std::forward<Args>(args)...);
        } catch (...) {
            chi_task_del(h, t);
            throw;
        }
        chi_shm_ptr_t shm = chi_shm_ptr_t();
        // A task made inside the runtime is private memory: it has no shared-memory pointer.
        if (detail::HookClient() == nullptr) detail::Check(chi_ptr_to_shm(h, t, &shm), "NewTask");
        return hipc::FullPtr<T>(obj, hipc::Pointer(shm));
    }
}

template <typename T, typename... Args>
hipc::FullPtr<T> Client::ScheduleNewTask(const hipc::MemContext &mctx, const PoolId &pool,
                                         const DomainQuery &dom_query, Args &&...args) {
    hipc::FullPtr<T> t = NewTask<T>(mctx, TaskNode(), pool, dom_query, std::forward<Args>(args)...);
    try {
        if constexpr (std::is_base_of<detail::HeapTask, T>::value) {
            t.ptr_->ChiSchedule();
        } else {
            detail::Check(chi_task_submit(handle(), t.ptr_->header()), "ScheduleNewTask");
        }
    } catch (...) {
        DelTask(mctx, t);
        throw;
    }
    return t;
}

template <typename T, typename... Args>
hipc::FullPtr<T> Client::ScheduleNewTask(const hipc::MemContext &mctx, Task *,
                                         const TaskNode &task_node, const PoolId &pool,
                                         const DomainQuery &dom_query, Args &&...args) {
    (void)task_node;  // the runtime knows the parent: the method that submits runs it
    return ScheduleNewTask<T>(mctx, pool, dom_query, std::forward<Args>(args)...);
}

template <typename T>
void Client::DelTask(const hipc::MemContext &mctx, const hipc::FullPtr<T> &task) {
    DelTask(mctx, task.ptr_);
}

template <typename T>
void Client::DelTask(const hipc::MemContext &, T *task) {
    if (task == nullptr) return;
    if constexpr (std::is_base_of<detail::HeapTask, T>::value) {
        delete task;
    } else {
        chi_client_t *h = handle();
        chi_task_t *t = task->header();
        int rc = chi_task_del(h, t);
        // A submitted fire-and-forget task is the runtime's: it frees it.
        if (rc == -EBUSY && (t->flags & CHI_TASK_FIRE_AND_FORGET) != 0) return;
        if (rc == -EBUSY) {
            // Still in flight: the seed's DelTask after Wait never gets here, but a task
            // dropped early must not be freed under the runtime.
            detail::Check(chi_task_wait(h, t, -1), "DelTask");
            rc = chi_task_del(h, t);
        }
        detail::Check(rc, "DelTask");
    }
}

inline TaskNode Client::MakeTaskNodeId() { return TaskNode(); }

}  // namespace chi

/// The seed's per-method client calls, inside a module's `class Client : public
/// ModuleClient`: CHI_TASK_METHODS(Compress) defines AsyncCompressAlloc (allocate only),
/// AsyncCompress (allocate and submit) and AsyncCompressBase (the same from inside a method,
/// as a subtask of `parent`), each returning hipc::FullPtr<CompressTask>.
#define CHI_TASK_METHODS(CUSTOM)                                                              \
    template <typename... Args>                                                               \
    ::hipc::FullPtr<CUSTOM##Task> Async##CUSTOM##Alloc(const ::hipc::MemContext &mctx,        \
                                                      const ::chi::TaskNode &task_node,       \
                                                      const ::chi::DomainQuery &dom_query,    \
                                                      Args &&...args) {                       \
        return CHI_CLIENT->NewTask<CUSTOM##Task>(mctx, task_node, id_, dom_query,             \
                                                 std::forward<Args>(args)...);                \
    }                                                                                         \
    template <typename... Args>                                                               \
    ::hipc::FullPtr<CUSTOM##Task> Async##CUSTOM(const ::hipc::MemContext &mctx,               \
                                               Args &&...args) {                              \
        return CHI_CLIENT->ScheduleNewTask<CUSTOM##Task>(mctx, id_,                           \
                                                         std::forward<Args>(args)...);        \
    }                                                                                         \
    template <typename... Args>                                                               \
    ::hipc::FullPtr<CUSTOM##Task> Async##CUSTOM##Base(                                        \
        const ::hipc::MemContext &mctx, ::chi::Task *parent,                                  \
        const ::chi::TaskNode &task_node, Args &&...args) {                                   \
        return CHI_CLIENT->ScheduleNewTask<CUSTOM##Task>(mctx, parent, task_node, id_,        \
                                                         std::forward<Args>(args)...);        \
    }

#endif
