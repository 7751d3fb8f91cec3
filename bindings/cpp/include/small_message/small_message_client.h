/* small_message/small_message_client.h: the client of the small_message module (latency
 * probes and bulk-transfer checks). Header-only, C++11, over chimaera/small_message.h.
 *
 * Md(depth) returns 1 (with depth > 0 it first chains Md(depth - 1) through the next
 * container); a broadcast Md returns the number of containers that answered. Io moves a
 * shared-memory buffer: kIoWrite has the runtime check every byte equals the pattern, kIoRead
 * has it fill the buffer; both return the bytes handled. */
#ifndef SMALL_MESSAGE_SMALL_MESSAGE_CLIENT_H
#define SMALL_MESSAGE_SMALL_MESSAGE_CLIENT_H

#include <string>

#include "chimaera/api/chimaera_client.h"
#include "chimaera/small_message.h"

namespace chi {
namespace small_message {

/// The methods' task layouts (plain C structs: the header, then IN and OUT fields).
typedef chi_sm_md_task_t MdTask;
typedef chi_sm_io_task_t IoTask;

/// Io directions.
enum IoFlags : uint32_t {
    kIoWrite = CHI_SM_IO_WRITE,  ///< client -> runtime: the runtime checks the data
    kIoRead = CHI_SM_IO_READ,    ///< runtime -> client: the runtime fills the buffer
};

/// A client of one small_message pool. Calls throw chi::Error on failure, including a task
/// that ran and failed (its rc).
class Client : public ModuleClient {
public:
    /// Creates (or finds, by name) the pool pool_name with containers_per_node containers,
    /// registering the module on demand. dom_query (the admin container) and affinity (the
    /// nodes the pool spans) are accepted for the seed's shape: the C ABI sends creation to
    /// the admin pool's container 0, and a runtime is one node.
    void Create(const hipc::MemContext &, const DomainQuery &, const DomainQuery &,
                const std::string &pool_name, uint32_t containers_per_node = 1) {
        id_ = detail::CreatePool(CHI_SM_MODULE_NAME, pool_name, containers_per_node, nullptr, 0);
    }

    /// Starts Md on the containers dom selects and returns the task; Wait() on it, then read
    /// its `ret`: int one = client.AsyncMd(...).Wait().ret. task_flags are CHI_TASK_* bits
    /// (with CHI_TASK_FIRE_AND_FORGET the returned TaskPtr is empty).
    TaskPtr<MdTask> AsyncMd(const hipc::MemContext &, const DomainQuery &dom, uint32_t depth,
                            uint32_t task_flags) {
        TaskPtr<MdTask> t = NewMd(dom, depth, task_flags);
        t.Submit();
        return t;
    }

    /// Runs Md and returns its `ret` (1; for a broadcast, the number of containers).
    int Md(const hipc::MemContext &, const DomainQuery &dom, uint32_t depth,
           uint32_t task_flags) {
        TaskPtr<MdTask> t = NewMd(dom, depth, task_flags);
        return t.Call().ret;
    }

    /// Starts Io over data[0, size) and returns the task (its `ret` counts the bytes).
    TaskPtr<IoTask> AsyncIo(const hipc::MemContext &, const DomainQuery &dom,
                            const hipc::Pointer &data, size_t size, uint32_t io_flags,
                            uint8_t pattern, uint32_t task_flags = 0) {
        TaskPtr<IoTask> t = NewIo(dom, data, size, io_flags, pattern, task_flags);
        t.Submit();
        return t;
    }

    /// Runs Io and returns the bytes checked or filled. A kIoWrite whose data differs from
    /// the pattern throws chi::Error(-EIO).
    uint64_t Io(const hipc::MemContext &, const DomainQuery &dom, const hipc::Pointer &data,
                size_t size, uint32_t io_flags, uint8_t pattern) {
        TaskPtr<IoTask> t = NewIo(dom, data, size, io_flags, pattern, 0);
        return t.Call().ret;
    }

private:
    TaskPtr<MdTask> NewMd(const DomainQuery &dom, uint32_t depth, uint32_t task_flags) {
        TaskPtr<MdTask> t = NewTask<MdTask>(CHI_SM_MD, dom, "small_message::Md");
        t->hdr.flags |= task_flags & CHI_TASK_USER_FLAGS;
        t->depth = depth;
        return t;
    }

    TaskPtr<IoTask> NewIo(const DomainQuery &dom, const hipc::Pointer &data, size_t size,
                          uint32_t io_flags, uint8_t pattern, uint32_t task_flags) {
        TaskPtr<IoTask> t = NewTask<IoTask>(CHI_SM_IO, dom, "small_message::Io");
        t->hdr.flags |= task_flags & CHI_TASK_USER_FLAGS;
        t->data = data.shm_;
        t->size = size;
        t->io_flags = io_flags;
        t->pattern = pattern;
        return t;
    }
};

}  // namespace small_message
}  // namespace chi

#endif
