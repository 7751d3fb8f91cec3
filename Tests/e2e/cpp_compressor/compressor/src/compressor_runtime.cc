/* The compressor's runtime side: the seed's Server, with zlib method bodies. */
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "chimaera/api/chimaera_module.h"
#include "compressor/compressor_client.h"

namespace chi::compressor {

class Server : public Module {
 public:
  CLS_CONST QueueId kDefaultGroup = 0;
  CLS_CONST QueueId kChainGroup = 1;
  int compress_id_ = 0;
  Client client_;  // this pool, for subtasks

 public:
  Server() = default;

  CHI_BEGIN(Create)
  /** Construct compressor */
  void Create(CreateTask *task, RunContext &rctx) {
    // Create a set of lanes for holding tasks
    CreateQueue(kDefaultGroup, 1, QUEUE_LOW_LATENCY);
    CreateQueue(kChainGroup, 2, QUEUE_LOW_LATENCY);
    client_.Init(task->ctx_.id_);
    // For the test: compress_id -2 reaches for CHI_CLIENT, which Create has not (-ENOTSUP).
    if (task->params_.compress_id_ == -2) CHI_CLIENT->handle();
    // compress_id 0 is zlib at its default level, 1-9 zlib at that level.
    if (task->params_.compress_id_ < 0 || task->params_.compress_id_ > 9) {
      throw chi::Error(-EINVAL, "compressor: unknown compress_id");
    }
    compress_id_ = task->params_.compress_id_;
  }
  void MonitorCreate(MonitorModeId mode, CreateTask *task, RunContext &rctx) {}
  CHI_END(Create)

  /** Route a task to a lane */
  Lane *MapTaskToLane(const Task *task) override {
    // Route tasks to lanes based on their properties
    // E.g., a strongly consistent filesystem could map tasks to a lane
    // by the hash of an absolute filename path.
    if (task->method_ == Method::kChain) {
      return GetLeastLoadedLane(
          kChainGroup, task->prio_,
          [](Load &lhs, Load &rhs) { return lhs.cpu_load_ < rhs.cpu_load_; });
    }
    return GetLaneByHash(kDefaultGroup, task->prio_, 0);
  }

  CHI_BEGIN(Destroy)
  /** Destroy compressor */
  void Destroy(DestroyTask *task, RunContext &rctx) {}
  void MonitorDestroy(MonitorModeId mode, DestroyTask *task, RunContext &rctx) {
  }
  CHI_END(Destroy)

  CHI_BEGIN(Compress)
  /** The Compress method: compresses the buffer in place; rc is the compressed size
   * (zlib's stream, which Decompress finds the end of by itself). */
  void Compress(CompressTask *task, RunContext &rctx) {
    Bytef *data = rctx.Resolve<Bytef>(task->data_, task->data_size_);
    uLongf n = compressBound(task->data_size_);
    std::vector<Bytef> out(n);
    int level = compress_id_ == 0 ? Z_DEFAULT_COMPRESSION : compress_id_;
    if (compress2(out.data(), &n, data, task->data_size_, level) != Z_OK) {
      task->SetReturnCode(-EIO);
      return;
    }
    if (n > task->data_size_) {
      task->SetReturnCode(-ENOSPC);  // incompressible: it does not fit in place
      return;
    }
    std::memcpy(data, out.data(), n);
    task->SetReturnCode(static_cast<int>(n));
  }
  void MonitorCompress(MonitorModeId mode, CompressTask *task,
                       RunContext &rctx) {
    switch (mode) {
      case MonitorMode::kReplicaAgg: {
        std::vector<FullPtr<Task>> &replicas = *rctx.replicas_;
      }
    }
  }
  CHI_END(Compress)

  CHI_BEGIN(Decompress)
  /** The Decompress method: inflates the zlib stream at the start of the buffer in place;
   * data_size_ becomes the inflated size. */
  void Decompress(DecompressTask *task, RunContext &rctx) {
    Bytef *data = rctx.Resolve<Bytef>(task->data_, task->data_size_);
    std::vector<Bytef> in(data, data + task->data_size_);
    uLongf out_n = task->data_size_;
    uLong in_n = in.size();
    int z = uncompress2(data, &out_n, in.data(), &in_n);
    if (z != Z_OK) {
      task->SetReturnCode(z == Z_BUF_ERROR ? -ENOSPC : z == Z_DATA_ERROR ? -EBADMSG : -EIO);
      return;
    }
    task->data_size_ = out_n;
  }
  void MonitorDecompress(MonitorModeId mode, DecompressTask *task,
                         RunContext &rctx) {
    switch (mode) {
      case MonitorMode::kReplicaAgg: {
        std::vector<FullPtr<Task>> &replicas = *rctx.replicas_;
      }
    }
  }
  CHI_END(Decompress)

  CHI_BEGIN(Chain)
  /** The Chain method: a subtask of depth - 1, waited for inside the method */
  void Chain(ChainTask *task, RunContext &rctx) {
    task->pid_ = static_cast<u64>(getpid());
    task->container_ = container_id_;
    if (task->depth_ == 0) {
      task->reached_ = 0;
      return;
    }
    FullPtr<ChainTask> sub = client_.AsyncChainBase(
        HSHM_MCTX, task, task->task_node_ + 1, DomainQuery::GetLocalHash(0),
        task->depth_ - 1);
    sub->Wait();
    task->reached_ = sub->reached_ + 1;
    CHI_CLIENT->DelTask(HSHM_MCTX, sub);
  }
  /** Dynamic queries go to the last container; a broadcast reports how many replicas ran. */
  void MonitorChain(MonitorModeId mode, ChainTask *task, RunContext &rctx) {
    switch (mode) {
      case MonitorMode::kSchedule: {
        task->dom_query_ = DomainQuery::GetDirectId(SubDomainId::kGlobalContainers,
                                                    chi_container_count(container_) - 1);
        return;
      }
      case MonitorMode::kReplicaAgg: {
        std::vector<FullPtr<Task>> &replicas = *rctx.replicas_;
        task->reached_ = static_cast<u32>(replicas.size());
        return;
      }
    }
  }
  CHI_END(Chain)

  CHI_BEGIN(Where)
  /** The Where method */
  void Where(WhereTask *task, RunContext &rctx) {
    task->pid_ = static_cast<u64>(getpid());
  }
  void MonitorWhere(MonitorModeId mode, WhereTask *task, RunContext &rctx) {}
  CHI_END(Where)

 public:
#include "compressor/compressor_lib_exec.h"
};

}  // namespace chi::compressor

CHI_TASK_CC(chi::compressor::Server, "example_compressor");
