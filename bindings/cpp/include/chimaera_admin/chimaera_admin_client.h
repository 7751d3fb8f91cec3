/* chimaera_admin/chimaera_admin_client.h: the admin pool's client (CHI_ADMIN): modules, pools,
 * flush, stop and statistics. Header-only, C++11, over chimaera/client.h.
 *
 * The domain queries are accepted for the seed's shape. The C ABI routes every admin call to
 * the admin pool's container 0 and a runtime is one node, so GetGlobalBcast() (the seed's
 * "every node") and the admin container (GetDirectHash(kGlobalContainers, 0)) both mean this
 * runtime. */
#ifndef CHIMAERA_ADMIN_CHIMAERA_ADMIN_CLIENT_H
#define CHIMAERA_ADMIN_CHIMAERA_ADMIN_CLIENT_H

#include <string>
#include <vector>

#include "chimaera/admin.h"
#include "chimaera/api/chimaera_client.h"

namespace chi {
namespace Admin {

/// The admin pool's client. Every call blocks until the runtime answers and throws
/// chi::Error on failure.
class Client : public ModuleClient {
public:
    Client() { id_ = PoolId(CHI_ADMIN_POOL_ID); }

    /// The instance CHI_ADMIN points at.
    static Client &Instance() {
        static Client instance;
        return instance;
    }

    /// Loads module `name` (lib<name>.so, searched on CHI_MODULE_PATH, LD_LIBRARY_PATH, then
    /// the built-in directory) into the runtime. Idempotent. An unknown name throws
    /// chi::Error(-CHI_ENOMODULE) whose text lists the paths searched.
    void RegisterModule(const hipc::MemContext &, const DomainQuery &, const std::string &name) {
        detail::Check(chi_module_register(handle(), name.c_str()), "RegisterModule",
                      name.c_str());
    }

    /// Hot upgrade (chi_module_upgrade): swaps the build of module `name` at `path` (empty:
    /// lib<name>.so found again on the search path) into every container of its pools on every
    /// node, while tasks keep coming. flags: CHI_UPGRADE_FORCE, CHI_UPGRADE_RECREATE. Returns
    /// the runtime's JSON report (versions, each container's pause); throws chi::Error with
    /// -CHI_EVERSION, -CHI_EABI, -ENOTSUP or the upgrade hook's error, the old version serving on.
    std::string UpgradeModule(const hipc::MemContext &, const DomainQuery &, const std::string &name,
                              const std::string &path = std::string(), uint32_t flags = 0) {
        std::string report(4096, '\0');
        detail::Check(chi_module_upgrade_report(handle(), name.c_str(),
                                                path.empty() ? nullptr : path.c_str(), flags,
                                                &report[0], report.size()),
                      "UpgradeModule", name.c_str());
        report.resize(std::char_traits<char>::length(report.c_str()));
        return report;
    }

    /// Creates (or finds, by name: creation is idempotent) a pool of `module` with
    /// containers_per_node containers and module-specific parameters (copied).
    PoolId CreatePool(const hipc::MemContext &, const DomainQuery &, const DomainQuery &,
                      const std::string &module, const std::string &pool_name,
                      uint32_t containers_per_node = 1, const void *params = nullptr,
                      size_t params_size = 0) {
        return detail::CreatePool(module.c_str(), pool_name, containers_per_node, params,
                                  params_size);
    }

    /// The id of the pool named `pool_name`; throws chi::Error(-CHI_ENOPOOL) if there is none.
    PoolId GetPoolId(const hipc::MemContext &, const DomainQuery &,
                     const std::string &pool_name) {
        uint64_t id = 0;
        detail::Check(chi_pool_get_id(handle(), pool_name.c_str(), &id), "GetPoolId",
                      pool_name.c_str());
        return PoolId(id);
    }

    /// Destroys a pool: its periodic tasks complete with -CHI_ESTOPPED, its containers go.
    void DestroyPool(const hipc::MemContext &, const DomainQuery &, const PoolId &pool) {
        detail::Check(chi_pool_destroy(handle(), pool.value()), "DestroyPool");
    }

    /// The seed's name in module clients' Destroy: destroys the pool (every container of it;
    /// the C ABI has no per-container destroy).
    void DestroyContainer(const hipc::MemContext &mctx, const DomainQuery &dq, const PoolId &pool) {
        DestroyPool(mctx, dq, pool);
    }

    /// Waits until every task queued in the runtime before this call has run.
    void Flush(const hipc::MemContext &, const DomainQuery &) {
        detail::Check(chi_runtime_flush(handle()), "Flush");
    }

    /// Asks the runtime to stop; returns once the request is accepted. This client's
    /// connection is useless afterwards.
    void StopRuntime(const hipc::MemContext &, const DomainQuery &) {
        detail::Check(chi_runtime_stop(handle()), "StopRuntime");
    }

    /// The runtime's statistics (workers, lanes, pools, shared-memory use) as one JSON object.
    std::string GetStats(const hipc::MemContext &) {
        std::vector<char> buf(64 * 1024);
        for (;;) {
            int n = chi_runtime_stats(handle(), buf.data(), buf.size());
            if (n >= 0) return std::string(buf.data(), static_cast<size_t>(n));
            if (n != -ERANGE || buf.size() >= (64u << 20)) detail::Throw(n, "GetStats");
            buf.resize(buf.size() * 4);
        }
    }

private:
    static chi_client_t *handle() { return ::chi::Client::Instance().handle(); }
};

}  // namespace Admin
}  // namespace chi

/// The admin client singleton, as a pointer: CHI_ADMIN->RegisterModule(...).
#define CHI_ADMIN (&::chi::Admin::Client::Instance())

#endif
