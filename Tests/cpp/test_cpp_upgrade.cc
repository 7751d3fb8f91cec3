// CHI_ADMIN->UpgradeModule from C++: small_message swapped for the build at argv[1] (version 2,
// Md returns 2); a second upgrade to the same version throws chi::Error(-CHI_EVERSION) and
// leaves version 2 serving.
#include <cstdio>
#include <cstring>
#include <string>

#include "chimaera/api/chimaera_client.h"
#include "chimaera_admin/chimaera_admin_client.h"
#include "small_message/small_message_client.h"

CHI_NAMESPACE_INIT

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    CHIMAERA_CLIENT_INIT();
    CHI_ADMIN->RegisterModule(HSHM_MCTX, DomainQuery::GetGlobalBcast(), "small_message");
    chi::small_message::Client client;
    client.Create(HSHM_MCTX, DomainQuery::GetDirectHash(SubDomainId::kGlobalContainers, 0),
                  DomainQuery::GetGlobalBcast(), "cpp_upgrade");
    DomainQuery dq = DomainQuery::GetDirectHash(SubDomainId::kGlobalContainers, 0);
    if (client.Md(HSHM_MCTX, dq, 0, 0) != 1) return 1;
    std::string report = CHI_ADMIN->UpgradeModule(HSHM_MCTX, DomainQuery::GetGlobalBcast(),
                                                  "small_message", argv[1]);
    std::printf("report: %s\n", report.c_str());
    if (report.find("\"new_version\":2") == std::string::npos) return 1;
    if (client.Md(HSHM_MCTX, dq, 0, 0) != 2) return 1;
    try {
        CHI_ADMIN->UpgradeModule(HSHM_MCTX, DomainQuery::GetGlobalBcast(), "small_message", argv[1]);
        std::printf("the same version was accepted\n");
        return 1;
    } catch (const chi::Error &e) {
        std::printf("refused: %s\n", e.what());
        if (e.code() != -CHI_EVERSION) return 1;
    }
    if (client.Md(HSHM_MCTX, dq, 0, 0) != 2) return 1;
    std::printf("cpp upgrade: ok\n");
    return 0;
}
