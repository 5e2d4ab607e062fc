#pragma once
// The first object of every main(): initialises PETSc (and MPI), finalises them last.

#include <mpi.h>

#include <string>

namespace physgrad {

class Environment {
 public:
  /// `help` is printed by PETSc for -help, followed by the registered options.  Before
  /// PetscInitialize, installs allocation routines (PetscMallocSet) that put every PETSc
  /// allocation, Vec arrays included, on a 64-byte cache line; PETSc's own default is
  /// PETSC_MEMALIGN (16 bytes in Debian's build).  Where a PETSc memory-debugging option
  /// (-malloc_debug, -malloc_test, -malloc_dump, -malloc_view, ...) appears on the command
  /// line, in PETSC_OPTIONS(_YAML), in an -options_file(_yaml) or in a default options
  /// file (~/.petscrc, .petscrc, petscrc), or where PHYSGRAD_PETSC_MALLOC=petsc is set,
  /// PETSc's allocator is kept: PETSc accepts only one.
  Environment(int* argc, char*** argv, const char* help = nullptr);
  ~Environment();
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

  /// Whether this Environment put PETSc's allocations on cache lines (see the constructor).
  static bool petscAllocationsOnCacheLines();

  static MPI_Comm comm();
  static int rank();
  static int size();
  /// How many ranks of PETSC_COMM_WORLD share this rank's node (its shared-memory
  /// domain, MPI_COMM_TYPE_SHARED); they share its last-level cache and memory
  /// bandwidth.  Set by the constructor; 1 when no Environment was made.
  static int ranksOnNode();
};

/// True on rank 0 of PETSC_COMM_WORLD; only that rank prints.
bool isRoot();

/// Print on rank 0 only (printf-style, collective-free).
void rootPrintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/// Wall-clock seconds (MPI_Wtime).
double wallTime();

}  // namespace physgrad
