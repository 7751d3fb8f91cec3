// test_cpp_bdev: chi::bdev::Client in the seed's shape drives the bdev module: create on RAM,
// allocate (direct and dynamic), write and read back 16 x 1 MiB byte for byte, stats, free,
// and a bad block throws chi::Error. Exit 0 pass, 1 fail.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bdev/bdev_client.h"
#include "chimaera_admin/chimaera_admin_client.h"

CHI_NAMESPACE_INIT

#define REQUIRE(c)                                                         \
    do {                                                                   \
        if (!(c)) {                                                        \
            std::fprintf(stderr, "%s:%d: REQUIRE(%s)\n", __FILE__, __LINE__, #c); \
            return 1;                                                      \
        }                                                                  \
    } while (0)

int main() {
    try {
        CHIMAERA_CLIENT_INIT();
        CHI_ADMIN->RegisterModule(HSHM_MCTX, chi::DomainQuery::GetGlobalBcast(), "bdev");
        chi::bdev::Client client;
        client.Create(HSHM_MCTX, chi::DomainQuery::GetDirectHash(chi::SubDomain::kGlobalContainers, 0),
                      chi::DomainQuery::GetGlobalBcast(), "cpp_bdev", "ram://", MEGABYTES(64), 2);
        const size_t mb = MEGABYTES(1);
        hipc::FullPtr<char> buf = CHI_CLIENT->AllocateBuffer(HSHM_MCTX, mb);
        for (int i = 0; i < 16; i++) {
            chi::DomainQuery dom = (i % 2) ? chi::DomainQuery::GetDynamic()
                                           : chi::DomainQuery::GetDirectHash(chi::SubDomain::kGlobalContainers, 1);
            std::vector<chi::Block> blocks = client.Allocate(HSHM_MCTX, dom, mb);
            REQUIRE(blocks.size() == 1 && blocks[0].size == mb);
            chi::DomainQuery at = chi::DomainQuery::GetDirectId(chi::SubDomain::kGlobalContainers, blocks[0].container);
            for (size_t k = 0; k < mb; k++) buf.ptr_[k] = static_cast<char>((k * 31 + i) & 0xff);
            REQUIRE(client.Write(HSHM_MCTX, at, buf.shm_, blocks[0], chi::bdev::Client::kFlush) == mb);
            std::memset(buf.ptr_, 0, mb);
            REQUIRE(client.Read(HSHM_MCTX, at, buf.shm_, blocks[0]) == mb);
            for (size_t k = 0; k < mb; k++) REQUIRE(buf.ptr_[k] == static_cast<char>((k * 31 + i) & 0xff));
            client.Free(HSHM_MCTX, at, blocks[0]);
        }
        chi::bdev::Stats st = client.PollStats(HSHM_MCTX, chi::DomainQuery::GetDirectId(chi::SubDomain::kGlobalContainers, 1));
        REQUIRE(st.capacity == MEGABYTES(64) && st.free_bytes == st.capacity && st.writes >= 1);
        chi::Block bad = {MEGABYTES(128), 4096, 0, 0};
        bool threw = false;
        try {
            client.Read(HSHM_MCTX, chi::DomainQuery::GetDirectId(chi::SubDomain::kGlobalContainers, 0), buf.shm_, bad);
        } catch (const chi::Error &e) {
            threw = e.code() < 0;
        }
        REQUIRE(threw);
        CHI_CLIENT->FreeBuffer(HSHM_MCTX, buf);
        client.Destroy(HSHM_MCTX, chi::DomainQuery::GetGlobalBcast());
    } catch (const chi::Error &e) {
        std::fprintf(stderr, "chi::Error: %s\n", e.what());
        return 1;
    }
    std::puts("test_cpp_bdev: ok");
    return 0;
}
