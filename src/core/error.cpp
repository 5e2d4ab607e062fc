#include "physgrad/core/error.hpp"

#include <exception>
#include <sstream>

namespace physgrad {
namespace {
// Text of the last C++ exception caught inside a PETSc callback on this thread; it is
// attached to the PetscException thrown when the error code surfaces again.
thread_local std::string g_callback_message;
}  // namespace

namespace detail {
void throwPetscError(PetscErrorCode code, const char* expr, const char* file, int line) {
  const char* text = nullptr;
  PetscErrorMessage(code, &text, nullptr);
  std::ostringstream os;
  os << "PETSc error " << code << " (" << (text ? text : "unknown") << ") in " << expr << " at "
     << file << ":" << line;
  if (!g_callback_message.empty()) {
    os << "; raised in a callback: " << g_callback_message;
    g_callback_message.clear();
  }
  throw PetscException(code, os.str());
}
}  // namespace detail

PetscErrorCode reportCallbackException(const char* where) noexcept {
  std::string what = "unknown exception";
  try {
    throw;
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  g_callback_message = std::string(where) + ": " + what;
  return ::PetscError(PETSC_COMM_SELF, __LINE__, where, __FILE__, PETSC_ERR_LIB,
                      PETSC_ERROR_INITIAL, "%s", g_callback_message.c_str());
}

}  // namespace physgrad
