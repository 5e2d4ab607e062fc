#include "physgrad/core/environment.hpp"

#include <petscsys.h>

#include <cctype>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace physgrad {
namespace {
int g_ranks_on_node = 1;
bool g_cache_lines = false;

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
  // On failure *result stays a valid block: the old one where realloc failed (realloc
  // leaves it alone), the reallocated one where only the aligned copy failed.
  void* p = std::realloc(*result, bytes);
  if (!p)
    return PetscError(PETSC_COMM_SELF, line, func, file, PETSC_ERR_MEM, PETSC_ERROR_INITIAL,
                      "Memory requested %.0f", static_cast<PetscLogDouble>(bytes));
  *result = p;
  if (reinterpret_cast<std::uintptr_t>(p) % kCacheLine != 0) {
    // realloc kept the contents but not the alignment: move them once more.
    void* aligned = nullptr;
    if (posix_memalign(&aligned, kCacheLine, bytes) != 0)
      return PetscError(PETSC_COMM_SELF, line, func, file, PETSC_ERR_MEM, PETSC_ERROR_INITIAL,
                        "Memory requested %.0f", static_cast<PetscLogDouble>(bytes));
    std::memcpy(aligned, p, bytes);
    std::free(p);
    *result = aligned;
  }
  return 0;
}

// Whether text names a PETSc malloc option (PETSc's option names ignore case; a YAML
// options file writes them without the dash, so any "malloc" counts).
bool mentionsMalloc(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text.find("malloc") != std::string::npos;
}

bool fileMentionsMalloc(const std::string& path) {
  std::ifstream in(path);
  if (!in) return false;
  std::ostringstream text;
  text << in.rdbuf();
  return mentionsMalloc(text.str());
}

// PETSc's memory debugging (-malloc_debug, -malloc_test, -malloc_dump, -malloc_view, ...)
// installs its own allocator during PetscInitialize, and PetscMallocSet accepts only one.
// PETSc keeps its allocator where such an option may reach PetscInitialize: on the
// command line, in PETSC_OPTIONS or PETSC_OPTIONS_YAML, in a file given with
// -options_file or -options_file_yaml, or in the options files PETSc reads by default
// (~/.petscrc, .petscrc and petscrc, unless -skip_petscrc); and where
// PHYSGRAD_PETSC_MALLOC=petsc asks for it.  A stray "malloc" (in a comment, say) only
// costs the alignment.
bool keepPetscAllocator(int argc, char** argv) {
  if (const char* keep = std::getenv("PHYSGRAD_PETSC_MALLOC"); keep && std::string(keep) == "petsc")
    return true;
  for (const char* name : {"PETSC_OPTIONS", "PETSC_OPTIONS_YAML"})
    if (const char* value = std::getenv(name); value && mentionsMalloc(value)) return true;
  bool skip_rc = false;
  for (int a = 1; a < argc && argv && argv[a]; ++a) {
    const std::string arg = argv[a];
    if (mentionsMalloc(arg)) return true;
    if (arg == "-skip_petscrc") skip_rc = true;
    if (arg.rfind("-options_file", 0) == 0 && a + 1 < argc && argv[a + 1] &&
        fileMentionsMalloc(argv[a + 1]))
      return true;
  }
  if (skip_rc) return false;
  std::vector<std::string> defaults = {".petscrc", "petscrc"};
  if (const char* home = std::getenv("HOME")) defaults.push_back(std::string(home) + "/.petscrc");
  for (const std::string& file : defaults)
    if (fileMentionsMalloc(file)) return true;
  return false;
}
}  // namespace

Environment::Environment(int* argc, char*** argv, const char* help) {
  const bool cache_lines = !keepPetscAllocator(argc ? *argc : 0, argv ? *argv : nullptr);
  if (cache_lines && PetscMallocSet(cacheLineMalloc, cacheLineFree, cacheLineRealloc) != 0)
    throw std::runtime_error("PetscMallocSet failed");
  PetscErrorCode ierr = PetscInitialize(argc, argv, nullptr, help);
  if (ierr && cache_lines)
    throw std::runtime_error(
        "PetscInitialize failed; if PETSc said \"cannot call multiple times\", a -malloc "
        "option reached it from somewhere physgrad did not look: set PHYSGRAD_PETSC_MALLOC=petsc "
        "to keep PETSc's own allocator");
  if (ierr) throw std::runtime_error("PetscInitialize failed");
  g_cache_lines = cache_lines;
  MPI_Comm node = MPI_COMM_NULL;
  if (MPI_Comm_split_type(PETSC_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) !=
          MPI_SUCCESS ||
      MPI_Comm_size(node, &g_ranks_on_node) != MPI_SUCCESS)
    throw std::runtime_error("could not count the ranks sharing this node (MPI_Comm_split_type)");
  MPI_Comm_free(&node);
}

Environment::~Environment() { (void)PetscFinalize(); }

bool Environment::petscAllocationsOnCacheLines() { return g_cache_lines; }

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
