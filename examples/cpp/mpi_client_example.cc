/* mpi_client_example.cc: the seed's "Client API Example" as it was written, with MPI: every
 * rank attaches to the same runtime, rank 0 registers the module and creates the pool, and
 * all ranks then time 256 Md calls each, spread over the pool's containers. The binding has no
 * MPI dependency; MPI only keeps the ranks in step. Rank 0 prints the slowest rank's latency.
 *
 * Build (needs an MPI compiler wrapper; the tests skip this example without mpicxx):
 *   mpicxx -std=c++11 -O2 mpi_client_example.cc $(pkg-config --cflags --libs chimaera) \
 *     -o mpi_client_example
 * or with CMake (CMakeLists.txt beside this file builds it when find_package(MPI) succeeds).
 * Run against a daemon:
 *   CHIMAERA_SEGMENT=demo mpirun -n 4 ./mpi_client_example
 */
#include <mpi.h>

#include <cstdio>

#include "chimaera/api/chimaera_client.h"
#include "chimaera_admin/chimaera_admin_client.h"
#include "small_message/small_message_client.h"

CHI_NAMESPACE_INIT

static int Run(int rank, int nprocs) {
    CHIMAERA_CLIENT_INIT();
    chi::small_message::Client client;
    if (rank == 0) {
        CHI_ADMIN->RegisterModule(HSHM_MCTX, DomainQuery::GetGlobalBcast(), "small_message");
        client.Create(HSHM_MCTX, DomainQuery::GetDirectHash(SubDomainId::kGlobalContainers, 0),
                      DomainQuery::GetGlobalBcast(), "ipc_test");
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank != 0)
        client.Init(CHI_ADMIN->GetPoolId(HSHM_MCTX, DomainQuery(), "ipc_test"));

    const size_t ops = 256;
    const u32 depth = 0;
    if (rank == 0) HILOG(kInfo, "OPS: {} per rank, {} ranks", ops, nprocs);
    MPI_Barrier(MPI_COMM_WORLD);
    hshm::Timer t;
    t.Resume();
    int bad = 0;
    for (size_t i = 0; i < ops; ++i) {
        size_t cont_id = i + static_cast<size_t>(rank) * ops;
        int ret = client.Md(HSHM_MCTX,
                            DomainQuery::GetDirectHash(SubDomainId::kGlobalContainers, cont_id),
                            depth, 0);
        bad += ret != 1;
    }
    t.Pause();

    double usec = t.GetUsec(), slowest = 0;
    int bad_total = 0;
    MPI_Reduce(&usec, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(&bad, &bad_total, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        double total = static_cast<double>(ops) * nprocs;
        HILOG(kInfo, "Latency: {} MOps, {} MTasks", total / slowest,
              total * (depth + 1) / slowest);
        if (bad_total != 0) HILOG(kError, "{} Md calls did not return 1", bad_total);
    }
    return bad_total == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, nprocs = 1, rc = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nprocs);
    try {
        rc = Run(rank, nprocs);
    } catch (const chi::Error &e) {
        std::fprintf(stderr, "mpi_client_example: rank %d: %s\n", rank, e.what());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Finalize();
    return rc;
}
