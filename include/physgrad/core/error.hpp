#pragma once
// PETSc error codes become C++ exceptions; C++ exceptions never cross PETSc's C frames.

#include <petscsys.h>

#include <stdexcept>
#include <string>

namespace physgrad {

/// Thrown when a PETSc call returns a non-zero error code.
class PetscException : public std::runtime_error {
 public:
  PetscException(PetscErrorCode code, const std::string& what)
      : std::runtime_error(what), code_(code) {}
  PetscErrorCode code() const { return code_; }

 private:
  PetscErrorCode code_;
};

/// Thrown for invalid user input (options, sizes, unstable parameters).
class InputError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// Thrown when a solve meets Inf or NaN (e.g. an optimiser stepped far outside the
/// stable region); optimisers treat it as a non-finite loss.
class NonFiniteError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Thrown when a state leaves the region where a step is defined (e.g. a velocity field
/// whose CFL number exceeds what the ghost layers support).  Bad input when it comes from
/// the user's parameters; a rejected trial point when an optimiser produced the state.
class StateOutOfRange : public InputError {
 public:
  using InputError::InputError;
};

/// Thrown when an operation is not provided by a Step (e.g. a missing inverse).
class NotImplemented : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

namespace detail {
[[noreturn]] void throwPetscError(PetscErrorCode code, const char* expr, const char* file,
                                  int line);
}  // namespace detail

/// Store an exception's text so a PETSc callback can report it through an error code.
PetscErrorCode reportCallbackException(const char* where) noexcept;

}  // namespace physgrad

/// Call a PETSc function and throw physgrad::PetscException on failure.
#define PG_CALL(expr)                                                                       \
  do {                                                                                      \
    PetscErrorCode pg_ierr_ = (expr);                                                       \
    if (pg_ierr_) ::physgrad::detail::throwPetscError(pg_ierr_, #expr, __FILE__, __LINE__); \
  } while (0)

/// Body of every callback handed to PETSc: run C++ code, turn exceptions into error codes.
#define PG_CALLBACK_BEGIN try {
#define PG_CALLBACK_END(where)                         \
  }                                                    \
  catch (...) {                                        \
    return ::physgrad::reportCallbackException(where); \
  }                                                    \
  return 0;
