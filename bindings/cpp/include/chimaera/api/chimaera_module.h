/* chimaera/api/chimaera_module.h: the seed's module (runtime) side in C++ over the C module
 * vtable of chimaera/module.h. Header-only, C++17; a module links -lchimaera.
 *
 *   class Server : public Module {
 *    public:
 *     CLS_CONST QueueId kDefaultGroup = 0;
 *     void Create(CreateTask *task, RunContext &rctx) {
 *       CreateQueue(kDefaultGroup, 1, QUEUE_LOW_LATENCY);
 *     }
 *     Lane *MapTaskToLane(const Task *task) override {
 *       return GetLaneByHash(kDefaultGroup, task->prio_, 0);
 *     }
 *     void Compress(CompressTask *task, RunContext &rctx) { ... }
 *     void MonitorCompress(MonitorModeId mode, CompressTask *task, RunContext &rctx) {}
 *    public:
 *   #include "compressor/compressor_lib_exec.h"   // ChiRegister: the method table
 *   };
 *   CHI_TASK_CC(Server, "example_compressor");     // exports chi_module_entry
 *
 * The descriptors the runtime needs (chi_method_desc_t / chi_field_desc_t) come from each task
 * struct's own SerializeIn and SerializeOut, run once when the vtable is first asked for, on a
 * task built by its SHM constructor, with a recording archive: `ar(a, b)` and `ar.bulk(mode,
 * ptr, size)` give each field's offset (its address minus the task's), size, type, direction
 * (seen in SerializeIn: IN, in SerializeOut: OUT, in both: INOUT) and bulk mode. The field
 * names come from the generated ChiRegister (chi_refresh_repo reads them from the same
 * calls). There is no other declaration and no serialisation code: the runtime copies, checks
 * and forwards tasks by these descriptors.
 *
 * Hooks run on runtime workers inside fibers. A method may spawn subtasks (AsyncXBase, or
 * CHI_CLIENT->ScheduleNewTask) and Wait() on them: the wait suspends its fiber, not the
 * worker. An exception thrown by a method becomes the task's rc (chi::Error's code, -ENOMEM
 * for std::bad_alloc, -EIO otherwise); none crosses into the runtime. */
#ifndef CHIMAERA_API_CHIMAERA_MODULE_H
#define CHIMAERA_API_CHIMAERA_MODULE_H

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "chimaera/api/chimaera_task.h"
#include "chimaera/api/field_recorder.h"
#include "chimaera/module.h"

namespace chi {

/// CreateQueue flags: the priority of a lane group's lanes (one per group).
constexpr u32 QUEUE_LOW_LATENCY = 0x1u;
constexpr u32 QUEUE_HIGH_LATENCY = 0x2u;

/// A lane's load, as GetLeastLoadedLane's comparator sees it: the tasks this module mapped
/// to the lane that have not finished running (cpu_load_), counted by this layer.
struct Load {
    u64 cpu_load_ = 0;
    u64 io_load_ = 0;
};

/// One lane of a container: a FIFO the runtime runs on one worker. MapTaskToLane returns one.
class Lane {
public:
    QueueId group_;
    u32 index_;        // within its group
    int id_;           // the runtime's lane index (chi_lane_by_hash)
    TaskPrio prio_;
    std::atomic<u64> inflight_{0};

    Load GetLoad() const {
        Load l;
        l.cpu_load_ = inflight_.load(std::memory_order_relaxed);
        return l;
    }
};

class Module;

/// The context of one running task: the C run context, the container's server, and during
/// MonitorMode::kReplicaAgg the replicas (completed copies of the task).
struct RunContext {
    chi_rctx_t *rctx_ = nullptr;
    Module *module_ = nullptr;
    std::vector<FullPtr<Task>> *replicas_ = nullptr;

    /// The address of [p, p + size) in the runtime, checked to lie in one buffer the task's
    /// submitter holds. Throws chi::Error(-EFAULT) when it does not.
    template <typename T = char>
    T *Resolve(const hipc::Pointer &p, size_t size) const {
        void *a = rctx_ != nullptr ? chi_rctx_shm_ptr(rctx_, p.shm_, size) : nullptr;
        if (a == nullptr && size != 0)
            throw Error(-EFAULT, "RunContext::Resolve: the buffer is not inside shared memory "
                                 "the task's submitter holds");
        return static_cast<T *>(a);
    }
    /// The id of the worker running the task.
    u32 GetWorkerId() const { return rctx_ != nullptr ? chi_rctx_worker(rctx_) : 0; }
};

/// The base of a module's `class Server`: its container and lanes.
class Module {
public:
    chi_container_t *container_ = nullptr;
    PoolId pool_id_;
    u32 container_id_ = 0;

    Module() = default;
    virtual ~Module() = default;
    Module(const Module &) = delete;
    Module &operator=(const Module &) = delete;

    /// Routes a task to one of the container's lanes. The default: group 0 by the task's
    /// lane_hash_.
    virtual Lane *MapTaskToLane(const Task *task) {
        return GetLaneByHash(0, task->prio_, task->lane_hash_);
    }

    /// Adds lane group `group` of `count` lanes with QUEUE_LOW_LATENCY or QUEUE_HIGH_LATENCY
    /// priority. Call from Create. Throws chi::Error (-EINVAL: the group exists, count is 0 or
    /// over 1024, or both priorities are asked for: a group has one).
    void CreateQueue(QueueId group, u32 count, u32 flags = QUEUE_LOW_LATENCY) {
        bool hi = (flags & QUEUE_HIGH_LATENCY) != 0, lo = (flags & QUEUE_LOW_LATENCY) != 0;
        if (hi && lo)
            throw Error(-EINVAL, "CreateQueue: a lane group has one priority, not both");
        u32 prio = hi ? CHI_PRIO_HIGH_LATENCY : CHI_PRIO_LOW_LATENCY;
        detail::Check(chi_container_add_lanes(container_, group, count, prio), "CreateQueue");
        Group &g = groups_[group];
        g.lanes.clear();
        for (u32 i = 0; i < count; i++) {
            std::unique_ptr<Lane> l(new Lane());
            l->group_ = group;
            l->index_ = i;
            l->id_ = chi_lane_by_hash(container_, group, i);
            l->prio_ = prio;
            g.lanes.push_back(std::move(l));
        }
    }

    /// The lane of `group` chosen by hash (prio is the group's own; it is accepted for the
    /// seed's signature). Throws chi::Error(-EINVAL) for a group CreateQueue did not add.
    Lane *GetLaneByHash(QueueId group, TaskPrio prio, u64 hash) {
        (void)prio;
        Group &g = GetGroup(group, "GetLaneByHash");
        return g.lanes[hash % g.lanes.size()].get();
    }
    /// The lane of `group` whose Load is least by `less` (the seed's comparator, called as
    /// less(Load &a, Load &b)); ties go to the lower index.
    template <typename Less>
    Lane *GetLeastLoadedLane(QueueId group, TaskPrio prio, Less less) {
        (void)prio;
        Group &g = GetGroup(group, "GetLeastLoadedLane");
        Lane *best = g.lanes[0].get();
        Load best_load = best->GetLoad();
        for (size_t i = 1; i < g.lanes.size(); i++) {
            Load l = g.lanes[i]->GetLoad();
            if (less(l, best_load)) {
                best = g.lanes[i].get();
                best_load = l;
            }
        }
        return best;
    }
    /// Lane `idx` of `group`.
    Lane *GetLane(QueueId group, u32 idx) {
        Group &g = GetGroup(group, "GetLane");
        if (idx >= g.lanes.size()) throw Error(-EINVAL, "GetLane: no such lane");
        return g.lanes[idx].get();
    }
    /// The number of lanes of `group` (0 if it does not exist).
    u32 GetLaneCount(QueueId group) const {
        auto it = groups_.find(group);
        return it == groups_.end() ? 0 : static_cast<u32>(it->second.lanes.size());
    }

    // ---- for the module layer (ModuleExport) ----

    /// Counts a task against the lane it was mapped to, until it finishes running.
    void ChiTrackMapped(const void *task, Lane *lane) {
        std::lock_guard<std::mutex> g(mapped_mu_);
        // A task refused after mapping never runs: keep the table bounded.
        if (mapped_.size() > 65536) {
            for (auto &e : mapped_) e.second->inflight_.fetch_sub(1, std::memory_order_relaxed);
            mapped_.clear();
        }
        auto r = mapped_.emplace(task, lane);
        if (!r.second) {
            r.first->second->inflight_.fetch_sub(1, std::memory_order_relaxed);
            r.first->second = lane;
        }
        lane->inflight_.fetch_add(1, std::memory_order_relaxed);
    }
    void ChiTrackDone(const void *task) {
        std::lock_guard<std::mutex> g(mapped_mu_);
        auto it = mapped_.find(task);
        if (it == mapped_.end()) return;
        it->second->inflight_.fetch_sub(1, std::memory_order_relaxed);
        mapped_.erase(it);
    }

private:
    struct Group {
        std::vector<std::unique_ptr<Lane>> lanes;
    };
    Group &GetGroup(QueueId group, const char *op) {
        auto it = groups_.find(group);
        if (it == groups_.end() || it->second.lanes.empty())
            throw Error(-EINVAL, std::string(op) + ": lane group " + std::to_string(group) +
                                     " was not created (CreateQueue in Create)");
        return it->second;
    }
    std::unordered_map<QueueId, Group> groups_;
    std::mutex mapped_mu_;
    std::unordered_map<const void *, Lane *> mapped_;
};

namespace detail {

template <typename M>
struct RunTraits;
template <typename S, typename T>
struct RunTraits<void (S::*)(T *, RunContext &)> {
    typedef S Server;
    typedef T TaskT;
};
template <typename M>
struct MonitorTraits;
template <typename S, typename T>
struct MonitorTraits<void (S::*)(MonitorModeId, T *, RunContext &)> {
    typedef T TaskT;
};

/// Every hook sets the thread's hook client (see HookClient in chimaera_client.h).
inline void EnterHook(chi_rctx_t *rctx) {
    if (rctx != nullptr) HookClient() = chi_rctx_client(rctx);
}

/// Runs f, turning any exception into a negative status.
template <typename F>
int Guard(F &&f) {
    try {
        return f();
    } catch (const Error &e) {
        return e.code() < 0 ? e.code() : -EIO;
    } catch (const std::bad_alloc &) {
        return -ENOMEM;
    } catch (...) {
        return -EIO;
    }
}

}  // namespace detail

/// The method table a Server's generated ChiRegister fills, and from which the vtable is
/// built.
template <typename S>
class MethodTable {
public:
    typedef int (*RunFn)(S *, chi_task_t *, chi_rctx_t *);
    typedef int (*MonitorFn)(S *, u32, chi_task_t *, chi_rctx_t *);

    struct Entry {
        u32 id;
        std::string name;
        u32 task_size;
        u32 flags;
        std::vector<std::string> field_names;
        std::vector<chi_field_desc_t> fields;
        RunFn run;
        MonitorFn monitor;
    };

    /// Declares kCreate: the server's Create(CreateTask *, RunContext &), whose params'
    /// serialize(ar) names the fields (names: the generated list) copied from the pool's
    /// create parameters.
    template <auto CreateFn>
    void Create(std::initializer_list<const char *> names = {}) {
        typedef typename detail::RunTraits<decltype(CreateFn)>::TaskT CreateT;
        static_assert(std::is_base_of<detail::HeapTask, CreateT>::value,
                      "Create takes a chi::Admin::CreatePoolBaseTask<CreateTaskParams>");
        create_ = &CreateThunk<CreateFn>;
#ifdef CHI_MF_CREATE_PARAMS
        // ABI 1.7: the create params' layout, for bindings that build them by name.
        RecordParams<typename CreateT::Params>(names);
#else
        (void)names;
#endif
    }
    /// Declares kDestroy: the server's Destroy(DestroyTask *, RunContext &).
    template <auto DestroyFn>
    void Destroy() {
        destroy_ = &DestroyThunk<DestroyFn>;
    }
    /// Declares a method: RunFn is `void X(XTask *, RunContext &)`, MonFn `void
    /// MonitorX(MonitorModeId, XTask *, RunContext &)` (or nullptr). `names` are the fields'
    /// names in the order SerializeIn then SerializeOut first name them.
    template <auto Run, auto Mon = nullptr>
    void Method(u32 id, const char *name, std::initializer_list<const char *> names = {}) {
        typedef typename detail::RunTraits<decltype(Run)>::TaskT T;
        detail::CheckTaskType<T>();
        Entry e;
        e.id = id;
        e.name = name;
        e.task_size = static_cast<u32>(sizeof(T));
        e.flags = CHI_MF_PERIODIC_OK;
#ifdef CHI_MF_LOCAL
        // TaskFlags<TF_LOCAL>: the method is local whoever builds its tasks (a binding that
        // reads the descriptors never sees the struct's static flags).
        if ((detail::StaticFlags<T>::value & TF_LOCAL) != 0) e.flags |= CHI_MF_LOCAL;
#endif
        for (const char *n : names) e.field_names.push_back(n);
        e.run = &RunThunk<Run>;
        if constexpr (std::is_same<decltype(Mon), std::nullptr_t>::value) {
            e.monitor = nullptr;
        } else {
            e.monitor = &MonitorThunk<Mon>;
        }
        Record<T>(e);
        entries_.push_back(std::move(e));
    }

    std::vector<Entry> entries_;
    int (*create_)(S *, const void *, u32, chi_container_t *) = nullptr;
    void (*destroy_)(S *) = nullptr;
    std::string error_;

    const Entry *Find(u32 id) const {
        for (const Entry &e : entries_)
            if (e.id == id) return &e;
        return nullptr;
    }

private:
#ifdef CHI_MF_CREATE_PARAMS
    template <typename P>
    void RecordParams(std::initializer_list<const char *> names) {
        Entry e;
        e.id = CHI_METHOD_CREATE;
        e.name = "Create";
        e.task_size = static_cast<u32>(sizeof(P));
        e.flags = CHI_MF_CREATE_PARAMS;
        for (const char *n : names) e.field_names.push_back(n);
        e.run = nullptr;
        e.monitor = nullptr;
        P p{};
        detail::FieldRecorder rec(&p, sizeof(P), 0);
        p.serialize(rec);
        Describe(e, rec);
        entries_.push_back(std::move(e));
    }
#endif

    template <typename T>
    void Record(Entry &e) {
        alignas(64) unsigned char buf[sizeof(T)];
        std::memset(buf, 0, sizeof(T));
        T *t = new (buf) T(hipc::CtxAllocator<CHI_ALLOC_T>());
        detail::FieldRecorder rec(t, sizeof(T));
        if constexpr (detail::HasSerializeIn<T>::value) {
            rec.SetPhase(CHI_DIR_IN);
            t->SerializeIn(rec);
        }
        if constexpr (detail::HasSerializeOut<T>::value) {
            rec.SetPhase(CHI_DIR_OUT);
            t->SerializeOut(rec);
        }
        Describe(e, rec);
    }

    /// Fills e.fields (and names) from what the recorder saw.
    void Describe(Entry &e, const detail::FieldRecorder &rec) {
        if (!rec.error().empty() && error_.empty())
            error_ = "method " + e.name + ": " + rec.error();
        const std::vector<detail::RecordedField> &fs = rec.fields();
        bool named = e.field_names.size() == fs.size();
        if (!named) {
            if (!e.field_names.empty())
                std::fprintf(stderr,
                             "chimaera: method %s serialises %zu fields but its generated "
                             "names list has %zu (run chi_refresh_repo): fields are named "
                             "by offset\n",
                             e.name.c_str(), fs.size(), e.field_names.size());
            e.field_names.clear();
            for (const detail::RecordedField &f : fs)
                e.field_names.push_back("field" + std::to_string(f.offset));
        }
        for (size_t i = 0; i < fs.size(); i++) {
            const detail::RecordedField &f = fs[i];
            chi_field_desc_t d;
            d.name = nullptr;  // set once the names vector no longer moves
            d.offset = f.offset;
            d.size = f.size;
            d.type = f.type;
            d.dir = f.dir;
            d.bulk_size_field = -1;
            d.bulk_mode = f.type == CHI_FT_BULK ? f.bulk_mode : 0;
            if (f.type == CHI_FT_BULK)
                for (size_t j = 0; j < fs.size(); j++)
                    if (static_cast<long>(fs[j].offset) == f.size_offset)
                        d.bulk_size_field = static_cast<int32_t>(j);
            e.fields.push_back(d);
        }
    }

    template <auto Run>
    static int RunThunk(S *s, chi_task_t *task, chi_rctx_t *rctx) {
        typedef typename detail::RunTraits<decltype(Run)>::TaskT T;
        detail::EnterHook(rctx);
        T *t = reinterpret_cast<T *>(task);
        t->rc_ = 0;
        RunContext rc;
        rc.rctx_ = rctx;
        rc.module_ = s;
        int r = detail::Guard([&] {
            (s->*Run)(t, rc);
            return t->rc_;
        });
        s->ChiTrackDone(task);
        return r;
    }

    template <auto Mon>
    static int MonitorThunk(S *s, u32 mode, chi_task_t *task, chi_rctx_t *rctx) {
        typedef typename detail::MonitorTraits<decltype(Mon)>::TaskT T;
        detail::EnterHook(rctx);
        return detail::Guard([&] {
            std::vector<FullPtr<Task>> replicas;
            int rc = 0;
            if (mode == CHI_MONITOR_REPLICA_AGG) {
                u32 n = chi_rctx_replica_count(rctx);
                for (u32 i = 0; i < n; i++) {
                    chi_task_t *r = chi_rctx_replica(rctx, i);
                    if (r == nullptr) continue;
                    replicas.push_back(FullPtr<Task>(reinterpret_cast<Task *>(r), hipc::Pointer()));
                    if (r->rc < 0 && rc == 0) rc = r->rc;
                }
                // The default fold, which MonitorX may then override: the first replica's
                // outputs and the first failure.
                if (!replicas.empty() && replicas[0]->size_ == task->size)
                    std::memcpy(CHI_TASK_PARAMS(task), CHI_TASK_PARAMS(replicas[0]->header()),
                                task->size - sizeof(chi_task_t));
            }
            RunContext ctx;
            ctx.rctx_ = rctx;
            ctx.module_ = s;
            ctx.replicas_ = &replicas;
            (s->*Mon)(mode, reinterpret_cast<T *>(task), ctx);
            return rc;
        });
    }

    template <typename CreateT>
    static int UnpackParams(void *task, const void *params, u32 params_size) {
        typedef typename CreateT::Params P;
        CreateT *t = static_cast<CreateT *>(task);
        detail::ParamsUnpacker u{reinterpret_cast<const char *>(&t->params_),
                                 static_cast<const char *>(params),
                                 params != nullptr ? params_size : 0u};
        static_assert(std::is_trivially_copyable<P>::value,
                      "create params are copied byte-wise: trivially copyable fields only");
        t->params_.serialize(u);
        return 0;
    }

    template <auto CreateFn>
    static int CreateThunk(S *s, const void *params, u32 params_size, chi_container_t *c) {
        typedef typename detail::RunTraits<decltype(CreateFn)>::TaskT CreateT;
        return detail::Guard([&] {
            std::unique_ptr<CreateT> t(new CreateT(hipc::CtxAllocator<CHI_ALLOC_T>(), TaskNode(),
                                                   PoolId(chi_container_pool_id(c)), DomainQuery(),
                                                   DomainQuery(), std::string(), CreateContext()));
            t->ctx_.id_ = PoolId(chi_container_pool_id(c));
            UnpackParams<CreateT>(t.get(), params, params_size);
            RunContext rc;
            rc.module_ = s;
            (s->*CreateFn)(t.get(), rc);
            return t->rc_;
        });
    }

    template <auto DestroyFn>
    static void DestroyThunk(S *s) {
        typedef typename detail::RunTraits<decltype(DestroyFn)>::TaskT DestroyT;
        detail::Guard([&] {
            alignas(64) unsigned char buf[sizeof(DestroyT)];
            std::memset(buf, 0, sizeof(DestroyT));
            DestroyT *t = new (buf) DestroyT(hipc::CtxAllocator<CHI_ALLOC_T>());
            t->id_ = s->pool_id_;
            RunContext rc;
            rc.module_ = s;
            (s->*DestroyFn)(t, rc);
            return 0;
        });
    }
};

/// Builds and holds the C vtable of Server S (its ChiRegister, from the generated
/// NAME_lib_exec.h, fills the method table).
template <typename S>
class ModuleExport {
public:
    /// The vtable, built on the first call (thread-safe); NULL, with the reason on stderr,
    /// when a task struct's serialisation cannot be described.
    static const chi_module_vtable_t *Vtable(const char *name, u32 version = 1) {
        static ModuleExport *self = Build(name, version);
        return self != nullptr ? &self->vt_ : nullptr;
    }

private:
    static ModuleExport *Build(const char *name, u32 version) {
        ModuleExport *m = new ModuleExport();
        try {
            S::ChiRegister(m->table_);
        } catch (const std::exception &e) {
            m->table_.error_ = e.what();
        }
        if (!m->table_.error_.empty()) {
            std::fprintf(stderr, "chimaera: module %s: %s\n", name, m->table_.error_.c_str());
            delete m;
            return nullptr;
        }
        m->name_ = name;
        for (auto &e : m->table_.entries_) {
            for (size_t i = 0; i < e.fields.size(); i++) {
                // The descriptors name fields without the seed's trailing underscore.
                std::string &n = e.field_names[i];
                if (n.size() > 1 && n.back() == '_') n.pop_back();
                e.fields[i].name = n.c_str();
            }
            chi_method_desc_t d;
            std::memset(&d, 0, sizeof d);
            d.id = e.id;
            d.task_size = e.task_size;
            d.flags = e.flags;
            d.nfields = static_cast<u32>(e.fields.size());
            d.name = e.name.c_str();
            d.fields = e.fields.empty() ? nullptr : e.fields.data();
            d.handler = nullptr;
            m->methods_.push_back(d);
        }
        chi_module_vtable_t &vt = m->vt_;
        std::memset(&vt, 0, sizeof vt);
        vt.size = sizeof(chi_module_vtable_t);
        vt.abi_major = CHI_ABI_MAJOR;
        vt.abi_minor = CHI_ABI_MINOR;
        vt.name = m->name_.c_str();
        vt.version = version;
        vt.nmethods = static_cast<u32>(m->methods_.size());
        vt.methods = m->methods_.empty() ? nullptr : m->methods_.data();
        vt.create = &CreateHook;
        vt.destroy = &DestroyHook;
        vt.run = &RunHook;
        vt.monitor = &MonitorHook;
        vt.map_task_to_lane = &MapHook;
        instance_ = m;
        return m;
    }

    static int CreateHook(chi_container_t *c, const void *params, uint32_t params_size, void **state) {
        S *s = nullptr;
        int rc = detail::Guard([&] {
            s = new S();
            return 0;
        });
        if (rc < 0) return rc;
        s->container_ = c;
        s->pool_id_ = PoolId(chi_container_pool_id(c));
        s->container_id_ = chi_container_id(c);
        const MethodTable<S> &t = instance_->table_;
        detail::InLifecycleHook() = true;
        if (t.create_ != nullptr) rc = t.create_(s, params, params_size, c);
        detail::InLifecycleHook() = false;
        if (rc < 0) {
            delete s;
            return rc;
        }
        *state = s;
        return 0;
    }
    static void DestroyHook(chi_container_t *, void *state) {
        S *s = static_cast<S *>(state);
        detail::InLifecycleHook() = true;
        if (instance_->table_.destroy_ != nullptr) instance_->table_.destroy_(s);
        detail::InLifecycleHook() = false;
        delete s;
    }
    static int RunHook(void *state, chi_task_t *task, chi_rctx_t *rctx) {
        const typename MethodTable<S>::Entry *e = instance_->table_.Find(task->method);
        if (e == nullptr || e->run == nullptr || task->size < e->task_size) return -CHI_ENOMETHOD;
        return e->run(static_cast<S *>(state), task, rctx);
    }
    static int MonitorHook(void *state, uint32_t mode, chi_task_t *task, chi_rctx_t *rctx) {
        const typename MethodTable<S>::Entry *e = instance_->table_.Find(task->method);
        if (e == nullptr || e->monitor == nullptr) return 0;
        return e->monitor(static_cast<S *>(state), mode, task, rctx);
    }
    static int MapHook(void *state, chi_container_t *, const chi_task_t *task) {
        S *s = static_cast<S *>(state);
        Lane *lane = nullptr;
        int rc = detail::Guard([&] {
            lane = s->MapTaskToLane(reinterpret_cast<const Task *>(task));
            return 0;
        });
        if (rc < 0) return rc;
        if (lane == nullptr) return -EINVAL;
        s->ChiTrackMapped(task, lane);
        return lane->id_;
    }

    MethodTable<S> table_;
    std::vector<chi_method_desc_t> methods_;
    std::string name_;
    chi_module_vtable_t vt_;
    static inline ModuleExport *instance_ = nullptr;
};

}  // namespace chi

/// Exports a module's entry point (chi_module_entry) for its Server class, under the module
/// name the runtime loads it by (lib<NAME>.so; the CreateTaskParams' lib_name_).
#define CHI_TASK_CC(SERVER, NAME)                                                             \
    extern "C" __attribute__((visibility("default"))) const chi_module_vtable_t *             \
    chi_module_entry(void) {                                                                  \
        return ::chi::ModuleExport<SERVER>::Vtable(NAME);                                     \
    }                                                                                         \
    static_assert(true, "")

#endif
