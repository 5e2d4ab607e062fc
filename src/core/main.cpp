#include "physgrad/core/main.hpp"

#include <cstdio>
#include <exception>

#include "physgrad/core/environment.hpp"
#include "physgrad/core/error.hpp"

namespace physgrad {

bool helpRequested() {
  PetscBool help = PETSC_FALSE;
  PG_CALL(PetscOptionsHasHelp(nullptr, &help));
  return help == PETSC_TRUE;
}

int runMain(int argc, char** argv, const char* help, const std::function<int()>& body) {
  Environment env(&argc, &argv, help);
  try {
    return body();
  } catch (const InputError& e) {
    rootPrintf("error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[rank %d] fatal: %s\n", Environment::rank(), e.what());
    std::fflush(stderr);
    MPI_Abort(Environment::comm(), 1);
  }
  return 1;
}

}  // namespace physgrad
