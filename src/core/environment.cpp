#include "physgrad/core/environment.hpp"

#include <petscsys.h>

#include <cstdarg>
#include <cstdio>
#include <stdexcept>

namespace physgrad {
namespace {
int g_ranks_on_node = 1;
}  // namespace

Environment::Environment(int* argc, char*** argv, const char* help) {
  PetscErrorCode ierr = PetscInitialize(argc, argv, nullptr, help);
  if (ierr) throw std::runtime_error("PetscInitialize failed");
  MPI_Comm node = MPI_COMM_NULL;
  if (MPI_Comm_split_type(PETSC_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) !=
          MPI_SUCCESS ||
      MPI_Comm_size(node, &g_ranks_on_node) != MPI_SUCCESS)
    throw std::runtime_error("could not count the ranks sharing this node (MPI_Comm_split_type)");
  MPI_Comm_free(&node);
}

Environment::~Environment() { (void)PetscFinalize(); }

MPI_Comm Environment::comm() { return PETSC_COMM_WORLD; }

int Environment::rank() {
  int r = 0;
  MPI_Comm_rank(PETSC_COMM_WORLD, &r);
  return r;
}

int Environment::size() {
  int s = 1;
  MPI_Comm_size(PETSC_COMM_WORLD, &s);
  return s;
}

int Environment::ranksOnNode() { return g_ranks_on_node; }

bool isRoot() { return Environment::rank() == 0; }

void rootPrintf(const char* fmt, ...) {
  if (!isRoot()) return;
  va_list args;
  va_start(args, fmt);
  std::vprintf(fmt, args);
  va_end(args);
  std::fflush(stdout);
}

double wallTime() { return MPI_Wtime(); }

}  // namespace physgrad
