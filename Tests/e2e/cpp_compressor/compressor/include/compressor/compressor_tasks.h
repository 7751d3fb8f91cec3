#ifndef CHI_COMPRESSOR_TASKS_H_
#define CHI_COMPRESSOR_TASKS_H_

#include "chimaera/api/chimaera_task.h"

namespace chi::compressor {

#include "compressor_methods.h"

CHI_BEGIN(Create)
/** A task to create compressor */
struct CreateTaskParams {
  CLS_CONST char *lib_name_ = "example_compressor";
  int compress_id_;

  HSHM_INLINE_CROSS_FUN
  CreateTaskParams() = default;

  HSHM_INLINE_CROSS_FUN
  CreateTaskParams(const hipc::CtxAllocator<CHI_ALLOC_T> &alloc,
                   int compress_id = 0) {
    compress_id_ = compress_id;
  }

  template <typename Ar>
  HSHM_INLINE_CROSS_FUN void serialize(Ar &ar) {
    ar(compress_id_);
  }
};
typedef chi::Admin::CreatePoolBaseTask<CreateTaskParams> CreateTask;
CHI_END(Create)

CHI_BEGIN(Destroy)
/** A task to destroy compressor */
typedef chi::Admin::DestroyContainerTask DestroyTask;
CHI_END(Destroy)

CHI_BEGIN(Compress)
/** The CompressTask task */
struct CompressTask : public Task, TaskFlags<TF_SRL_SYM> {
  IN hipc::Pointer data_;
  IN size_t data_size_;

  /** SHM default constructor */
  HSHM_INLINE explicit CompressTask(
      const hipc::CtxAllocator<CHI_ALLOC_T> &alloc)
      : Task(alloc) {}

  /** Emplace constructor */
  HSHM_INLINE explicit CompressTask(
      const hipc::CtxAllocator<CHI_ALLOC_T> &alloc, const TaskNode &task_node,
      const PoolId &pool_id, const DomainQuery &dom_query,
      const hipc::Pointer &data, size_t data_size)
      : Task(alloc) {
    // Initialize task
    task_node_ = task_node;
    prio_ = TaskPrioOpt::kLowLatency;
    pool_ = pool_id;
    method_ = Method::kCompress;
    task_flags_.SetBits(0);
    dom_query_ = dom_query;

    // Custom
    data_ = data;
    data_size_ = data_size;
  }

  /** Duplicate message */
  void Copy(const CompressTask &other, bool deep) {
    data_ = other.data_;
    data_size_ = other.data_size_;
    if (!deep) {
      UnsetDataOwner();
    }
  }

  /** (De)serialize message call */
  template <typename Ar>
  void SerializeIn(Ar &ar) {
    ar.bulk(DT_WRITE, data_, data_size_);
  }

  /** (De)serialize message return */
  template <typename Ar>
  void SerializeOut(Ar &ar) {}
};
CHI_END(Compress)

CHI_BEGIN(Decompress)
struct DecompressTask : public Task, TaskFlags<TF_SRL_SYM> {
  IN hipc::Pointer data_;
  INOUT size_t data_size_;

  /** SHM default constructor */
  HSHM_INLINE explicit DecompressTask(
      const hipc::CtxAllocator<CHI_ALLOC_T> &alloc)
      : Task(alloc) {}

  /** Emplace constructor */
  HSHM_INLINE explicit DecompressTask(
      const hipc::CtxAllocator<CHI_ALLOC_T> &alloc, const TaskNode &task_node,
      const PoolId &pool_id, const DomainQuery &dom_query,
      const hipc::Pointer &data, size_t data_size)
      : Task(alloc) {
    // Initialize task
    task_node_ = task_node;
    prio_ = TaskPrioOpt::kLowLatency;
    pool_ = pool_id;
    method_ = Method::kDecompress;
    task_flags_.SetBits(0);
    dom_query_ = dom_query;

    // Custom
    data_ = data;
    data_size_ = data_size;
  }

  /** Duplicate message */
  void Copy(const DecompressTask &other, bool deep) {
    data_ = other.data_;
    data_size_ = other.data_size_;
    if (!deep) {
      UnsetDataOwner();
    }
  }

  /** (De)serialize message call */
  template <typename Ar>
  void SerializeIn(Ar &ar) {
    ar.bulk(DT_EXPOSE, data_, data_size_);
  }

  /** (De)serialize message return */
  template <typename Ar>
  void SerializeOut(Ar &ar) {
    ar.bulk(DT_WRITE, data_, data_size_);
  }
};
CHI_END(Decompress)

CHI_BEGIN(Chain)
/** A chain of subtasks: Chain(depth) runs Chain(depth - 1) from inside the method and waits
 * for it; reached_ counts the links. Not part of the seed's compressor: it exercises
 * subtasks waited without blocking the worker. */
struct ChainTask : public Task, TaskFlags<TF_SRL_SYM> {
  IN u32 depth_;
  OUT u32 reached_;
  OUT u64 pid_;
  OUT u32 container_;

  HSHM_INLINE explicit ChainTask(const hipc::CtxAllocator<CHI_ALLOC_T> &alloc)
      : Task(alloc) {}

  HSHM_INLINE explicit ChainTask(const hipc::CtxAllocator<CHI_ALLOC_T> &alloc,
                                 const TaskNode &task_node, const PoolId &pool_id,
                                 const DomainQuery &dom_query, u32 depth)
      : Task(alloc) {
    task_node_ = task_node;
    prio_ = TaskPrioOpt::kLowLatency;
    pool_ = pool_id;
    method_ = Method::kChain;
    task_flags_.SetBits(0);
    dom_query_ = dom_query;
    depth_ = depth;
    reached_ = 0;
    pid_ = 0;
    container_ = 0;
  }

  void Copy(const ChainTask &other, bool deep) {
    depth_ = other.depth_;
    reached_ = other.reached_;
  }

  template <typename Ar>
  void SerializeIn(Ar &ar) {
    ar(depth_);
  }

  template <typename Ar>
  void SerializeOut(Ar &ar) {
    ar(reached_, pid_, container_);
  }
};
CHI_END(Chain)

CHI_BEGIN(Where)
/** Which process ran the task: a TF_LOCAL task, which must never leave its node. */
struct WhereTask : public Task, TaskFlags<TF_LOCAL> {
  OUT u64 pid_;

  HSHM_INLINE explicit WhereTask(const hipc::CtxAllocator<CHI_ALLOC_T> &alloc)
      : Task(alloc) {}

  HSHM_INLINE explicit WhereTask(const hipc::CtxAllocator<CHI_ALLOC_T> &alloc,
                                 const TaskNode &task_node, const PoolId &pool_id,
                                 const DomainQuery &dom_query)
      : Task(alloc) {
    task_node_ = task_node;
    prio_ = TaskPrioOpt::kLowLatency;
    pool_ = pool_id;
    method_ = Method::kWhere;
    task_flags_.SetBits(0);
    dom_query_ = dom_query;
    pid_ = 0;
  }

  void Copy(const WhereTask &other, bool deep) { pid_ = other.pid_; }

  template <typename Ar>
  void SerializeOut(Ar &ar) {
    ar(pid_);
  }
};
CHI_END(Where)

CHI_AUTOGEN_METHODS  // keep at class bottom

}  // namespace chi::compressor

#endif  // CHI_COMPRESSOR_TASKS_H_
