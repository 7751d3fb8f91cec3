/* chimaera/api/task_ptr.h: chi::Error and chi::TaskPtr<T>, the owning handle of one task in
 * the runtime's shared memory. Header-only, C++11. Include chimaera/api/chimaera_client.h
 * rather than this file. */
#ifndef CHIMAERA_API_TASK_PTR_H
#define CHIMAERA_API_TASK_PTR_H

#include <cstdint>
#include <stdexcept>
#include <string>

#include "chimaera/api/domain_query.h"
#include "chimaera/chimaera.h"

namespace chi {

/// A failed chi_* call or task. what() is "<operation>: <chi_strerror text>: <chi_last_error
/// text>" (the last part when the library gave one); code() is the negative code the C call
/// returned (-CHI_ENOMODULE, -ETIMEDOUT, ...), or the task's negative rc.
class Error : public std::runtime_error {
public:
    Error(int code, const std::string &what) : std::runtime_error(what), code_(code) {}
    int code() const { return code_; }

private:
    int code_;
};

namespace detail {

inline Error MakeError(int rc, const char *op, const char *arg, const std::string &last) {
    std::string msg = op;
    if (arg != nullptr) msg = msg + "(\"" + arg + "\")";
    const char *text = chi_strerror(rc);
    msg = msg + ": " + text;
    if (!last.empty() && last != text) msg += ": " + last;
    return Error(rc, msg);
}

/// Throws the error of a failed call. chi_last_error() is copied before anything else runs:
/// the string is only valid until this thread's next chi_* call.
[[noreturn]] inline void Throw(int rc, const char *op, const char *arg = nullptr) {
    std::string last = chi_last_error();
    throw MakeError(rc, op, arg, last);
}

/// Returns rc, or throws chi::Error when it is negative.
inline int Check(int rc, const char *op, const char *arg = nullptr) {
    if (rc < 0) Throw(rc, op, arg);
    return rc;
}

}  // namespace detail

/// Owns one task (T is a C task struct whose first member is its chi_task_t header, such as
/// chi_sm_md_task_t). Move-only. The destructor waits for a task still in flight (forever:
/// only a dead runtime ends that wait early) and then frees it, so no task leaks on any path,
/// exceptions included. A fire-and-forget task belongs to the runtime once submitted, and the
/// TaskPtr becomes empty. Not thread-safe: one thread uses a TaskPtr at a time.
template <typename T>
class TaskPtr {
public:
    TaskPtr() : client_(nullptr), task_(nullptr), op_("task"), submitted_(false) {}
    /// Takes ownership of a task allocated with chi_task_new on client. op names the
    /// operation in error messages (a string literal: it is not copied).
    TaskPtr(chi_client_t *client, T *task, const char *op)
        : client_(client), task_(task), op_(op), submitted_(false) {}
    TaskPtr(TaskPtr &&o) noexcept
        : client_(o.client_), task_(o.task_), op_(o.op_), submitted_(o.submitted_) {
        o.task_ = nullptr;
    }
    TaskPtr &operator=(TaskPtr &&o) noexcept {
        if (this != &o) {
            reset();
            client_ = o.client_;
            task_ = o.task_;
            op_ = o.op_;
            submitted_ = o.submitted_;
            o.task_ = nullptr;
        }
        return *this;
    }
    TaskPtr(const TaskPtr &) = delete;
    TaskPtr &operator=(const TaskPtr &) = delete;
    ~TaskPtr() { reset(); }

    /// Allocates a zeroed task of sizeof(T) for (pool, method) routed by dq. Throws chi::Error.
    static TaskPtr New(chi_client_t *client, uint64_t pool, uint32_t method,
                       const DomainQuery &dq, const char *op) {
        static_assert(sizeof(T) >= sizeof(chi_task_t), "T must start with a chi_task_t header");
        chi_task_t *t = nullptr;
        detail::Check(chi_task_new(client, pool, method, sizeof(T), &dq.raw(), &t), op);
        return TaskPtr(client, reinterpret_cast<T *>(t), op);
    }

    T *get() const { return task_; }
    T *operator->() const { return task_; }
    T &operator*() const { return *task_; }
    explicit operator bool() const { return task_ != nullptr; }
    chi_task_t *header() const { return reinterpret_cast<chi_task_t *>(task_); }
    /// The method's status once done: 0 or a positive count on success, -errno on failure.
    int rc() const { return header()->rc; }
    /// True once the task has completed. Never blocks.
    bool IsDone() const { return task_ != nullptr && chi_task_is_done(header()); }

    /// Hands the task to the runtime without waiting. Throws chi::Error (-EAGAIN when the
    /// runtime's queue stays full, -CHI_ENORUNTIME when it is gone).
    void Submit() {
        chi_task_t *h = Header();
        detail::Check(chi_task_submit(client_, h), op_);
        submitted_ = true;
        if (h->flags & CHI_TASK_FIRE_AND_FORGET) task_ = nullptr;
    }

    /// Waits for a submitted task (timeout_ns < 0: forever) and returns it. Throws chi::Error
    /// when the wait fails (-ETIMEDOUT: the task is still in flight) or the task's rc < 0.
    T &Wait(int64_t timeout_ns = -1) {
        chi_task_t *h = Header();
        // chi_task_wait sets chi_last_error() only when the runtime attached a message to a
        // failed task; otherwise the thread's previous message remains. Remember it, so a
        // stale message is not reported as this task's.
        std::string before = chi_last_error();
        detail::Check(chi_task_wait(client_, h, timeout_ns), op_);
        if (h->rc < 0) {
            std::string now = chi_last_error();
            throw detail::MakeError(h->rc, op_, nullptr, now != before ? now : std::string());
        }
        return *task_;
    }

    /// Submits, waits (timeout_ns as Wait) and returns the task. Throws like Submit and Wait.
    T &Call(int64_t timeout_ns = -1) {
        chi_task_t *h = Header();
        if (h->flags & CHI_TASK_FIRE_AND_FORGET)
            throw Error(-EINVAL, std::string(op_) + ": a fire-and-forget task cannot be waited for");
        int rc = chi_task_call(client_, h, timeout_ns);
        submitted_ = true;
        detail::Check(rc, op_);  // chi_task_call always sets chi_last_error() on failure
        return *task_;
    }

    /// Frees the task now (waiting first if it is in flight); the TaskPtr becomes empty.
    /// Never throws: a task the library refuses to free (its handle is gone) is left behind.
    void reset() noexcept {
        if (task_ == nullptr) return;
        chi_task_t *h = header();
        if (submitted_ && !chi_task_is_done(h)) chi_task_wait(client_, h, -1);
        chi_task_del(client_, h);
        task_ = nullptr;
    }

    /// Gives up ownership: the caller must chi_task_del the task.
    T *release() noexcept {
        T *t = task_;
        task_ = nullptr;
        return t;
    }

private:
    chi_task_t *Header() const {
        if (task_ == nullptr) throw Error(-EINVAL, std::string(op_) + ": empty TaskPtr");
        return header();
    }

    chi_client_t *client_;
    T *task_;
    const char *op_;
    bool submitted_;
};

}  // namespace chi

#endif
