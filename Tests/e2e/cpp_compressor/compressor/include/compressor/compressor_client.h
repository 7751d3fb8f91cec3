#ifndef CHI_COMPRESSOR_CLIENT_H_
#define CHI_COMPRESSOR_CLIENT_H_

#include "chimaera_admin/chimaera_admin_client.h"
#include "compressor_tasks.h"

namespace chi::compressor {

/** Create compressor requests */
class Client : public ModuleClient {
 public:
  /** Default constructor */
  HSHM_INLINE_CROSS_FUN
  Client() = default;

  /** Destructor */
  HSHM_INLINE_CROSS_FUN
  ~Client() = default;

  CHI_BEGIN(Create)
  /** Create a pool */
  HSHM_INLINE_CROSS_FUN
  void Create(const hipc::MemContext &mctx, const DomainQuery &dom_query,
              const DomainQuery &affinity, const chi::string &pool_name,
              const CreateContext &ctx = CreateContext(), int compress_id = 0) {
    FullPtr<CreateTask> task =
        AsyncCreate(mctx, dom_query, affinity, pool_name, ctx, compress_id);
    task->Wait();
    Init(task->ctx_.id_);
    CHI_CLIENT->DelTask(mctx, task);
  }
  CHI_TASK_METHODS(Create);
  CHI_END(Create)

  CHI_BEGIN(Destroy)
  /** Destroy pool + queue */
  HSHM_INLINE_CROSS_FUN
  void Destroy(const hipc::MemContext &mctx, const DomainQuery &dom_query) {
    CHI_ADMIN->DestroyContainer(mctx, dom_query, id_);
  }
  CHI_END(Destroy)

  CHI_BEGIN(Compress)
  /** Compress task */
  void Compress(const hipc::MemContext &mctx, const DomainQuery &dom_query,
                const hipc::Pointer &data, size_t data_size) {
    FullPtr<CompressTask> task =
        AsyncCompress(mctx, dom_query, data, data_size);
    task->Wait();
    CHI_CLIENT->DelTask(mctx, task);
  }
  CHI_TASK_METHODS(Compress);
  CHI_END(Compress)

  CHI_BEGIN(Decompress)
  /** Decompress task */
  void Decompress(const hipc::MemContext &mctx, const DomainQuery &dom_query,
                  const hipc::Pointer &data, size_t data_size) {
    FullPtr<DecompressTask> task =
        AsyncDecompress(mctx, dom_query, data, data_size);
    task->Wait();
    CHI_CLIENT->DelTask(mctx, task);
  }
  CHI_TASK_METHODS(Decompress);
  CHI_END(Decompress)

  CHI_BEGIN(Chain)
  /** Chain task: returns the number of links that ran */
  u32 Chain(const hipc::MemContext &mctx, const DomainQuery &dom_query, u32 depth) {
    FullPtr<ChainTask> task = AsyncChain(mctx, dom_query, depth);
    task->Wait();
    u32 reached = task->reached_;
    CHI_CLIENT->DelTask(mctx, task);
    return reached;
  }
  CHI_TASK_METHODS(Chain);
  CHI_END(Chain)

  CHI_BEGIN(Where)
  /** Where task: the pid of the runtime that ran it */
  u64 Where(const hipc::MemContext &mctx, const DomainQuery &dom_query) {
    FullPtr<WhereTask> task = AsyncWhere(mctx, dom_query);
    task->Wait();
    u64 pid = task->pid_;
    CHI_CLIENT->DelTask(mctx, task);
    return pid;
  }
  CHI_TASK_METHODS(Where);
  CHI_END(Where)
};

}  // namespace chi::compressor

#endif  // CHI_COMPRESSOR_CLIENT_H_
