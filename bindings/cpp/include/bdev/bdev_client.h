/* bdev/bdev_client.h: the client of the bdev block-device module, in the seed's shape.
 * Header-only, C++11, over chimaera/bdev.h.
 *
 *   chi::bdev::Client client;
 *   client.Create(HSHM_MCTX, chi::DomainQuery::GetDirectHash(chi::SubDomain::kGlobalContainers, 0),
 *                 chi::DomainQuery::GetGlobalBcast(), "tempdir", "fs:///tmp/chi_bdev.bin", MEGABYTES(64));
 *   std::vector<chi::Block> blocks = client.Allocate(HSHM_MCTX, chi::DomainQuery::GetDynamic(), MEGABYTES(1));
 *   client.Write(HSHM_MCTX, dom, buf.shm_, blocks[0]);   // buf from CHI_CLIENT->AllocateBuffer
 *   client.Read(HSHM_MCTX, dom, buf.shm_, blocks[0]);
 */
#ifndef BDEV_BDEV_CLIENT_H
#define BDEV_BDEV_CLIENT_H

#include <string>
#include <vector>

#include "chimaera/api/chimaera_client.h"
#include "chimaera/bdev.h"

namespace chi {

/// A range of one container's device (offset, size, container), as Allocate returns it.
typedef chi_bdev_block_t Block;

namespace bdev {

typedef chi_bdev_allocate_task_t AllocateTask;
typedef chi_bdev_free_task_t FreeTask;
typedef chi_bdev_io_task_t IoTask;
typedef chi_bdev_poll_stats_task_t PollStatsTask;
typedef chi_bdev_poll_stats_task_t Stats;

/// A client of one bdev pool. Calls throw chi::Error on failure (a task's negative rc too).
class Client : public ModuleClient {
public:
    /// Creates (or finds, by name) the pool: one device of dev_size bytes per container at
    /// url ("fs:///path" gives files path.<container>; "ram://" memory). The domain queries are
    /// accepted for the seed's shape (creation goes to admin container 0).
    void Create(const hipc::MemContext &, const DomainQuery &, const DomainQuery &,
                const std::string &pool_name, const std::string &url, size_t dev_size,
                uint32_t containers_per_node = 1, uint32_t flags = 0) {
        if (url.size() >= CHI_BDEV_URL_MAX)
            throw Error(-ENAMETOOLONG, "bdev::Create(\"" + pool_name + "\"): url too long");
        chi_bdev_create_params_t p = chi_bdev_params(url.c_str(), dev_size, flags);
        id_ = detail::CreatePool(CHI_BDEV_MODULE_NAME, pool_name, containers_per_node, &p, sizeof p);
    }

    /// Allocates `size` bytes as one or more blocks.
    std::vector<Block> Allocate(const hipc::MemContext &, const DomainQuery &dom, size_t size) {
        TaskPtr<AllocateTask> t = NewTask<AllocateTask>(CHI_BDEV_ALLOCATE, dom, "bdev::Allocate");
        t->size = size;
        AllocateTask &r = t.Call();
        uint32_t n = r.nblocks < CHI_BDEV_MAX_BLOCKS ? r.nblocks : CHI_BDEV_MAX_BLOCKS;
        return std::vector<Block>(r.blocks, r.blocks + n);
    }

    /// Returns a block to its device's allocator.
    void Free(const hipc::MemContext &, const DomainQuery &dom, const Block &block) {
        TaskPtr<FreeTask> t = NewTask<FreeTask>(CHI_BDEV_FREE, dom, "bdev::Free");
        t->block = block;
        t.Call();
    }

    /// Writes block.size bytes from shared memory `data` (durable at return with kFlush).
    size_t Write(const hipc::MemContext &mctx, const DomainQuery &dom, const hipc::Pointer &data,
                 const Block &block, uint32_t io_flags = 0) {
        return AsyncWrite(mctx, dom, data, block, io_flags).Wait().ret;
    }

    /// Reads block.size bytes into shared memory `data`.
    size_t Read(const hipc::MemContext &mctx, const DomainQuery &dom, const hipc::Pointer &data,
                const Block &block) {
        return AsyncRead(mctx, dom, data, block).Wait().ret;
    }

    /// Starts a Write and returns its task (many may be in flight).
    TaskPtr<IoTask> AsyncWrite(const hipc::MemContext &, const DomainQuery &dom,
                               const hipc::Pointer &data, const Block &block, uint32_t io_flags = 0) {
        return StartIo(CHI_BDEV_WRITE, dom, data, block, io_flags, "bdev::Write");
    }

    /// Starts a Read and returns its task.
    TaskPtr<IoTask> AsyncRead(const hipc::MemContext &, const DomainQuery &dom,
                              const hipc::Pointer &data, const Block &block) {
        return StartIo(CHI_BDEV_READ, dom, data, block, 0, "bdev::Read");
    }

    /// The device's statistics (capacity, free space, I/O counts and rates).
    Stats PollStats(const hipc::MemContext &, const DomainQuery &dom) {
        TaskPtr<PollStatsTask> t = NewTask<PollStatsTask>(CHI_BDEV_POLL_STATS, dom, "bdev::PollStats");
        return t.Call();
    }

    /// Makes durable every Write completed before it.
    void Flush(const hipc::MemContext &, const DomainQuery &dom) {
        TaskPtr<chi_bdev_flush_task_t> t =
            NewTask<chi_bdev_flush_task_t>(CHI_BDEV_FLUSH, dom, "bdev::Flush");
        t.Call();
    }

    static const uint32_t kFlush = CHI_BDEV_WRITE_FLUSH;

private:
    TaskPtr<IoTask> StartIo(uint32_t method, const DomainQuery &dom, const hipc::Pointer &data,
                            const Block &block, uint32_t io_flags, const char *op) {
        TaskPtr<IoTask> t = NewTask<IoTask>(method, dom, op);
        t->data = data.shm_;
        t->size = block.size;
        t->block = block;
        t->io_flags = io_flags;
        t.Submit();
        return t;
    }
};

}  // namespace bdev
}  // namespace chi

#endif
