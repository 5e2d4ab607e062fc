#include "physgrad/core/environment.hpp"

#include <petscsys.h>

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace physgrad {
namespace {
int g_ranks_on_node = 1;

// PETSc aligns what it allocates to PETSC_MEMALIGN bytes, 16 in Debian's build, so a Vec's
// array usually starts 16 bytes into a cache line and every 64-byte vector load of it
// touches two lines.  These routines, installed with PetscMallocSet before PetscInitialize,
// align every PETSc allocation (Vec arrays included) to a cache line instead.
constexpr std::size_t kCacheLine = 64;

PetscErrorCode cacheLineMalloc(std::size_t bytes, PetscBool clear, int line, const char func[],
                               const char file[], void** result) {
  *result = nullptr;
  if (bytes == 0) return 0;  // as PETSc's own: a null pointer that PetscFree accepts
  if (posix_memalign(result, kCacheLine, bytes) != 0) {
    *result = nullptr;
    return PetscError(PETSC_COMM_SELF, line, func, file, PETSC_ERR_MEM, PETSC_ERROR_INITIAL,
                      "Memory requested %.0f", static_cast<PetscLogDouble>(bytes));
  }
  if (clear) std::memset(*result, 0, bytes);
  return 0;
}

PetscErrorCode cacheLineFree(void* p, int, const char[], const char[]) {
  std::free(p);
  return 0;
}

PetscErrorCode cacheLineRealloc(std::size_t bytes, int line, const char func[], const char file[],
                                void** result) {
  if (bytes == 0) {
    std::free(*result);
    *result = nullptr;
    return 0;
  }
  void* p = std::realloc(*result, bytes);
  if (p && reinterpret_cast<std::uintptr_t>(p) % kCacheLine != 0) {
    // realloc kept the contents but not the alignment: move them once more.
    void* aligned = nullptr;
    if (posix_memalign(&aligned, kCacheLine, bytes) == 0) std::memcpy(aligned, p, bytes);
    std::free(p);
    p = aligned;
  }
  if (!p)
    return PetscError(PETSC_COMM_SELF, line, func, file, PETSC_ERR_MEM, PETSC_ERROR_INITIAL,
                      "Memory requested %.0f", static_cast<PetscLogDouble>(bytes));
  *result = p;
  return 0;
}

bool mentionsMallocOption(const char* text) {
  return text && std::strstr(text, "-malloc") != nullptr;
}

// PETSc's memory debugging (-malloc_debug, -malloc_test, -malloc_dump, -malloc_view, ...)
// installs its own allocator, and PetscMallocSet refuses a second one; where such an option
// is given (command line or PETSC_OPTIONS), PETSc keeps its allocator.
bool petscMallocOptionGiven(int argc, char** argv) {
  if (mentionsMallocOption(std::getenv("PETSC_OPTIONS"))) return true;
  for (int a = 1; a < argc; ++a)
    if (argv[a] && std::strncmp(argv[a], "-malloc", 7) == 0) return true;
  return false;
}
}  // namespace

Environment::Environment(int* argc, char*** argv, const char* help) {
  if (!petscMallocOptionGiven(argc ? *argc : 0, argv ? *argv : nullptr) &&
      PetscMallocSet(cacheLineMalloc, cacheLineFree, cacheLineRealloc) != 0)
    throw std::runtime_error("PetscMallocSet failed");
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
