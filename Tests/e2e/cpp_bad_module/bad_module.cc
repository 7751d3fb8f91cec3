/* A C++ module whose SerializeIn names a local variable, not a field of the task: the module
 * layer's recording archive refuses it when the vtable is built, so chi_module_entry returns
 * NULL and the module is not loaded (test_cpp_module.py). */
#include "chimaera/api/chimaera_module.h"
namespace chi::bad {
struct Method : public TaskMethod { TASK_METHOD_T kPing = 10; };
struct CreateTaskParams {
  CLS_CONST char *lib_name_ = "chi_bad";
  CreateTaskParams() = default;
  CreateTaskParams(const hipc::CtxAllocator<CHI_ALLOC_T> &) {}
  template <typename Ar> void serialize(Ar &) {}
};
typedef chi::Admin::CreatePoolBaseTask<CreateTaskParams> CreateTask;
struct PingTask : public Task, TaskFlags<TF_SRL_SYM> {
  u32 x_;
  explicit PingTask(const hipc::CtxAllocator<CHI_ALLOC_T> &alloc) : Task(alloc) {}
  template <typename Ar> void SerializeIn(Ar &ar) { u32 local = 0; ar(x_, local); }
};
class Server : public Module {
 public:
  void Create(CreateTask *, RunContext &) { CreateQueue(0, 1); }
  void Ping(PingTask *, RunContext &) {}
  static void ChiRegister(::chi::MethodTable<Server> &t) {
    t.Create<&Server::Create>();
    t.Method<&Server::Ping>(Method::kPing, "Ping", {"x_", "local"});
  }
};
}
CHI_TASK_CC(chi::bad::Server, "chi_bad");
