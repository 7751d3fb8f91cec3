/* seed_client_example.cc: the seed documentation's "Client API Example", compiled against the
 * installed C++ headers. Everything from the first #include down is the documentation's code
 * block byte for byte (Tests/e2e/test_cpp_binding.py checks that when the seed is at hand).
 * Only this prologue is added:
 *   - REQUIRE, which the seed's example took from Catch2: here it reports and exits 1;
 *   - stand-ins for the three MPI calls, which the seed uses only for rank bookkeeping (its
 *     test harness called MPI_Init): without MPI this process is rank 0 of 1.
 *     examples/cpp/mpi_client_example.cc is the same program with real MPI.
 *
 * Build: c++ -std=c++11 -I<prefix>/include seed_client_example.cc -L<prefix>/lib -lchimaera
 * Run:   CHIMAERA_SEGMENT=<segment of a running daemon> ./a.out   (prints OPS and Latency) */
#include <cstdio>
#include <cstdlib>

#ifndef REQUIRE
#define REQUIRE(cond)                                                                  \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            std::fprintf(stderr, "%s:%d: REQUIRE(%s) failed\n", __FILE__, __LINE__, #cond); \
            std::exit(1);                                                              \
        }                                                                              \
    } while (0)
#endif

typedef int MPI_Comm;
#define MPI_COMM_WORLD 0
static inline int MPI_Barrier(MPI_Comm) { return 0; }
static inline int MPI_Comm_rank(MPI_Comm, int *rank) {
    *rank = 0;
    return 0;
}
static inline int MPI_Comm_size(MPI_Comm, int *size) {
    *size = 1;
    return 0;
}

#include "chimaera/api/chimaera_client.h"
#include "chimaera_admin/chimaera_admin_client.h"
#include "small_message/small_message_client.h"

CHI_NAMESPACE_INIT

int main() {
  CHIMAERA_CLIENT_INIT();

  int rank, nprocs;
  MPI_Barrier(MPI_COMM_WORLD);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nprocs);
  CHI_ADMIN->RegisterModule(HSHM_DEFAULT_MEM_CTX,
                            chi::DomainQuery::GetGlobalBcast(),
                            "small_message");
  chi::small_message::Client client;
  client.Create(
      HSHM_DEFAULT_MEM_CTX,
      chi::DomainQuery::GetDirectHash(chi::SubDomainId::kGlobalContainers, 0),
      chi::DomainQuery::GetGlobalBcast(), "ipc_test");
  hshm::Timer t;
  size_t ops = 256;
  HILOG(kInfo, "OPS: {}", ops);
  t.Resume();
  int depth = 0;
  for (size_t i = 0; i < ops; ++i) {
    int cont_id = i;
    int ret = client.Md(HSHM_DEFAULT_MEM_CTX,
                        chi::DomainQuery::GetDirectHash(
                            chi::SubDomainId::kGlobalContainers, cont_id),
                        depth, 0);
    REQUIRE(ret == 1);
  }
  t.Pause();

  HILOG(kInfo, "Latency: {} MOps, {} MTasks", ops / t.GetUsec(),
        ops * (depth + 1) / t.GetUsec());
}
