#include "physgrad/physics/step.hpp"

// PetscObjectStateGet is declared only in the private header in PETSc 3.18.
#include <petsc/private/petscimpl.h>

#include <sstream>

#include "physgrad/core/error.hpp"
#include "physgrad/physics/jacobian.hpp"

namespace physgrad {

VecStamp VecStamp::of(Vec v) {
  VecStamp s;
  PG_CALL(PetscObjectGetId(reinterpret_cast<PetscObject>(v), &s.id));
  PG_CALL(PetscObjectStateGet(reinterpret_cast<PetscObject>(v), &s.state));
  return s;
}

void Step::inverse(Vec x0, Vec y, Vec x) {
  // The generic local inverse: Newton-Krylov on S(x) = y from the linearisation point.
  PG_CALL(VecCopy(x0, x));
  const SolveReport report = newtonKrylovInverse(*this, y, x);
  if (!report.converged) {
    std::ostringstream os;
    os << "generic Newton-Krylov inverse of step '" << name()
       << "' did not converge: " << report.reason << " after " << report.newton_iterations
       << " Newton steps, relative residual " << report.relative_residual;
    throw PetscException(PETSC_ERR_NOT_CONVERGED, os.str());
  }
}

}  // namespace physgrad
