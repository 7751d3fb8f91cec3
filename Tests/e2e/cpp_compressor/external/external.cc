/* The seed's "Invoking your mods" program, then a Decompress of what it compressed, checked
 * byte for byte. Prints "round trip ok: N bytes"; exits 1 on a mismatch.
 *   external chain DEPTH   Chain(DEPTH) on local container 0: prints "chain reached N"
 *   external where ID      Where() on container ID (direct): prints "where PID" or
 *                          "where error CODE" (a TF_LOCAL task routed to another node)
 * Built by an external project: find_package(Chimaera), find_package(Example), linking
 * example::compressor_client. */
#include <cstdio>
#include <cstring>
#include <vector>

#include "compressor/compressor_client.h"

#include <cstdlib>
#include <string>

static int Other(const std::string &what, const char *arg) {
  chi::compressor::Client client;
  client.Create(
      HSHM_MCTX,
      chi::DomainQuery::GetDirectHash(chi::SubDomainId::kGlobalContainers, 0),
      chi::DomainQuery::GetGlobalBcast(), "ipc_test");
  if (what == "chain") {
    chi::u32 n = client.Chain(HSHM_MCTX, chi::DomainQuery::GetLocalHash(0),
                              static_cast<chi::u32>(std::atoi(arg)));
    std::printf("chain reached %u\n", n);
    return 0;
  }
  try {
    chi::u64 pid = client.Where(
        HSHM_MCTX,
        chi::DomainQuery::GetDirectId(chi::SubDomainId::kGlobalContainers,
                                      static_cast<chi::u64>(std::atoi(arg))));
    std::printf("where %llu\n", static_cast<unsigned long long>(pid));
  } catch (const chi::Error &e) {
    std::printf("where error %d: %s\n", e.code(), e.what());
  }
  return 0;
}

int main(int argc, char **argv) {
  CHIMAERA_CLIENT_INIT();
  if (argc == 3) return Other(argv[1], argv[2]);
  chi::compressor::Client client;
  client.Create(
      HSHM_MCTX,
      chi::DomainQuery::GetDirectHash(chi::SubDomainId::kGlobalContainers, 0),
      chi::DomainQuery::GetGlobalBcast(), "ipc_test");

  size_t data_size = hshm::Unit<size_t>::Megabytes(1);
  hipc::FullPtr<char> orig_data =
      CHI_CLIENT->AllocateBuffer(HSHM_MCTX, data_size);
  // Compressible but not trivial: words drawn by a small LCG.
  std::vector<char> expect(data_size);
  static const char *words[] = {"chimaera ", "module ", "task ", "lane ", "pool ", "zlib "};
  unsigned x = 12345;
  for (size_t i = 0; i < data_size;) {
    x = x * 1103515245u + 12345u;
    const char *w = words[(x >> 16) % 6];
    for (; *w && i < data_size; w++) expect[i++] = *w;
  }
  std::memcpy(orig_data.ptr_, expect.data(), data_size);

  client.Compress(HSHM_MCTX, chi::DomainQuery::GetLocalHash(0), orig_data.shm_,
                  data_size);
  if (std::memcmp(orig_data.ptr_, expect.data(), data_size) == 0 ||
      static_cast<unsigned char>(orig_data.ptr_[0]) != 0x78) {
    std::printf("Compress left the buffer unchanged or wrote no zlib stream\n");
    return 1;
  }
  client.Decompress(HSHM_MCTX, chi::DomainQuery::GetLocalHash(0), orig_data.shm_,
                    data_size);
  if (std::memcmp(orig_data.ptr_, expect.data(), data_size) != 0) {
    std::printf("round trip differs\n");
    return 1;
  }
  std::printf("round trip ok: %zu bytes\n", data_size);
  CHI_CLIENT->FreeBuffer(HSHM_MCTX, orig_data);
  return 0;
}
